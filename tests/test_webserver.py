"""The Dagster webserver serves the code location: every raw asset, and the runs `trustlake run` made."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from orchestration.settings import PROJECT_ROOT
from tests.conftest import trustlake_env

pytestmark = pytest.mark.slow
RAW = {"users", "content", "reports", "decisions", "appeals", "qa_audits", "reference_labels"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


@pytest.fixture(scope="module")
def webserver(e2e_home):
    port = free_port()
    env = trustlake_env(e2e_home, DAGSTER_HOME=str(e2e_home / "dagster"))
    exe = Path(sys.executable).with_name("dagster-webserver")
    proc = subprocess.Popen([str(exe), "-w", str(PROJECT_ROOT / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(port)],
                            env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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


def test_runs_made_by_trustlake_run_appear_in_the_ui(webserver):
    q = '{ assetOrError(assetKey: {path: ["content"]}) { ... on Asset { assetMaterializations(limit: 1) { runId partition } } } }'
    mats = graphql(webserver, q)["data"]["assetOrError"]["assetMaterializations"]
    assert mats and mats[0]["runId"]
