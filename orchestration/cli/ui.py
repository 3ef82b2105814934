"""`trustlake ui`: the Dagster UI on the prepared home."""

from __future__ import annotations

import os
import sys

import click

from orchestration.cli.group import _prepare, cli, described, with_settings
from orchestration.settings import PROJECT_ROOT, WORKSPACE_FILE, Settings


@cli.command("ui", **described("start the Dagster UI (dagster dev -w workspace.yaml)"))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=3000, show_default=True)
@with_settings
def cmd_ui(settings: Settings, host: str, port: int) -> int:
    settings = _prepare(settings)
    os.chdir(PROJECT_ROOT)
    argv = ["dagster", "dev", "-w", str(WORKSPACE_FILE), "-h", host, "-p", str(port)]
    exe = os.path.join(os.path.dirname(sys.executable), "dagster")
    print(f"trustlake: Dagster UI on http://{host}:{port} (DAGSTER_HOME={settings.dagster_home})")
    os.execv(exe, argv)
    return 0  # unreachable
