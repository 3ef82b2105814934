"""Dynamic micro-batching: requests that arrive together are scored in one call, and every request is
answered its own rows, in its own order, by the real app under concurrency."""

import asyncio
import threading
from pathlib import Path

import httpx
import numpy as np
import polars as pl
import pytest

from ml.registry import Registry
from ml.scoring import load_champion, score_frame
from ml.scoring.batching import MicroBatcher
from ml.scoring.serving import ServingLimits, create_app
from ml.training.artifacts import PROBA_COLUMNS
from tests.helpers import labelled_training_frame, small_champion


def test_jobs_that_wait_together_are_scored_in_one_call_and_answered_in_order():
    """One worker, held busy by a first job: the jobs queued meanwhile go to the next call together,
    split by key, and each gets its own results back."""
    release = threading.Event()
    calls: list[tuple[str, list]] = []

    def score(key, payloads):
        calls.append((key, list(payloads)))
        if len(calls) == 1:
            release.wait(10)
        return [[f"{key}:{x}" for x in p] for p in payloads]

    async def main():
        batcher = MicroBatcher(score, workers=1, max_items=100, max_wait_s=0.0)
        first = asyncio.create_task(batcher.submit("a", [0], 1))
        await asyncio.sleep(0.05)  # the first job is in the worker, which waits for `release`
        queued = [asyncio.create_task(batcher.submit("ab"[i % 2], [i, i + 100], 2)) for i in range(1, 9)]
        await asyncio.sleep(0.05)
        release.set()
        answers = await asyncio.gather(first, *queued)
        batcher.close()
        return answers, batcher.stats

    answers, stats = asyncio.run(main())
    assert answers[0] == ["a:0"]
    for i, answer in enumerate(answers[1:], start=1):
        key = "ab"[i % 2]
        assert answer == [f"{key}:{i}", f"{key}:{i + 100}"]
    assert [len(p) for _, p in calls] == [1, 4, 4]  # the eight queued jobs: one call per key
    assert (stats.batches, stats.items, stats.largest) == (2, 17, 16)


def test_a_batch_over_max_items_is_split():
    sizes: list[int] = []

    def score(key, payloads):
        sizes.append(sum(len(p) for p in payloads))
        return [len(p) for p in payloads]

    async def main():
        batcher = MicroBatcher(score, workers=1, max_items=5, max_wait_s=0.05)
        answers = await asyncio.gather(*(batcher.submit(None, [0, 0], 2) for _ in range(6)))
        batcher.close()
        return answers

    assert asyncio.run(main()) == [2] * 6
    assert max(sizes) <= 5 and sum(sizes) == 12


def test_a_scoring_error_reaches_every_request_of_its_batch_and_the_next_batch_is_served():
    def score(key, payloads):
        if key == "bad":
            raise ValueError("broken model")
        return payloads

    async def main():
        batcher = MicroBatcher(score, workers=2, max_items=10, max_wait_s=0.01)
        bad = await asyncio.gather(*(batcher.submit("bad", i, 1) for i in range(3)), return_exceptions=True)
        good = await batcher.submit("good", 7, 1)
        batcher.close()
        return bad, good

    bad, good = asyncio.run(main())
    assert all(isinstance(e, ValueError) and "broken model" in str(e) for e in bad)
    assert good == 7


@pytest.fixture(scope="module")
def models(pool, tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("batching") / "models"
    frame, _ = labelled_training_frame(pool, seed=31, days=6, rows=1500)
    small_champion(frame, models)
    return models


@pytest.fixture(scope="module")
def texts(pool) -> list[str]:
    frame, _ = labelled_training_frame(pool, seed=98, days=2, rows=300)
    return frame["text"].unique(maintain_order=True).to_list()[:120]


def test_concurrent_requests_each_get_their_own_rows(models, texts):
    """Forty requests of one to five items sent at once, with context on some: they are scored in
    shared batches, and every answer equals scoring that request alone, id by id."""
    limits = ServingLimits(max_in_flight=64, scoring_threads=2, batch_max_items=32, batch_wait_ms=200)
    app = create_app(models, limits)
    requests = []
    at = 0
    for r in range(40):
        n = 1 + r % 5
        items = []
        for k in range(n):
            item = {"id": f"r{r}-{k}", "text": texts[(at + k) % len(texts)]}
            if (r + k) % 3 == 0:
                item["context"] = {"account_age_days": float(r), "prior_enforcements": k}
            items.append(item)
        at += n
        requests.append({"items": items})

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answers = await asyncio.gather(*(client.post("/v1/score", json=body) for body in requests))
            health = (await client.get("/health")).json()
        return answers, health

    answers, health = asyncio.run(main())
    champion = load_champion(models)
    for body, answer in zip(requests, answers):
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [r["id"] for r in results] == [i["id"] for i in body["items"]]
        rows = [{"text": i["text"], **i.get("context", {})} for i in body["items"]]
        alone = score_frame(champion, pl.from_dicts(rows, infer_schema_length=None))
        got = np.array([[r[c] for c in PROBA_COLUMNS] for r in results])
        np.testing.assert_allclose(got, alone.select(PROBA_COLUMNS).to_numpy(), atol=1e-6)
        assert [r["action"] for r in results] == alone["action"].to_list()
    batching = health["batching"]
    assert batching["items"] == sum(len(b["items"]) for b in requests)
    assert batching["batches"] < len(requests)  # requests were scored together
    assert 1 < batching["largest_batch"] <= limits.batch_max_items


def test_no_champion_is_a_503_through_the_batcher(tmp_path):
    Registry(tmp_path / "models")  # an empty registry
    app = create_app(tmp_path / "models", ServingLimits(batch_wait_ms=1))

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/v1/score", json={"items": [{"text": "hello"}]})

    answer = asyncio.run(main())
    assert answer.status_code == 503 and "champion" in answer.json()["detail"]
