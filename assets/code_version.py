"""Code versions: the git commit recorded on registered models, and the code version of each Python asset.

A Python asset's code version is a hash of the source of its module and of every trustlake module
(`ml.*`, `assets.*`) it imports, directly or through others: what decides the numbers it produces.
Dagster records it on each materialization, so a change to that code marks the asset stale (in the
UI, and for `trustlake run`: orchestration/freshness.py) and a change elsewhere does not. dbt models
carry their own (dagster-dbt: the checksum of the model's SQL).
"""

from __future__ import annotations

import ast
import hashlib
import subprocess
from functools import cache
from pathlib import Path

# Any directory inside the checkout: git finds the repository from it.
CHECKOUT = Path(__file__).resolve().parent
PROJECT_ROOT = CHECKOUT.parent  # where the first-party packages are

FIRST_PARTY = ("ml", "assets")


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


@cache
def _source(module: str) -> tuple[Path, bytes] | None:
    """The file of a first-party module in this checkout (found without importing anything), and its bytes."""
    base = PROJECT_ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path, path.read_bytes()
    return None


@cache
def _imports(module: str) -> frozenset[str]:
    """The first-party modules `module` imports anywhere in its source (function-level imports too)."""
    found = _source(module)
    if found is None:
        return frozenset()
    path, text = found
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    return frozenset(n for n in names if n.split(".")[0] in FIRST_PARTY and _source(n) is not None)


@cache
def source_version(module: str) -> str:
    """Hash of `module`'s source and of every first-party module it reaches by imports."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_imports(name))
        parent = name.rpartition(".")[0]
        if parent and parent not in seen:
            todo.append(parent)  # a package's __init__ runs on import too
    h = hashlib.blake2b(digest_size=10)
    for name in sorted(seen):
        found = _source(name)
        if found is not None:
            h.update(name.encode() + b"\0" + found[1])
    return h.hexdigest()
