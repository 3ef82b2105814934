"""`trustlake serve --ray`: the same app as Ray Serve replicas on a local Ray cluster bound to loopback.

One real `trustlake serve --ray --replicas 2` process serves the whole module (Ray and two replicas take
a minute to start on two shared cores): it answers as the in-process app does, from both replicas
(each names itself in `X-Trustlake-Replica`), a promotion and a rollback in the registry reach both
replicas without a restart, and SIGTERM stops it and every Ray process it started. Options the cluster
cannot take are refused in one line before Ray starts (unit tests, no Ray).
"""

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from fastapi.testclient import TestClient

from ml.registry import Registry
from ml.scoring.serving import create_app
from ml.training.artifacts import PROBA_COLUMNS
from ml.training.dataset import held_out_texts
from orchestration.cli import main
from orchestration.settings import PROJECT_ROOT
from tests.helpers import (
    free_port,
    kill_tree,
    labelled_training_frame,
    small_champion,
    text_classifier_candidate,
    trustlake_env,
)

REPLICA = "x-trustlake-replica"
START_S = 600  # Ray, the Serve controller, its proxy and two replicas on a loaded two-core machine


@pytest.fixture(scope="module")
def home(pool, tmp_path_factory) -> dict:
    """A home whose champion is a small content classifier, with a second classifier registered beside it."""
    home = tmp_path_factory.mktemp("ray-serving-home")
    frame, _ = labelled_training_frame(pool, seed=31, days=6, rows=1500)
    champion = small_champion(frame, home / "models")
    other, _ = text_classifier_candidate(labelled_training_frame(pool, seed=57, days=6, rows=1500)[0], home / "models")
    texts = held_out_texts(frame, "test")["text"].head(4).to_list()
    return {"home": home, "champion": champion.version, "other": other.version, "texts": texts}


@pytest.fixture(scope="module")
def server(home, tmp_path_factory):
    """`trustlake serve --ray --replicas 2` on a free loopback port, once it said it is serving; the Ray
    processes below it as they were then. Whatever a test left running is killed at the end."""
    port = free_port()
    logs = tmp_path_factory.mktemp("ray-serve-logs")
    out, err = logs / "stdout", logs / "stderr"
    env = trustlake_env(home["home"], TRUSTLAKE_RAY_CPUS="2", TRUSTLAKE_SERVE_CPUS_PER_REPLICA="1")
    env.pop("RAY_ADDRESS", None)
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("trustlake")),
                "serve",
                "--ray",
                "--replicas",
                "2",
                "--port",
                str(port),
            ],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + START_S
        while "http://127.0.0.1" not in out.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"trustlake serve --ray did not start:\n{out.read_text()}\n{err.read_text()[-4000:]}"
                )
            time.sleep(0.5)
        started = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield {"proc": proc, "client": client, "started": started, "stdout": out, "stderr": err}
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
            proc.wait(timeout=60)


def score(client: httpx.Client, texts: list[str]) -> tuple[str, dict]:
    resp = client.post("/v1/score", json={"items": [{"id": i, "text": t} for i, t in enumerate(texts)]})
    assert resp.status_code == 200, resp.text
    return resp.headers[REPLICA], resp.json()


def from_both_replicas(client: httpx.Client, texts: list[str], most: int = 60) -> list[tuple[str, dict]]:
    """Answers to the same request until both replicas have answered it (at most `most` requests)."""
    answers = []
    while len({replica for replica, _ in answers}) < 2 and len(answers) < most:
        answers.append(score(client, texts))
    return answers


@pytest.mark.e2e
def test_every_replica_answers_the_scores_the_in_process_app_does(server, home):
    expected = TestClient(create_app(home["home"] / "models")).post(
        "/v1/score", json={"items": [{"id": i, "text": t} for i, t in enumerate(home["texts"])]}
    )
    assert expected.status_code == 200
    answers = from_both_replicas(server["client"], home["texts"])
    assert len({replica for replica, _ in answers}) == 2, [replica for replica, _ in answers]
    for replica, answer in answers:
        assert answer["model_version"] == home["champion"]
        for got, want in zip(answer["results"], expected.json()["results"], strict=True):
            assert (got["id"], got["action"], got["model_version"]) == (
                want["id"],
                want["action"],
                want["model_version"],
            )
            for column in PROBA_COLUMNS:
                assert got[column] == pytest.approx(want[column], abs=1e-6), (replica, column)


