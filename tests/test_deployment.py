"""Evaluation, gates, registry, deployment, enforcement policy, and the CLI and HTTP scoring paths.

Models here are the TF-IDF baseline kind (no Ray needed): the gate, registry and serving code
treats every model kind the same way through its artifact.
"""

import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from ml.deployment import deploy
from ml.enforcement import PolicyError, load_policy, parse_policy
from ml.evaluate_model import evaluate
from ml.evaluation import GateConfig, quality_gates
from ml.registry import Registry, RegistryError
from ml.scoring import load_champion
from ml.scoring_io import ScoringInputError, score_file
from ml.training import fit
from ml.training.artifacts import PROBA_COLUMNS
from ml.training.dataset import dataset_version
from ml.training.scorer import Scorer
from tests.conftest import labelled_training_frame

# The baseline on this small sample reaches about 0.3 PR-AUC on its weakest policy; a model
# trained on shuffled labels sits near the base rate (under 0.1), far below this bar.
GATES = GateConfig(min_pr_auc=0.2)


@pytest.fixture(scope="module")
def world(pool):
    return labelled_training_frame(pool, seed=5, days=14, rows=6000, qa_every=4)


def candidate(world, models: Path, shuffle: bool = False):
    frame, users = world
    if shuffle:
        labels = frame["label"].sample(fraction=1.0, shuffle=True, seed=3)
        frame = frame.with_columns(labels.alias("label"))
    artifact = fit.fit_baseline(frame, dataset_version(frame), models)
    registry = Registry(models)
    champ = registry.champion()
    from ml.training.artifacts import ModelArtifact

    ev = evaluate(artifact, world[0], users, ModelArtifact.read(champ["path"]) if champ else None)
    gates = quality_gates(ev, GATES)
    ev["gates"] = {g.name: {"passed": g.passed, "message": g.message} for g in gates}
    ev["gates_passed"] = all(g.passed for g in gates)
    registry.register({"version": artifact.version, "kind": artifact.kind, "path": artifact.path,
                       "dataset_version": artifact.dataset_version, "code_version": "test", "params": {},
                       "metrics": {"test_macro_pr_auc": ev["test"]["macro_pr_auc"], "gates_passed": ev["gates_passed"]},
                       "operating_points": ev["operating_points"]})
    return artifact, ev


@pytest.fixture(scope="module")
def deployed(world, tmp_path_factory):
    models = tmp_path_factory.mktemp("home") / "models"
    artifact, ev = candidate(world, models)
    decision = deploy(Registry(models), [ev], actor="test")
    return models, artifact, ev, decision


def test_a_real_model_passes_its_gates_and_becomes_champion(deployed):
    models, artifact, ev, decision = deployed
    assert ev["gates_passed"], ev["gates"]
    assert decision["promoted"] == artifact.version
    assert Registry(models).champion()["version"] == artifact.version
    assert Registry(models).history()[-1]["actor"] == "test" and "first champion" in decision["reason"]


def test_a_model_trained_on_shuffled_labels_fails_its_gates_and_is_not_promoted(world, deployed):
    models, champion_artifact, _, _ = deployed
    shuffled, ev = candidate(world, models, shuffle=True)
    failed = {n for n, g in ev["gates"].items() if not g["passed"]}
    assert "min_pr_auc" in failed and "no_regression_vs_champion" in failed
    assert "short by" in ev["gates"]["min_pr_auc"]["message"]
    decision = deploy(Registry(models), [ev], actor="test")
    assert decision["promoted"] is None and "champion unchanged" in decision["reason"]
    assert Registry(models).champion()["version"] == champion_artifact.version


def test_evaluation_uses_the_model_it_was_given(world, deployed, tmp_path):
    models, champion_artifact, _, _ = deployed
    other, _ = candidate(world, tmp_path / "models")  # a newer model exists on disk
    ev = evaluate(champion_artifact, world[0], world[1], None)
    assert ev["version"] == champion_artifact.version
    test = world[0].filter(pl.col("split") == "test")
    from ml.training.dataset import label_array
    from ml.training.metrics import macro_pr_auc, pr_auc_by_policy

    direct = macro_pr_auc(pr_auc_by_policy(label_array(test), Scorer(champion_artifact).predict_proba(test)))
    assert ev["test"]["macro_pr_auc"] == pytest.approx(direct)
    assert other.version != champion_artifact.version
    assert Path(champion_artifact.path, "pr_curves.png").stat().st_size > 1000


