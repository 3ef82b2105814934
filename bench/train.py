"""Ray LightGBM (long-lived actors) versus plain `lightgbm.train` on the same 1,000,000-row risk-model matrix.

    .venv/bin/python bench/train.py [--rows 1000000] [--rounds 100]

Both run side by side in this process on the same matrix, laid out as the risk model's
(`ml.training.matrix.risk_features`: a content classifier's probabilities beside the real
point-in-time context features of simulated content, labelled with the simulator's truth; the
classifier is the baseline recipe fitted on the corpus text pool), the same parameters,
the same number of boosting rounds (no early stopping) and the same total threads (2):
plain = one process with 2 threads; Ray = 1 worker x 2 threads, and 2 workers x 1 thread
(ml.training.lightgbm_model.LightGBMWorkers). Plain runs before and after the Ray fits and its
mean is the baseline, so a machine that slows down meanwhile shows. Per Ray shape: starting the
workers and shipping the matrix (once per process), the first fit, and a second fit on the same
workers (what every later fit costs). Also reported: ray.init and the deep text model's training
throughput (examples/s) on a sample of real corpus texts.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
from report import write_report  # bench/report.py, beside this script

from ml.corpora import load_text_pool
from ml.features.build import scoring_frame
from ml.features.text import distinct, hashed_ngrams
from ml.simulator import simulate_days
from ml.taxonomy import POLICIES
from ml.training import lightgbm_model, text_model
from ml.training.lightgbm_model import LightGBMParams
from ml.training.matrix import dense_matrix, risk_features
from ml.training.placement import WorkerShape
from ml.training.text_classifier import ClassifierParams, LinearTextClassifier, TextMatrix
from ml.training.text_model_params import TextModelParams
from ml.world import SimConfig
from orchestration.settings import Settings


def feature_matrix(rows: int, pool) -> tuple[np.ndarray, np.ndarray, pl.DataFrame]:
    days = 30
    config = SimConfig(users=max(4_000, rows // 10), content_per_day=int(rows / days * 1.02) + 1)
    raw = simulate_days(config, pool, config.start_date, config.start_date + timedelta(days=days - 1))
    content = raw["content"].head(rows)
    frame = scoring_frame(content, raw["users"], raw["reports"], raw["decisions"], raw["appeals"]).join(
        raw["content_truth"].select("content_id", "true_policy"), on="content_id"
    )
    y = frame["true_policy"].replace_strict({p: i for i, p in enumerate(POLICIES)}, return_dtype=pl.Int32).to_numpy()
    return risk_features(frame, classifier_proba(pool, frame["text"].to_list())), y, frame


def classifier_proba(pool: pl.DataFrame, texts: list[str]) -> np.ndarray:
    """Probabilities of a linear text classifier fitted on the pool, each distinct text scored once."""
    labels = pool["policy"].replace_strict({p: i for i, p in enumerate(POLICIES)}, return_dtype=pl.Int32).to_numpy()
    model = LinearTextClassifier(ClassifierParams()).fit(TextMatrix.of(pool["text"].to_list()), labels)
    unique, rows = distinct(texts)
    return model.proba(TextMatrix.of(unique))[rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    import ray

    pool, source = load_text_pool(Settings.from_env().corpora)
    t0 = time.perf_counter()
    X, y, frame = feature_matrix(args.rows, pool)
    build_s = time.perf_counter() - t0
    n_val = len(y) // 10
    X_tr, y_tr, X_val, y_val = X[:-n_val], y[:-n_val], X[-n_val:], y[-n_val:]
    # Same work on both sides: fixed rounds, no early stopping.
    base = LightGBMParams(
        max_rounds=args.rounds,
        early_stopping_rounds=args.rounds + 1,
        feature_fraction=1.0,
        max_bin=255,
        threads_per_worker=2,
        num_workers=1,
    )

    t = time.perf_counter()
    booster = lightgbm_model.train_local(X_tr, y_tr, X_val, y_val, base)
    plain_first = time.perf_counter() - t

    t = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - t
    fits = {}
    for workers, threads in ((1, 2), (2, 1)):
        p = replace(base, num_workers=workers, threads_per_worker=threads)
        t = time.perf_counter()
        pool = lightgbm_model.LightGBMWorkers(WorkerShape(workers, threads))
        pool.load(X_tr, y_tr, X_val, y_val)
        start_s = time.perf_counter() - t
        walls = []
        for _ in range(2):
            t = time.perf_counter()
            b, info = pool.fit(p)
            walls.append(time.perf_counter() - t)
        pool.close()
        fits[f"{workers}x{threads}"] = (start_s, walls, info, b.num_trees() // len(POLICIES))

    t = time.perf_counter()
    lightgbm_model.train_local(X_tr, y_tr, X_val, y_val, base)
    plain_s = (plain_first + time.perf_counter() - t) / 2
    results = {
        shape: {
            "start_workers_and_ship_matrix_seconds": round(start_s, 2),
            "first_fit_seconds": round(walls[0], 2),
            "later_fit_seconds": round(walls[1], 2),
            "in_worker_train_seconds": round(info["train_seconds"], 2),
            "rounds": rounds,
            "ratio_vs_plain": round(walls[1] / plain_s, 3),
            "ratio_vs_plain_with_start": round((start_s + walls[0]) / plain_s, 3),
        }
        for shape, (start_s, walls, info, rounds) in fits.items()
    }
    with tempfile.TemporaryDirectory() as tmp:
        # Deep text model throughput on real texts with their context features.
        sample = frame.sample(n=min(20_000, frame.height), seed=0)
        ng, dn = hashed_ngrams(sample["text"].to_list()), dense_matrix(sample)
        ys = (
            sample["true_policy"]
            .replace_strict({p: i for i, p in enumerate(POLICIES)}, return_dtype=pl.Int32)
            .to_numpy()
        )
        half = len(ys) // 2
        _, tinfo = text_model.train_ray(
            ng[:half], dn[:half], ys[:half], (ng[half:], dn[half:], ys[half:]), TextModelParams(epochs=1), Path(tmp)
        )
    ray.shutdown()
    report = {
        "rows": int(len(y)),
        "features": int(X.shape[1]),
        "rounds": args.rounds,
        "text_source": source,
        "matrix_build_seconds": round(build_s, 1),
        "plain_lightgbm_seconds": round(plain_s, 2),
        "plain_lightgbm_seconds_before_and_after": [round(plain_first, 2), round(2 * plain_s - plain_first, 2)],
        "plain_rounds": booster.num_trees() // len(POLICIES),
        "ray": results,
        "ray_init_seconds": round(init_s, 2),
        "goal_ratio": 1.2,
        "text_model_examples_per_second": round(tinfo["examples_per_second"]),
        "text_model_examples": half,
    }
    write_report("train", report)


if __name__ == "__main__":
    main()