@pytest.mark.e2e
def test_requests_are_spread_over_both_replicas_and_each_names_itself(server, home):
    replicas = [score(server["client"], home["texts"][:1])[0] for _ in range(40)]
    counts = {r: replicas.count(r) for r in set(replicas)}
    # Two idle replicas: Ray's router picks between them at random, so 40 requests land 20 +- 3 each.
    assert len(counts) == 2 and min(counts.values()) >= 5, counts
    stats = server["client"].get("/v1/stats")
    assert stats.json()["replica"] == stats.headers[REPLICA] in counts


@pytest.mark.e2e
def test_a_promotion_and_a_rollback_reach_both_replicas_without_a_restart(server, home):
    registry = Registry(home["home"] / "models")
    registry.promote(home["other"], reason="a promotion reaches every replica", actor="test")
    try:
        promoted = from_both_replicas(server["client"], home["texts"][:1])
        assert len({replica for replica, _ in promoted}) == 2
        # Every answer after the promotion, from either replica, is the new champion's: none is stale.
        assert {answer["model_version"] for _, answer in promoted} == {home["other"]}
    finally:
        registry.rollback(actor="test")
    rolled_back = from_both_replicas(server["client"], home["texts"][:1])
    assert len({replica for replica, _ in rolled_back}) == 2
    assert {answer["model_version"] for _, answer in rolled_back} == {home["champion"]}
    assert server["proc"].poll() is None  # the same process throughout


@pytest.mark.e2e
def test_sigterm_stops_serving_and_every_ray_process_it_started(server):
    proc, started = server["proc"], server["started"]
    names = {p.name() for p in started if p.is_running()}
    assert {"gcs_server", "raylet"} <= names, names  # the cluster's processes were seen below it
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0, server["stderr"].read_text()[-3000:]
    assert server["stdout"].read_text().rstrip().endswith("trustlake serve: stopped")
    deadline = time.monotonic() + 60
    while (left := alive(started)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert left == [], f"Ray processes left running: {left}"


def alive(processes: list[psutil.Process]) -> list[str]:
    """The processes still running (the same ones: psutil compares start times), zombies aside."""
    out = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
        except psutil.NoSuchProcess:
            pass
    return out


# -- options refused before Ray starts (no cluster: these are unit tests) ---------------------------------
@pytest.mark.parametrize(
    "args, env, says",
    [
        (["--replicas", "0"], {}, "trustlake serve: Invalid value for '--replicas': 0 is not in the range x>=1"),
        (
            ["--replicas", "3"],
            {},
            "3 replicas x 1 CPUs need 3 CPUs but the local Ray cluster (TRUSTLAKE_RAY_CPUS=2) has 2",
        ),
        ([], {"TRUSTLAKE_SERVE_CPUS_PER_REPLICA": "4"}, "a replica needs 4 CPUs but the largest node of the local"),
        (
            [],
            {"TRUSTLAKE_SERVE_NUM_REPLICAS": "0"},
            "num_replicas must be at least 1, got 0 (TRUSTLAKE_SERVE_NUM_REPLICAS='0')",
        ),
    ],
)
def test_a_demand_the_cluster_cannot_take_is_one_line_and_exit_2_before_ray_starts(
    tmp_path, monkeypatch, capsys, args, env, says
):
    monkeypatch.setenv("TRUSTLAKE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRUSTLAKE_RAY_CPUS", "2")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code = main(["serve", "--ray", "--port", str(free_port()), *args])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and says in captured.err, captured.err
    assert "ray" not in sys.modules or not __import__("ray").is_initialized()


def test_a_port_in_use_is_one_line_and_exit_2_before_ray_starts(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRUSTLAKE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code = main(["serve", "--ray", "--port", str(port)])
    err = capsys.readouterr().err
    assert (
        code == 2 and err.startswith(f"trustlake serve: cannot listen on 127.0.0.1:{port}: ") and err.count("\n") == 1
    )
    assert "ray" not in sys.modules or not __import__("ray").is_initialized()


def test_replicas_without_ray_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TRUSTLAKE_HOME", str(tmp_path / "home"))
    assert main(["serve", "--replicas", "2"]) == 2
    assert capsys.readouterr().err == "trustlake serve: --replicas needs --ray (uvicorn runs one copy of the service)\n"