def test_qa_gold_metrics_cover_only_audited_test_rows(deployed, world):
    _, _, ev, _ = deployed
    test = world[0].filter(pl.col("split") == "test")
    assert ev["qa_gold"]["rows"] == test.filter(pl.col("label_source") == "qa_audit").height
    assert set(ev["slices"]) >= {"surface", "language", "country", "account_age_bucket"}


def test_promotion_and_rollback_switch_the_champion_atomically(tmp_path):
    registry = Registry(tmp_path)
    for v in ("a", "b", "c"):
        registry.register({"version": v, "kind": "baseline", "path": str(tmp_path / v), "dataset_version": "d",
                           "code_version": "x", "params": {}, "metrics": {}, "operating_points": {}})
    with pytest.raises(RegistryError, match="nothing to roll back"):
        registry.rollback(actor="t")
    registry.promote("a", "first", "t")
    seen: list[int] = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            seen.append(sum(e["status"] == "champion" for e in Registry(tmp_path).list()))

    thread = threading.Thread(target=reader)
    thread.start()
    for _ in range(40):
        registry.promote("b", "swap", "t")
        registry.promote("a", "swap back", "t")
    stop.set()
    thread.join()
    assert seen and set(seen) == {1}  # never zero champions, never two
    registry.promote("c", "c is better", "t")
    assert registry.rollback(actor="t")["version"] == "a"
    assert registry.champion()["version"] == "a"
    assert {e["version"]: e["status"] for e in registry.list()} == {"a": "champion", "b": "retired", "c": "retired"}
    with pytest.raises(RegistryError, match="unknown model version 'zzz'"):
        registry.promote("zzz", "typo", "t")


def test_enforcement_policy_rejects_malformed_files_naming_the_line(tmp_path):
    good = load_policy(Path(__file__).parents[1] / "ml" / "enforcement_policy.yaml")
    assert good.rules[0].name == "remove_ring_scams"
    cases = {
        "version: 1\nrules:\n  - name: r\n    policy: spam\n    score_at_least: review\n    action: delete\n":
            "line 6: unknown action 'delete'",
        "version: 1\nrules:\n  - name: r\n    policy: fraud\n    score_at_least: review\n    action: remove\n":
            "line 4: unknown policy 'fraud'",
        "version: 1\nrules:\n  - name: r\n    policy: spam\n    score_at_least: 1.5\n    action: remove\n":
            "line 5: score_at_least 1.5",
        "version: 1\nrules:\n  - name: r\n    policy: spam\n    score_at_least: review\n    action: remove\n"
        "    context: {account_age_days_below: soon}\n": "line 7: account_age_days_below needs a number",
        "version: 1\nrules: [\n": "not valid YAML",
        "version: 2\nrules: []\n": "line 1: version must be 1",
    }
    for text, message in cases.items():
        with pytest.raises(PolicyError, match=message.replace("(", r"\(")):
            parse_policy(text, "p.yaml")
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.yaml")


def test_enforcement_policy_applies_context_rules(deployed):
    policy = parse_policy("version: 1\nrules:\n  - name: ring\n    policy: scam\n    score_at_least: 0.2\n"
                          "    context: {component_size_at_least: 3}\n    action: remove\n"
                          "  - name: rest\n    policy: any\n    score_at_least: 0.5\n    action: review\n")
    proba = pl.DataFrame({c: [0.0, 0.0, 0.0] for c in PROBA_COLUMNS}).with_columns(p_scam=pl.Series([0.3, 0.3, 0.6]))
    ctx = pl.DataFrame({"component_size": [5, 1, None]})
    thresholds = {p: {"auto_action": 0.9, "review": 0.5} for p in ("hate_speech", "harassment", "spam", "scam")}
    assert policy.decide(proba, thresholds, ctx).tolist() == ["remove", "allow", "review"]


