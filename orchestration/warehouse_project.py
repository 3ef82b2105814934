"""The dbt project as Dagster sees it, and the one place its manifest is prepared.

The manifest is parsed once, before any run starts (`trustlake prepare`, run by the
Makefile's install step, by `trustlake run` and `trustlake ui`), so parallel run workers
only ever read it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from ml.lake import Lake
from orchestration.settings import DBT_PROJECT_DIR

# The dbt installed beside this interpreter (the project's .venv), not whatever is on PATH.
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))
dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def dbt_environment(lake: Lake) -> dict[str, str]:
    """Variables profiles.yml and the sources read: where the warehouse and raw lake are."""
    return {
        "TRUSTLAKE_WAREHOUSE_DB": str(lake.warehouse_db),
        "TRUSTLAKE_LAKE_RAW": str(lake.raw),
        "TRUSTLAKE_LAKE_SCORES": str(lake.scores),
        "TRUSTLAKE_LAKE_REFERENCE": str(lake.reference),
        "TRUSTLAKE_LAKE_FEATURES": str(lake.features),
        "TRUSTLAKE_LAKE_MONITORING": str(lake.monitoring),
        "TRUSTLAKE_LAKE_OPS": str(lake.ops),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
    }


def export_dbt_environment(lake: Lake) -> None:
    lake.warehouse_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(dbt_environment(lake))


def prepare_manifest(lake: Lake) -> Path:
    """Parse the dbt project into target/manifest.json when any project file is newer."""
    manifest = dbt_project.manifest_path
    sources = [p for p in DBT_PROJECT_DIR.rglob("*") if p.suffix in {".sql", ".yml", ".yaml"}
               and "target" not in p.relative_to(DBT_PROJECT_DIR).parts]
    if manifest.exists() and all(p.stat().st_mtime <= manifest.stat().st_mtime for p in sources):
        return manifest
    export_dbt_environment(lake)
    result = subprocess.run(
        [DBT_EXECUTABLE, "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)],
        capture_output=True, text=True, env={**os.environ, **dbt_environment(lake)},
    )
    if result.returncode != 0:
        raise RuntimeError(f"dbt parse failed:\n{result.stdout}\n{result.stderr}")
    manifest.touch()
    return manifest
