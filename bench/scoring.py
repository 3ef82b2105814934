"""Scoring speed of the champion: batch items/s and HTTP latency at a fixed request rate.

    .venv/bin/python bench/scoring.py [--items 1000000] [--rate 100] [--seconds 20]
        [--sizes 100000,1000000,2000000] [--distinct-format csv|parquet] [--only batch|cost|distinct|http|ray]

Needs a champion in TRUSTLAKE_HOME (run `make run` first). Batch: 1,000,000 simulated content
items with their real point-in-time context features are scored by `ml.scoring.score_frame`
(features are built first and not timed). HTTP: `trustlake serve` runs in a subprocess on a
free loopback port; an open-loop load generator sends single-item requests at a fixed rate
and measures latency from each request's scheduled send time, so a stalled server shows up
as latency instead of silently lowering the rate. Goals: >= 50,000 items/s in batch on
2 cores for the LightGBM path, no slower compiled than as trained; p99 <= 25 ms at 100 requests/s;
the highest rate sustained with p99 <= 100 ms (goal 1,000/s), tried upward in steps; at 200
connections the share shed and the p99 of answered requests; the text p99 at 100 requests/s while
four clients keep sending image requests (OCR). Cost: one text's CPU ms in process, as trained and
compiled, and the compiled call's parts.

Ray: `trustlake serve --ray` with 2 replicas against 1 (1 CPU each, local Ray cluster), the same
open-loop load at `--rate` and the same sustained-rate search as HTTP; the ratios of the sustained
rate and of the p99 at `--rate`, 2 replicas over 1.

Distinct (batch, all-distinct texts): pool texts suffixed with their row number, so no text
repeats, are written to a CSV (or Parquet) file and scored through `trustlake score`'s streaming
path (`ml.scoring.io.score_file`), each size in a fresh process so its peak RSS (VmHWM) is
its own. Goal: peak RSS grows at most 1.5x from the smallest size to the largest (100k -> 2M).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
from load import closed_loop, exchange, load, percentiles, post, serving  # bench/load.py
from report import write_report  # bench/report.py, beside this script

from ml.corpora import load_text_pool
from ml.features.build import scoring_frame
from ml.lake import Lake
from ml.scoring import load_champion, score_frame
from ml.scoring.io import score_file
from ml.simulator import simulate_days
from ml.world import SimConfig
from orchestration.settings import PROJECT_ROOT, Settings


def batch(settings: Settings, items: int) -> dict:
    champion = load_champion(Lake(settings.home).models)
    pool, _ = load_text_pool(settings.corpora)
    config = SimConfig(users=max(4_000, items // 10), content_per_day=items // 30 + 1)
    raw = simulate_days(config, pool, config.start_date, config.start_date + timedelta(days=29))
    content = raw["content"].head(items)
    frame = scoring_frame(content, raw["users"], raw["reports"], raw["decisions"], raw["appeals"])
    # The champion as trained (before ml/scoring/compiled.py) and compiled, on the same rows.
    as_trained = load_champion(Lake(settings.home).models, compiled=False)
    runs = {}
    for name, model in (("as_trained", as_trained), ("compiled", champion)):
        score_frame(model, frame.head(1000))  # warm up
        t, cpu = time.perf_counter(), time.process_time()
        scores = score_frame(model, frame)
        seconds, cpu_seconds = time.perf_counter() - t, time.process_time() - cpu
        runs[name] = {
            "seconds": round(seconds, 2),
            "items_per_second": round(scores.height / seconds),
            "items_per_cpu_second": round(scores.height / cpu_seconds),
        }
        print(f"batch {name}: {runs[name]['items_per_second']:,} items/s", file=sys.stderr)
    return {
        "model_version": champion.version,
        "items": scores.height,
        **runs["compiled"],
        "as_trained": runs["as_trained"],
        "compiled_vs_as_trained": round(runs["as_trained"]["seconds"] / runs["compiled"]["seconds"], 2),
        "distinct_texts": frame["text"].n_unique(),
        "goal_items_per_second": 50_000,
    }


def single_text_cost(settings: Settings, repeats: int = 300) -> dict:
    """In process, one text with context scored by `score_frame`: CPU ms per call as trained and
    compiled, and the compiled call's parts (CPU time: wall time on a shared machine measures the
    neighbours)."""
    import polars as pl

    from ml.training.artifacts import PROBA_COLUMNS
    from ml.training.matrix import risk_features, with_text_signals
    from ml.training.text_classifier import ngram_counts, signal_block

    models = Lake(settings.home).models
    pool, _ = load_text_pool(settings.corpora)
    text = pool["text"][0]
    one = pl.DataFrame({"text": [text], "surface": ["feed"], "account_age_days": [3.0], "prior_posts": [4]})

    def cpu_ms(fn) -> float:
        for _ in range(5):
            fn()
        t = time.process_time()
        for _ in range(repeats):
            fn()
        return round((time.process_time() - t) / repeats * 1000, 3)

    out = {}
    for name, compiled in (("as_trained", False), ("compiled", True)):
        champion = load_champion(models, compiled=compiled)
        out[f"{name}_ms"] = cpu_ms(lambda c=champion: score_frame(c, one))
        out[f"{name}_text_only_ms"] = cpu_ms(lambda c=champion: score_frame(c, one.select("text")))
    scorer = champion.scorer
    parts = {}
    if hasattr(scorer, "_text") and hasattr(scorer._text, "proba"):
        signals = with_text_signals(pl.DataFrame({"text": [text]}))
        block, counts = signal_block(signals), ngram_counts([text])
        proba = scorer._text.proba(counts, block)
        parts = {
            "text_signals_ms": cpu_ms(lambda: with_text_signals(pl.DataFrame({"text": [text]}))),
            "signal_block_ms": cpu_ms(lambda: signal_block(signals)),
            "ngram_counts_ms": cpu_ms(lambda: ngram_counts([text])),
            "classifier_ms": cpu_ms(lambda: scorer._text.proba(counts, block)),
        }
        if scorer._booster is not None:
            inputs = risk_features(one.hstack(signals.drop("text")), proba)
            parts["risk_inputs_ms"] = cpu_ms(lambda: risk_features(one.hstack(signals.drop("text")), proba))
            parts["booster_ms"] = cpu_ms(lambda: scorer._booster.predict(inputs, raw_score=True, num_threads=1))
        scores = pl.DataFrame({c: proba[:, k] for k, c in enumerate(PROBA_COLUMNS)})
        parts["policy_ms"] = cpu_ms(lambda: champion.policy.decide(scores, champion.thresholds, one))
    out["compiled_parts"] = parts
    return out


def distinct_input(texts, rows: int, path: Path) -> None:
    """`rows` texts drawn from `texts`, each made unique by its row number, as CSV or Parquet."""
    import polars as pl

    frame = (
        texts.sample(n=rows, with_replacement=True, seed=0)
        .to_frame("text")
        .with_row_index("id")
        .with_columns(pl.col("text") + " #" + pl.col("id").cast(pl.String))
    )
    frame.write_csv(path) if path.suffix == ".csv" else frame.write_parquet(path)


def peak_rss_mb() -> int:
    """This process's own peak RSS in MB.

    VmHWM rather than ru_maxrss: on Linux, ru_maxrss of a process started by `subprocess` starts
    at the parent's high-water mark (exec accounts the memory of the vforked parent), so it would
    report the bench's input-building parent instead of the scoring child.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    except OSError:
        pass  # not Linux: ru_maxrss (KiB on Linux, bytes on macOS; the fallback is for Linux-likes)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def distinct_child(src: Path) -> None:
    """Score `src` with `trustlake score`'s code path and print one JSON line: time and peak RSS.

    Runs in its own process (see `distinct`), so the peak RSS is this size's alone.
    """
    settings = Settings.from_env()
    imported = peak_rss_mb()  # after imports, before scoring
    out = src.with_name(f"{src.stem}.scored{src.suffix}")
    t, cpu = time.perf_counter(), time.process_time()
    score_file(Lake(settings.home).models, src, "text", out)
    seconds, cpu_seconds = time.perf_counter() - t, time.process_time() - cpu
    # CPU seconds too: on a shared machine wall time mostly measures the neighbours.
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "cpu_seconds": round(cpu_seconds, 2),
                "peak_rss_mb": peak_rss_mb(),
                "rss_after_imports_mb": imported,
                "output_bytes": out.stat().st_size,
            }
        )
    )


