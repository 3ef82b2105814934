"""The code version recorded on registered models: the git commit of the checkout this code runs from."""

import subprocess
from pathlib import Path

# Any directory inside the checkout: git finds the repository from it.
CHECKOUT = Path(__file__).resolve().parent


def git_sha() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=CHECKOUT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    sha = out.stdout.strip()
    if out.returncode != 0 or not sha:
        return "unknown"
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=CHECKOUT, capture_output=True, text=True
    ).stdout.strip()
    return sha + ("-dirty" if dirty else "")
