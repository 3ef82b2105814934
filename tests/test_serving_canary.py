"""A canary in serving: a sticky share of items, chosen by item id, is answered by another registered
version; every result names the version that answered it, and /v1/stats counts each version."""

import asyncio
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest

from ml.registry import Registry, RegistryError
from ml.scoring import load_model, score_frame
from ml.scoring.serving import ServingLimits, create_app
from ml.scoring.traffic import Canary
from ml.training.artifacts import PROBA_COLUMNS
from tests.helpers import labelled_training_frame, run_cli, small_champion, text_classifier_candidate


def test_canary_routing_is_sticky_and_near_its_share_over_ten_thousand_ids():
    ids = list(range(10_000))
    canary = Canary("risk_model-b", 0.1)
    routed = canary.routes(ids, [""] * len(ids))
    # Binomial sd of the share at n = 10,000 is 0.003: four of them either side.
    assert abs(routed.mean() - 0.1) < 0.012
    assert np.array_equal(routed, canary.routes(ids, ["other text"] * len(ids)))  # the id decides, not the text
    assert [canary.takes(i) for i in ids[:500]] == routed[:500].tolist()
    # Another canary draws its own cohort, not the same ids again.
    other = Canary("risk_model-c", 0.1).routes(ids, [""] * len(ids))
    assert (routed & other).sum() < 0.3 * routed.sum()
    # Without an id, the same text always goes to the same version.
    texts = [f"text {i % 50}" for i in range(1_000)]
    by_text = canary.routes([None] * len(texts), texts)
    assert all(by_text[i] == by_text[i % 50] for i in range(len(texts)))


@pytest.mark.parametrize("share", [0.0, -0.1, 1.5])
def test_a_share_outside_zero_to_one_is_refused(share):
    with pytest.raises(ValueError, match="canary share must be in"):
        Canary("v", share)


@pytest.fixture(scope="module")
def registry(pool, tmp_path_factory) -> tuple[Path, str, str]:
    """A champion and a second registered candidate (trained on other rows) to run as the canary."""
    models = tmp_path_factory.mktemp("canary") / "models"
    champion = small_champion(labelled_training_frame(pool, seed=31, days=6, rows=1500)[0], models)
    candidate, _ = text_classifier_candidate(labelled_training_frame(pool, seed=57, days=6, rows=1500)[0], models)
    return models, champion.version, candidate.version


def test_the_canary_answers_its_share_and_the_champion_the_rest(registry, pool):
    models, champion, candidate = registry
    canary = Canary(candidate, 0.3)
    app = create_app(models, ServingLimits(batch_wait_ms=5), canary=canary)
    texts = pool["text"].head(60).to_list()
    bodies = [{"items": [{"id": f"u{r}-{k}", "text": texts[(3 * r + k) % 60]} for k in range(3)]} for r in range(20)]

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = await asyncio.gather(*(client.post("/v1/score", json=b) for b in bodies))
            again = await asyncio.gather(*(client.post("/v1/score", json=b) for b in bodies))
            stats = (await client.get("/v1/stats")).json()
        return first, again, stats

    first, again, stats = asyncio.run(main())
    models_by_version = {v: load_model(Registry(models).artifact_dir(Registry(models).get(v))) for v in registry[1:]}
    routed = 0
    for body, answer, repeat in zip(bodies, first, again):
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [r["id"] for r in results] == [i["id"] for i in body["items"]]
        for item, result in zip(body["items"], results):
            expected = candidate if canary.takes(item["id"]) else champion
            assert result["model_version"] == expected
            routed += expected == candidate
            alone = score_frame(models_by_version[expected], pl.DataFrame({"text": [item["text"]]}))
            np.testing.assert_allclose(
                [result[c] for c in PROBA_COLUMNS], alone.select(PROBA_COLUMNS).row(0), atol=1e-6
            )
        # Sticky: the same ids are answered by the same versions the second time.
        assert [r["model_version"] for r in repeat.json()["results"]] == [r["model_version"] for r in results]
    assert 0 < routed < 60
    assert stats["canary"] == {"version": candidate, "share": 0.3}
    versions = stats["versions"]
    assert versions[candidate]["items"] == 2 * routed
    assert versions[champion]["items"] == 2 * (60 - routed)
    assert versions[champion]["latency_ms"]["p99"] >= versions[champion]["latency_ms"]["p50"] > 0


def test_a_canary_that_is_unknown_or_the_champion_is_refused(registry):
    models, champion, _ = registry
    with pytest.raises(RegistryError, match="unknown model version 'nope'"):
        create_app(models, canary=Canary("nope", 0.1))
    with pytest.raises(RegistryError, match="is the champion already"):
        create_app(models, canary=Canary(champion, 0.1))


def test_serve_refuses_a_bad_canary_with_a_clear_message(tmp_path):
    bad_share = run_cli(tmp_path / "home", "serve", "--canary", "v1", "--canary-share", "2", timeout=120)
    assert bad_share.returncode == 2
    assert "canary share must be in (0, 1], got 2.0" in bad_share.stderr and "Traceback" not in bad_share.stderr
    unknown = run_cli(tmp_path / "home", "serve", "--canary", "nope", "--port", "0", timeout=120)
    assert unknown.returncode == 2
    assert "--canary nope: unknown model version 'nope'" in unknown.stderr and "Traceback" not in unknown.stderr
