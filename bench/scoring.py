"""Scoring speed of the champion: batch items/s and HTTP latency at a fixed request rate.

    .venv/bin/python bench/scoring.py [--items 1000000] [--rate 100] [--seconds 20]

Needs a champion in TRUSTLAKE_HOME (run `make run` first). Batch: 1,000,000 simulated content
items with their real point-in-time context features are scored by `ml.scoring.score_frame`
(features are built first and not timed). HTTP: `trustlake serve` runs in a subprocess on a
free loopback port; an open-loop load generator sends single-item requests at a fixed rate
and measures latency from each request's scheduled send time, so a stalled server shows up
as latency instead of silently lowering the rate. Goals: >= 50,000 items/s in batch on
2 cores for the LightGBM path; p99 <= 25 ms at 100 requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np

from ml.corpora import load_text_pool
from ml.features.build import scoring_frame
from ml.lake import Lake
from ml.scoring import load_champion, score_frame
from ml.simulator import SimConfig, simulate_days
from orchestration.settings import PROJECT_ROOT, Settings


def batch(settings: Settings, items: int) -> dict:
    champion = load_champion(Lake(settings.home).models)
    pool, _ = load_text_pool(settings.corpora)
    config = SimConfig(users=max(4_000, items // 10), content_per_day=items // 30 + 1)
    raw = simulate_days(config, pool, config.start_date, config.start_date + timedelta(days=29))
    content = raw["content"].head(items)
    frame = scoring_frame(content, raw["users"], raw["reports"], raw["decisions"], raw["appeals"])
    score_frame(champion, frame.head(1000))  # warm up
    t = time.perf_counter()
    scores = score_frame(champion, frame)
    seconds = time.perf_counter() - t
    return {"model_version": champion.version, "items": scores.height, "seconds": round(seconds, 2),
            "items_per_second": round(scores.height / seconds), "distinct_texts": frame["text"].n_unique(),
            "goal_items_per_second": 50_000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(port: int, rate: float, seconds: float, texts: list[str]) -> list[float]:
    n = int(rate * seconds)
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        start = time.perf_counter() + 0.5

        async def one(i: int) -> None:
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
            r = await client.post("/v1/score", json={"items": [{"id": i, "text": texts[i % len(texts)]}]})
            r.raise_for_status()
            latencies.append((time.perf_counter() - scheduled) * 1000)

        await asyncio.gather(*(one(i) for i in range(n)))
    return latencies


def http(settings: Settings, rate: float, seconds: float) -> dict:
    port = free_port()
    env = {**os.environ, "TRUSTLAKE_HOME": str(settings.home)}
    server = subprocess.Popen([str(Path(sys.executable).with_name("trustlake")), "serve", "--port", str(port)],
                              env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).json()["status"] == "ok":
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"server did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.3)
        pool, _ = load_text_pool(settings.corpora)
        texts = pool["text"].sample(n=2000, seed=0).to_list()
        asyncio.run(load(port, rate, 2, texts))  # warm up
        lat = np.array(asyncio.run(load(port, rate, seconds, texts)))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"rate_per_second": rate, "requests": int(len(lat)), "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p90_ms": round(float(np.percentile(lat, 90)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "max_ms": round(float(lat.max()), 2), "goal_p99_ms": 25}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    settings = Settings.from_env()
    print(json.dumps({"batch": batch(settings, args.items), "http": http(settings, args.rate, args.seconds)},
                     indent=2))


if __name__ == "__main__":
    main()