def distinct(settings: Settings, sizes: list[int], fmt: str) -> dict:
    """All-distinct-text batch scoring at each size: items/s and the peak RSS of a fresh process."""
    pool, _ = load_text_pool(settings.corpora)
    runs = []
    with tempfile.TemporaryDirectory(prefix="trustlake-bench-scoring-") as tmp:
        for rows in sizes:
            src = Path(tmp) / f"distinct-{rows}.{fmt}"
            distinct_input(pool["text"], rows, src)
            child = subprocess.run(
                [sys.executable, __file__, "--distinct-child", str(src)],
                capture_output=True,
                text=True,
                cwd=PROJECT_ROOT,
                check=False,
            )
            if child.returncode != 0:
                how = f"signal {-child.returncode}" if child.returncode < 0 else f"exit code {child.returncode}"
                raise RuntimeError(f"scoring {rows:,} rows failed ({how}): {child.stderr[-2000:]}")
            run = json.loads(child.stdout.strip().splitlines()[-1])
            runs.append(
                {
                    "rows": rows,
                    "input_bytes": src.stat().st_size,
                    "items_per_second": round(rows / run["seconds"]),
                    "items_per_cpu_second": round(rows / run["cpu_seconds"]),
                    **run,
                }
            )
            for f in Path(tmp).iterdir():
                f.unlink()
            print(
                f"distinct {rows:>10,} rows: {runs[-1]['items_per_second']:>7,} items/s "
                f"({runs[-1]['items_per_cpu_second']:,} per CPU second), peak RSS {run['peak_rss_mb']:,} MB",
                file=sys.stderr,
            )
    ratio = runs[-1]["peak_rss_mb"] / runs[0]["peak_rss_mb"]
    return {
        "format": fmt,
        "runs": runs,
        "peak_rss_ratio": round(ratio, 2),
        "ratio_of": f"{runs[-1]['rows']:,} vs {runs[0]['rows']:,} rows",
        "goal_peak_rss_ratio": 1.5,
        "goal_met": ratio <= 1.5,
    }


