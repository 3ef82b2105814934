"""The long table every monitoring measure writes (one row per day, metric and subject, with a status),
the intervals the rate and gap measures share, and the verdict an asset check reports over a run's days."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import polars as pl

from ml.monitoring.thresholds import STATUSES

# Columns of every monitoring table (one row per day, metric and subject).
METRIC_SCHEMA = {
    "date": pl.Date,
    "metric": pl.String,
    "subject": pl.String,
    "value": pl.Float64,
    "expected": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "n": pl.Int64,
    "status": pl.String,
    "champion": pl.String,
}


def metric_rows(day: date, champion: str, rows: list[dict]) -> pl.DataFrame:
    """`rows` (metric, subject, value and what else each knows) as one day's table, every column present."""
    full = [{**{k: None for k in METRIC_SCHEMA}, "date": day, "champion": champion, **r} for r in rows]
    return pl.DataFrame(full, schema=METRIC_SCHEMA)


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (the interval mart_prevalence_daily uses)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z * z / n)), min(1.0, (centre + half) / (1 + z * z / n))


def paired_gap(score: pl.Series, violates: pl.Series, z: float = 1.959964) -> tuple[float, float, float]:
    """Mean of score minus label over audited items, with its normal 95% interval (NaN without audits)."""
    n = score.len()
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    diff = score.cast(pl.Float64) - violates.cast(pl.Float64)
    mean = float(diff.mean())
    half = z * float(diff.std(ddof=1)) / math.sqrt(n) if n > 1 else float("inf")
    return mean, mean - half, mean + half


def nan_none(x: float) -> float | None:
    return None if x != x else x


@dataclass(frozen=True)
class Verdict:
    """The worst judged row of a measure over a run's days."""

    level: str  # ok | warn | fail | insufficient
    message: str
    worst: dict | None

    @property
    def passed(self) -> bool:
        return self.level in ("ok", "insufficient")


_RANK = {"insufficient": 0, "ok": 1, "warn": 2, "fail": 3}


def verdict(frame: pl.DataFrame, metrics: tuple[str, ...], describe) -> Verdict:
    """The worst status among rows of `metrics` (ties: the largest |value|), described by `describe(row)`."""
    judged = frame.filter(pl.col("metric").is_in(metrics) & pl.col("status").is_not_null())
    if judged.is_empty():
        return Verdict("insufficient", "nothing to judge: no scored content in these days", None)
    ranked = judged.with_columns(
        _rank=pl.col("status").replace_strict(_RANK, return_dtype=pl.Int8), _size=pl.col("value").abs().fill_null(0.0)
    )
    worst = ranked.sort(["_rank", "_size"], descending=True).drop("_rank", "_size").row(0, named=True)
    counts = dict(judged.group_by("status").len().iter_rows())
    tally = ", ".join(f"{counts[s]} {s}" for s in STATUSES if s in counts)
    return Verdict(worst["status"], f"{describe(worst)} ({tally} over {judged['date'].n_unique()} day(s))", worst)
