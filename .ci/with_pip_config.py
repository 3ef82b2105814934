"""Run a command (uv) with pip's configuration given to it as the UV_* variables that say the same.

`make install` installs with uv (the same pins, about 2.5 times faster than pip on two cores) and
must reach the package indexes pip is set up for on this machine: extra indexes, find-links
directories, constraint files and a registry proxy's certificate. pip has already merged its config
files and PIP_* variables (`pip config list`); this maps what it says to uv's names, adds pip's
constraint files to any UV_CONSTRAINT already set, and runs the command. Run it with the venv's python.
"""

import os
import subprocess
import sys

# pip's option -> uv's variable (uv takes space-separated lists where pip does)
UV_NAMES = {
    "index-url": "UV_DEFAULT_INDEX",
    "extra-index-url": "UV_EXTRA_INDEX_URL",
    "find-links": "UV_FIND_LINKS",
    "constraint": "UV_CONSTRAINT",
    "cert": "SSL_CERT_FILE",
    "timeout": "UV_HTTP_TIMEOUT",
    "default-timeout": "UV_HTTP_TIMEOUT",
}


def pip_settings() -> dict[str, str]:
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    # PIP_* variables (":env:") override the config files, as they do for pip.
    listed.sort(key=lambda line: line.startswith(":env:"))
    settings: dict[str, str] = {}
    for line in listed:
        key, _, value = line.partition("=")
        name = UV_NAMES.get(key.rsplit(".", 1)[-1])
        if name:
            settings[name] = " ".join(value.strip().strip("'\"").split())
    return settings


def main(command: list[str]) -> int:
    env = dict(os.environ)
    for name, value in pip_settings().items():
        if name == "UV_CONSTRAINT" and env.get(name):
            value = f"{env[name]} {value}"
        env[name] = value
    # pip weighs every index's versions together; uv by default takes a package from the first index
    # that has it, which here is an older local mirror.
    env.setdefault("UV_INDEX_STRATEGY", "unsafe-best-match")
    env.setdefault("UV_LINK_MODE", "copy")  # the cache and the venv may be on different filesystems
    return subprocess.run(command, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
