"""The Dagster webserver serves the code location: every raw asset, the runs `trustlake run` launched
(under their jobs, re-executable as the same version), and no missing daily partition."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest

from orchestration.settings import PROJECT_ROOT, last_complete_day
from tests.helpers import E2E_DAYS, first_day, trustlake_env

pytestmark = pytest.mark.e2e
RAW = {"users", "content", "reports", "decisions", "appeals", "qa_audits", "reference_labels"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def webserver(e2e_home):
    port = free_port()
    env = trustlake_env(e2e_home, DAGSTER_HOME=str(e2e_home / "dagster"))
    exe = Path(sys.executable).with_name("dagster-webserver")
    proc = subprocess.Popen(
        [str(exe), "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 90
    try:
        while True:
            try:
                if "data" in graphql(port, "{ version }"):
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"webserver did not start: {proc.stderr.read().decode()[-3000:]}")
            time.sleep(0.5)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_webserver_lists_every_raw_asset_in_group_raw(webserver):
    data = graphql(webserver, "{ assetNodes { assetKey { path } groupName } }")["data"]["assetNodes"]
    groups = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in data}
    assert {k for k, g in groups.items() if g == "raw"} == RAW
    assert groups["fct_content"] == "warehouse"


RUNS = """{ runsOrError(filter: {pipelineName: "%s"}) { ... on Runs { results {
    runId status pipelineSnapshotId parentPipelineSnapshotId repositoryOrigin { repositoryLocationName repositoryName } } } } }"""
JOB = """{ pipelineOrError(params: {pipelineName: "%s", repositoryName: "__repository__",
    repositoryLocationName: "trustlake"}) { ... on Pipeline { pipelineSnapshotId } } }"""


@pytest.mark.parametrize("job", ["ingest_job", "retrain_job", "score_job"])
def test_runs_of_trustlake_run_appear_under_their_jobs_as_the_loaded_version(webserver, job):
    runs = graphql(webserver, RUNS % job)["data"]["runsOrError"]["results"]
    assert runs and all(r["status"] == "SUCCESS" for r in runs), runs
    current = graphql(webserver, JOB % job)["data"]["pipelineOrError"]["pipelineSnapshotId"]
    for run in runs:
        # Origin and snapshot both match the loaded job: the UI re-executes it without a version warning. A run
        # of the stale assets only (trustlake run's retrain_job) is a subset, whose snapshot's parent is the job's.
        assert run["repositoryOrigin"] == {"repositoryLocationName": "trustlake", "repositoryName": "__repository__"}
        assert current in (run["pipelineSnapshotId"], run["parentPipelineSnapshotId"])


def test_no_daily_partition_of_the_simulated_window_is_missing(webserver, e2e_home):
    q = "{ assetNodes { assetKey { path } isPartitioned partitionStats { numMaterialized numPartitions numFailed } } }"
    nodes = [n for n in graphql(webserver, q)["data"]["assetNodes"] if n["isPartitioned"]]
    assert {"content", "fct_content", "content_scores", "mart_review_queue"} <= {
        n["assetKey"]["path"][-1] for n in nodes
    }
    # The run built the window through the yesterday of its own day. A day that ended since (the
    # suite crossed midnight UTC) is a new partition, missing until the daily schedule lands it.
    built_through = first_day(e2e_home) + timedelta(days=E2E_DAYS - 1)
    ended_since = (last_complete_day() - built_through).days
    missing = {
        "/".join(n["assetKey"]["path"]): n["partitionStats"]
        for n in nodes
        if n["partitionStats"]["numMaterialized"] != E2E_DAYS or n["partitionStats"]["numFailed"]
    }
    assert missing == {}
    assert {n["partitionStats"]["numPartitions"] for n in nodes} == {E2E_DAYS + ended_since}


def test_each_partition_of_a_ranged_run_carries_its_own_numbers(webserver):
    q = """{ assetOrError(assetKey: {path: ["%s"]}) { ... on Asset { assetMaterializations(limit: 100) {
        partition runId metadataEntries { label ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue } } } } } }"""
    for key in ("content", "fct_content", "content_scores"):
        mats = graphql(webserver, q % key)["data"]["assetOrError"]["assetMaterializations"]
        latest = {}
        for m in mats:  # newest first
            latest.setdefault(m["partition"], m)
        rows = {
            p: next(e["intValue"] for e in m["metadataEntries"] if e["label"] == "dagster/row_count")
            for p, m in latest.items()
        }
        assert len(rows) == E2E_DAYS and len(set(rows.values())) > 1, (key, rows)  # days differ: not one run total
