"""The landing sensor for real: `dagster dev` (webserver + daemon) on a free loopback port over a
home built by `trustlake run`, a good and a bad file dropped into the landing folder, and, through
the webserver's GraphQL, a successful land_job run for the good one and a quarantine observation
for the bad one, each within a bounded wait. The processes are always stopped."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ml.lake import Lake
from orchestration.settings import PROJECT_ROOT
from tests.helpers import external_content, trustlake_env
from tests.test_webserver import free_port, graphql

pytestmark = pytest.mark.e2e
START_WAIT_S = 180  # the code location loads in a subprocess; on a busy 2-core machine that is slow
RUN_WAIT_S = 420  # a sensor tick, a queued run, its process, dbt for the days touched
# The sensor looks every 5 s here instead of the default 30 (TRUSTLAKE_LANDING_POLL_SECONDS): the same
# code path, without half a minute of waiting for the first tick after the drop.
POLL_SECONDS = "5"

RUNS = """{ runsOrError(filter: {tags: [{key: "trustlake/landed_file", value: "%s"}]}) {
  ... on Runs { results { runId jobName status tags { key value } } } } }"""
SENSOR = """{ sensorOrError(sensorSelector: {repositoryLocationName: "trustlake", repositoryName: "__repository__",
  sensorName: "landing_sensor"}) { __typename ... on Sensor { minIntervalSeconds sensorState { status } } } }"""
OBSERVATIONS = """{ assetOrError(assetKey: {path: ["content"]}) { ... on Asset { assetObservations(limit: 20) {
  metadataEntries { label ... on TextMetadataEntry { text } ... on PathMetadataEntry { path } } } } } }"""


@pytest.fixture
def home(landed_home) -> Path:
    return landed_home


@pytest.fixture
def dagster_dev(home, tmp_path):
    """`dagster dev` against the home, in its own process group; yields its port, always stops it."""
    port = free_port()
    log = open(tmp_path / "dagster-dev.log", "wb")
    env = trustlake_env(home, DAGSTER_HOME=str(home / "dagster"), TRUSTLAKE_LANDING_POLL_SECONDS=POLL_SECONDS)
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster")),
            "dev",
            "-w",
            str(PROJECT_ROOT / "workspace.yaml"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_WAIT_S
        while True:
            try:
                state = graphql(port, SENSOR)["data"]["sensorOrError"]
                if state["__typename"] == "Sensor":
                    break
            except (OSError, KeyError, TypeError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dagster dev did not serve the code location:\n{_tail(tmp_path)}")
            time.sleep(1)
        yield port, tmp_path
    finally:
        _stop(proc)
        log.close()


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the process group we started (dagster dev, its webserver, daemon and code servers), then SIGKILL.

    Alone, the group is gone 2-3 s after SIGTERM; inside the full suite `dagster dev` sometimes waits out its own
    60 s for a child (measured: a 60.0 s teardown), so the home, a copy thrown away after, gets 15 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    except ProcessLookupError:
        pass
    try:  # children that outlived the parent are still in its group
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _tail(tmp_path: Path) -> str:
    return (tmp_path / "dagster-dev.log").read_text(errors="replace")[-4000:]


def _settled(path: Path) -> Path:
    os.utime(path, (time.time() - 60,) * 2)  # the upload finished a minute ago
    return path


def test_the_daemon_lands_a_good_drop_and_quarantines_a_bad_one(home, dagster_dev):
    port, logs = dagster_dev
    lake = Lake(home)
    sensor = graphql(port, SENSOR)["data"]["sensorOrError"]
    assert sensor["sensorState"]["status"] == "RUNNING"  # on by default: nobody has to switch it on
    assert sensor["minIntervalSeconds"] == int(POLL_SECONDS)  # the deployment's setting reached the daemon

    users = lake.read_table("users")["user_id"].to_list()
    good = external_content(users[:9], lake.partitions("content")[-1], first_id=8_060_000_000_000_000_000)
    folder = lake.landing / "content"
    folder.mkdir(parents=True)
    upload = folder / ".good.csv.uploading"  # hidden while it is written, as docs/operations.md advises
    good.write_csv(upload)
    os.replace(_settled(upload), folder / "good.csv")
    (folder / "bad.parquet").write_bytes(b"PAR1 this is not a parquet file")
    _settled(folder / "bad.parquet")

    deadline = time.monotonic() + RUN_WAIT_S
    run = observed = None
    while time.monotonic() < deadline and not (run and run["status"] == "SUCCESS" and observed):
        runs = graphql(port, RUNS % "good.csv")["data"]["runsOrError"]["results"]
        run = runs[0] if runs else None
        if run and run["status"] in ("FAILURE", "CANCELED"):
            pytest.fail(f"land run {run['runId']} ended {run['status']}:\n{_tail(logs)}")
        observations = graphql(port, OBSERVATIONS)["data"]["assetOrError"]["assetObservations"]
        observed = next(
            (
                o
                for o in observations
                if any(e["label"] == "landed_file" and e.get("text") == "bad.parquet" for e in o["metadataEntries"])
            ),
            None,
        )
        time.sleep(3)
    assert run and run["status"] == "SUCCESS", f"no successful land run within {RUN_WAIT_S} s: {run}\n{_tail(logs)}"
    assert observed, f"no quarantine observation for bad.parquet within {RUN_WAIT_S} s\n{_tail(logs)}"

    assert run["jobName"] == "land_job" and len(runs) == 1
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/sensor_name"] == "landing_sensor" and tags["trustlake/landing_table"] == "content"
    entries = {e["label"]: e.get("text") or e.get("path") for e in observed["metadataEntries"]}
    assert entries["landing"] == "quarantined"
    reason = Path(entries["reason_file"]).read_text()
    assert "unreadable" in reason and "what to do:" in reason
    assert Path(entries["quarantined_to"]).read_bytes() == b"PAR1 this is not a parquet file"

    assert list(folder.iterdir()) == []
    with duckdb.connect(str(lake.marts_db), read_only=True) as con:
        landed = {
            r[0]
            for r in con.execute(
                "select content_id from fct_content where content_id >= 8060000000000000000"
            ).fetchall()
        }
    assert landed == set(good["content_id"])
    assert pl.read_parquet(next(lake.raw.glob("content/date=*/landed-*.parquet"))).height == 9
