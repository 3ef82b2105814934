"""The dbt project as Dagster sees it, the dbt resource, and the one place its manifest is prepared.

The manifest is parsed once, before any run starts (`trustlake prepare`, run by the Makefile's
install step, by `trustlake run` and `trustlake ui`), so loading the definitions only reads it
and parallel run workers never race to write it. `DbtProject.prepare_if_dev()` is not used: under
`dagster dev` it would run `dbt parse` in every process that loads the code location (the code
server, each run worker and each step process inherit `DAGSTER_IS_DEV_CLI`), at import time.

dbt learns where the warehouse and the lake are (profiles.yml and the sources read
TRUSTLAKE_WAREHOUSE_DB and friends) from `TrustlakeDbtCliResource.env`, set from the settings
when the definitions are built: nothing exports them into the environment of the process. The
vocabularies reach every invocation as vars, and the raw sources YAML is rendered from the raw
contracts before each parse (assets/dbt_inputs.py).
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version
from pydantic import Field

from assets.dbt_inputs import DBT_PROJECT_DIR, with_dbt_vars, write_raw_sources
from ml.lake import Lake

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
    """`DbtCliResource` that hands dbt the lake's paths and the vocabularies' vars with every invocation.

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
            return super().cli(with_dbt_vars(args), **kwargs)

    # Two things dagster-dbt does before every dbt command that trustlake does not need, measured at
    # 6-8 s of each dbt step on two cores: it runs `dbt --version` in a subprocess to learn the
    # version of the dbt beside this interpreter (the installed package says it without starting
    # dbt), and it loads the project into an in-process dbt adapter, used only by its
    # fetch_row_counts / fetch_column_metadata, where assets/warehouse.py reads row counts and
    # schemas from DuckDB itself after the build. Both are private hooks of dagster-dbt 0.29
    # (pinned below 0.30 in pyproject.toml); every warehouse test builds dbt through them.
    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args):
        return None


def prepare_manifest(lake: Lake) -> Path:
    """Render the raw sources YAML from the contracts, then parse the dbt project into
    target/manifest.json when any project file is newer than it."""
    write_raw_sources()
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
        with_dbt_vars(
            [
                DBT_EXECUTABLE,
                "parse",
                "--quiet",
                "--project-dir",
                str(DBT_PROJECT_DIR),
                "--profiles-dir",
                str(DBT_PROJECT_DIR),
            ]
        ),
        capture_output=True,
        text=True,
        env={**os.environ, **dbt_environment(lake)},
    )
    if result.returncode != 0:
        raise RuntimeError(f"dbt parse failed:\n{result.stdout}\n{result.stderr}")
    manifest.touch()
    return manifest