# Closed-loop runs: (connections, requests). Bounded counts keep the run short on 2 cores.
CLOSED_LOOP = ((10, 2_000), (200, 4_000))


# Open-loop rates tried for the highest sustained single-text rate, each for SUSTAIN_S seconds.
SUSTAIN_RATES = (100, 200, 300, 400, 600, 800, 1000, 1200, 1500, 2000)
SUSTAIN_S = 8
SUSTAIN_P99_MS = 100


def sustained(port: int, texts: list[str]) -> dict:
    """The highest rate of SUSTAIN_RATES answered entirely 200 with p99 <= SUSTAIN_P99_MS (rates
    tried in order, stopping at the first that fails). The load generator shares the 2 cores."""
    tried, best = [], None
    for rate in SUSTAIN_RATES:
        lat, other = asyncio.run(load(port, rate, SUSTAIN_S, texts))
        p99 = round(float(np.percentile(lat, 99)), 2) if lat else None
        tried.append({"rate": rate, "p99_ms": p99, "other_outcomes": other})
        print(f"sustained {rate}/s: p99 {p99} ms, other {other}", file=sys.stderr)
        if other or p99 is None or p99 > SUSTAIN_P99_MS:
            break
        best = rate
    return {"max_rate_with_p99_at_most_100_ms": best, "tried": tried, "goal_rate": 1_000}


async def image_burst(port: int, image: bytes, clients: int, stop: asyncio.Event) -> dict[str, int]:
    """`clients` clients each posting one image request after another until `stop`: status counts."""
    body = json.dumps({"items": [{"image": base64.b64encode(image).decode(), "text": "see this"}]}).encode()
    statuses: dict[str, int] = {}

    async def client() -> None:
        while not stop.is_set():
            conn = await asyncio.open_connection("127.0.0.1", port)
            try:
                status, headers = await exchange(conn, post(port, body))
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                status, headers = type(exc).__name__, {}
            finally:
                conn[1].close()
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status == 503:
                await asyncio.sleep(float(headers.get("retry-after", 1)))

    await asyncio.gather(*(client() for _ in range(clients)))
    return statuses


def beside_images(port: int, rate: float, seconds: float, texts: list[str], image: bytes, clients: int = 4) -> dict:
    """Open-loop single texts at `rate` while `clients` clients keep sending image requests."""

    async def run():
        stop = asyncio.Event()
        burst = asyncio.create_task(image_burst(port, image, clients, stop))
        await asyncio.sleep(1.0)  # the image pool is busy before the text load starts
        lat, other = await load(port, rate, seconds, texts)
        stop.set()
        return lat, other, await burst

    lat, other, statuses = asyncio.run(run())
    return {
        "text_rate": rate,
        "image_clients": clients,
        "image_statuses": statuses,
        "text_other_outcomes": other,
        **percentiles("text", lat),
    }


def burst_image(settings: Settings) -> bytes:
    from ml.images.render import render_text_image
    from ml.images.transforms import encode_image

    pool, _ = load_text_pool(settings.corpora)
    return encode_image(render_text_image(pool["text"][1], np.random.default_rng(0), "flyer").image, "JPEG", 85)