def test_cli_scoring_keeps_every_row_in_order_and_names_bad_input(deployed, tmp_path):
    models = deployed[0]
    texts = ["WINNER!! claim your prize, call 09061701461 now", "see you at lunch", "", "you are a pathetic loser"]
    src = tmp_path / "in.parquet"
    pl.DataFrame({"id": [1, 2, 3, 4], "body": texts}).write_parquet(src)
    out = score_file(models, src, "body", tmp_path / "out.csv")
    scored = pl.read_csv(out)
    assert scored["id"].to_list() == [1, 2, 3, 4]
    assert scored.columns == ["id", "body", *PROBA_COLUMNS, "action", "model_version", "text_flag"]
    assert np.allclose(scored.select(PROBA_COLUMNS).to_numpy().sum(axis=1), 1.0)
    with pytest.raises(ScoringInputError, match="no column 'text'"):
        score_file(models, src, "text")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ScoringInputError, match="cannot read it as parquet"):
        score_file(models, tmp_path / "bad.parquet", "body")
    with pytest.raises(ScoringInputError, match="unsupported file type"):
        score_file(models, tmp_path / "in.json", "body")


@pytest.fixture(scope="module")
def client(deployed):
    from fastapi.testclient import TestClient

    from ml.serving import create_app

    return TestClient(create_app(deployed[0]))


@pytest.mark.parametrize("body, status", [
    ({"items": []}, 422),
    ({"items": [{"text": 5}]}, 422),
    ({"items": [{"id": 1.5, "text": "x"}]}, 422),
    ({"items": [{"text": "x", "context": {"account_age_days": "old"}}]}, 422),
    ({"items": [{"text": "x", "context": {"unknown": 1}}]}, 422),
    ({"items": [{"text": "x" * 10_001}]}, 422),
    ({"items": [{"text": "x"}] * 257}, 422),
    ({"nothing": True}, 422),
    ([1, 2, 3], 422),
])
def test_service_answers_malformed_requests_with_4xx(client, body, status):
    resp = client.post("/v1/score", json=body)
    assert resp.status_code == status
    assert resp.json()["problems"]


def test_service_rejects_unparseable_and_oversized_bodies(client):
    assert client.post("/v1/score", content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    huge = b'{"items": [{"text": "' + b"a" * (5 * 1024 * 1024) + b'"}]}'
    assert client.post("/v1/score", content=huge, headers={"content-type": "application/json"}).status_code == 413


def test_service_scores_equal_the_cli_scores(client, deployed, tmp_path):
    models = deployed[0]
    texts = ["WINNER!! claim your prize, call 09061701461 now", "see you at lunch", "you are a pathetic loser"]
    resp = client.post("/v1/score", json={"items": [{"id": i, "text": t} for i, t in enumerate(texts)]})
    assert resp.status_code == 200
    results = resp.json()["results"]
    src = tmp_path / "in.csv"
    pl.DataFrame({"text": texts}).write_csv(src)
    cli = pl.read_csv(score_file(models, src, "text"))
    for row, api in zip(cli.iter_rows(named=True), results):
        assert api["action"] == row["action"] and api["model_version"] == row["model_version"]
        for c in PROBA_COLUMNS:
            assert api[c] == pytest.approx(row[c], abs=1e-9)
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/v1/model").json()["model_version"] == deployed[1].version


def test_service_picks_up_a_new_champion_without_restart(client, world, deployed):
    models = deployed[0]
    before = client.get("/v1/model").json()["model_version"]
    newer, ev = candidate(world, models)
    Registry(models).promote(newer.version, "test", "test")
    try:
        assert client.get("/v1/model").json()["model_version"] == newer.version
        resp = client.post("/v1/score", json={"items": [{"text": "hello"}]})
        assert resp.json()["results"][0]["model_version"] == newer.version
    finally:
        Registry(models).promote(before, "restore", "test")
    assert load_champion(models).version == before
