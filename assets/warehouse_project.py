"""The dbt project as Dagster sees it, the dbt resource, and the one place its manifest is prepared.

The manifest is parsed once, before any run starts (`trustlake prepare`, run by the Makefile's
install step, by `trustlake run` and `trustlake ui`), so loading the definitions only reads it
and parallel run workers never race to write it. `DbtProject.prepare_if_dev()` is not used: under
`dagster dev` it would run `dbt parse` in every process that loads the code location (the code
server, each run worker and each step process inherit `DAGSTER_IS_DEV_CLI`), at import time.

dbt learns where the warehouse and the lake are (profiles.yml and the sources read
TRUSTLAKE_WAREHOUSE_DB and friends) from `TrustlakeDbtCliResource.env`, set from the settings
when the definitions are built: nothing exports them into the environment of the process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from pydantic import Field

from ml.lake import Lake

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt_project"
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


@contextmanager
def _environment(extra: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class TrustlakeDbtCliResource(DbtCliResource):
    """`DbtCliResource` that hands dbt the lake's paths with every invocation.

    dagster-dbt builds the dbt subprocess's environment, and the in-process adapter it opens for
    metadata, from `os.environ` inside `cli()` and offers no `env` argument; so `cli()` runs with
    `env` laid over the environment and restores it before returning (the dbt process has been
    started by then). A step runs one dbt invocation at a time, so nothing else sees the overlay.
    """

    env: dict[str, str] = Field(default_factory=dict, description="Variables dbt reads (profiles.yml, sources).")

    @classmethod
    def for_lake(cls, lake: Lake) -> TrustlakeDbtCliResource:
        return cls(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE, env=dbt_environment(lake))

    def cli(self, args, **kwargs):
        with _environment(self.env):
            return super().cli(args, **kwargs)


def prepare_manifest(lake: Lake) -> Path:
    """Parse the dbt project into target/manifest.json when any project file is newer."""
    manifest = dbt_project.manifest_path
    sources = [
        p
        for p in DBT_PROJECT_DIR.rglob("*")
        if p.suffix in {".sql", ".yml", ".yaml"} and "target" not in p.relative_to(DBT_PROJECT_DIR).parts
    ]
    if manifest.exists() and all(p.stat().st_mtime <= manifest.stat().st_mtime for p in sources):
        return manifest
    lake.warehouse_dir.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            DBT_EXECUTABLE,
            "parse",
            "--quiet",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **dbt_environment(lake)},
    )
    if result.returncode != 0:
        raise RuntimeError(f"dbt parse failed:\n{result.stdout}\n{result.stderr}")
    manifest.touch()
    return manifest
