"""`trustlake run` launches real runs against the code location and says what a person needs when
one fails: the run id, the failed step, the first line of the error, and a non-zero exit."""

import re

import dagster as dg
import pytest

from ml.lake import Lake
from tests.helpers import run_cli


def test_a_window_past_yesterday_is_refused_before_anything_launches(tmp_path):
    result = run_cli(tmp_path / "home", "run", "--days", "400", "--skip-training")
    assert result.returncode == 2
    assert "past yesterday" in result.stderr and "ask for fewer days" in result.stderr
    assert not (tmp_path / "home" / "dagster" / "history").exists()  # no run was created


@pytest.mark.e2e
def test_a_failed_run_prints_its_id_the_failed_step_and_the_error(tmp_path):
    home = tmp_path / "home"
    assert run_cli(home, "prepare").returncode == 0
    Lake(home).warehouse_db.mkdir(parents=True)  # dbt cannot open a directory as its database

    result = run_cli(home, "run", "--days", "1", "--skip-training")

    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    found = re.search(r"ingest_job failure \(run ([0-9a-f-]{36})\)", result.stderr)
    assert found, result.stderr[-3000:]
    assert "failed step warehouse_models: " in result.stderr
    assert "trustlake.duckdb" in result.stderr.split("failed step warehouse_models: ")[1].splitlines()[0]
    assert "Traceback" not in result.stdout + result.stderr
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        run = instance.get_run_by_id(found.group(1))
        assert run.job_name == "ingest_job" and run.status == dg.DagsterRunStatus.FAILURE
        assert run.remote_job_origin is not None  # launched against the code location, not in process