def http(settings: Settings, rate: float, seconds: float) -> dict:
    pool, _ = load_text_pool(settings.corpora)
    texts = pool["text"].sample(n=2000, seed=0).to_list()
    with serving(settings) as port:
        max_in_flight = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()["max_in_flight"]
        asyncio.run(load(port, rate, 2, texts))  # warm up
        lat, other = asyncio.run(load(port, rate, seconds, texts))
        lat = np.array(lat)
        closed = {str(c): asyncio.run(closed_loop(port, c, n, texts)) for c, n in CLOSED_LOOP}
        most = sustained(port, texts)
        images = beside_images(port, rate, seconds, texts, burst_image(settings))
        batching = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()["batching"]
    # The same 200 connections as served before the limits: nothing shed, FastAPI's 40 worker threads.
    with serving(settings, "--max-in-flight", "1000000", "--scoring-threads", "40") as port:
        connections, requests = CLOSED_LOOP[-1]
        unbounded = asyncio.run(closed_loop(port, connections, requests, texts))
    shedding_p99 = closed[str(connections)]["ok_p99_ms"]
    return {
        "rate_per_second": rate,
        "requests": len(lat),
        "other_outcomes": other,
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p90_ms": round(float(np.percentile(lat, 90)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
        "max_ms": round(float(lat.max()), 2),
        "goal_p99_ms": 25,
        "max_in_flight": max_in_flight,
        "closed_loop": closed,
        "sustained": most,
        "beside_image_burst": images,
        "batching": batching,
        "closed_loop_without_shedding": unbounded,
        "p99_ms_of_200s_at_200_connections_shedding_vs_not": round(shedding_p99 / unbounded["ok_p99_ms"], 3)
        if shedding_p99 and unbounded["ok_p99_ms"]
        else None,
    }


def ray_replicas(settings: Settings, rate: float, seconds: float) -> dict:
    """`trustlake serve --ray` with 1, then 2 replicas (1 CPU each) on a local Ray cluster: single-text
    open-loop latency at `rate` and the highest sustained rate, each run the same way, one after the
    other in this process. On the 2-core default machine the proxy, both replicas and the load generator
    share the two cores, so the ratio says what a second replica buys there, not on a cluster."""
    pool, _ = load_text_pool(settings.corpora)
    texts = pool["text"].sample(n=2000, seed=0).to_list()
    runs = {}
    for replicas in (1, 2):
        flags = ("--ray", "--replicas", str(replicas))
        # The local cluster, whatever RAY_ADDRESS says, with a CPU per replica.
        with serving(settings, *flags, start_s=600, RAY_ADDRESS="", TRUSTLAKE_SERVE_CPUS_PER_REPLICA="1") as port:
            asyncio.run(load(port, rate, 3, texts))  # warm up: every replica loads the champion
            lat, other = asyncio.run(load(port, rate, seconds, texts))
            most = sustained(port, texts)
        runs[replicas] = {
            "rate_per_second": rate,
            "requests": len(lat),
            "other_outcomes": other,
            **percentiles("at_rate", lat),
            "sustained": most,
        }
        print(
            f"ray {replicas} replica(s): p99 {runs[replicas]['at_rate_p99_ms']} ms at {rate:g}/s, "
            f"sustained {most['max_rate_with_p99_at_most_100_ms']}/s",
            file=sys.stderr,
        )
    one, two = runs[1], runs[2]
    best_one, best_two = (r["sustained"]["max_rate_with_p99_at_most_100_ms"] for r in (one, two))
    return {
        "one_replica": one,
        "two_replicas": two,
        "sustained_rate_two_vs_one": round(best_two / best_one, 2) if best_one and best_two else None,
        "p99_at_rate_two_vs_one": round(two["at_rate_p99_ms"] / one["at_rate_p99_ms"], 2)
        if one["at_rate_p99_ms"] and two["at_rate_p99_ms"]
        else None,
        "cpus_per_replica": 1,
        "machine_cpus": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument(
        "--sizes",
        default="100000,1000000,2000000",
        help="rows of all-distinct text to score, comma-separated, each in a fresh process",
    )
    parser.add_argument("--distinct-format", choices=["csv", "parquet"], default="csv")
    parser.add_argument(
        "--only", choices=["batch", "cost", "distinct", "http", "ray"], default=None, help="run one part only"
    )
    parser.add_argument("--distinct-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.distinct_child:
        distinct_child(args.distinct_child)
        return
    settings = Settings.from_env()
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    report = {}
    if args.only in (None, "batch"):
        report["batch"] = batch(settings, args.items)
    if args.only in (None, "cost"):
        report["single_text_cost"] = single_text_cost(settings)
    if args.only in (None, "distinct"):
        report["distinct"] = distinct(settings, sizes, args.distinct_format)
    if args.only in (None, "http"):
        report["http"] = http(settings, args.rate, args.seconds)
    if args.only in (None, "ray"):
        report["ray_serve"] = ray_replicas(settings, args.rate, args.seconds)
    write_report("scoring", report)


if __name__ == "__main__":
    main()
