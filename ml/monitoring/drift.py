"""Drift of one day: the PSI of every champion score and watched feature against the champion's reference."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from ml.monitoring.measures import metric_rows
from ml.monitoring.psi import SCORE_COLUMNS, psi, with_risk
from ml.monitoring.reference import Reference
from ml.monitoring.thresholds import MonitoringThresholds, level

# Features that count events in a window before the post: on a day whose window reaches back before the
# first day the lake holds, they count only part of it (the first day's posts_last_24h sees no day before).
LOOKBACK = {"posts_last_24h": timedelta(days=1)}


def drift(
    reference: Reference,
    day: date,
    monitored: pl.DataFrame,
    limits: MonitoringThresholds,
    history_from: date | None = None,
) -> pl.DataFrame:
    """PSI of every score and feature column of one day's content against the reference. A LOOKBACK feature is
    reported but not judged ("insufficient") on a day whose window starts before `history_from`, the first day
    of the lake's history."""
    frame = with_risk(monitored)
    rows = []
    for column, bins in reference.bins.items():
        if column not in frame.columns:
            continue
        value = psi(bins, frame[column])
        truncated = history_from is not None and column in LOOKBACK and day - LOOKBACK[column] < history_from
        status = (
            "insufficient"
            if frame.height < limits.min_rows or truncated
            else level(value, limits.drift_psi_warn, limits.drift_psi_fail)
        )
        rows.append(
            {
                "metric": "score_psi" if column in SCORE_COLUMNS else "feature_psi",
                "subject": column,
                "value": value,
                "n": frame.height,
                "status": status,
            }
        )
    return metric_rows(day, reference.champion, rows)


def worst_psi(frame: pl.DataFrame) -> dict | None:
    """The largest judged PSI row of a drift table (score or feature), or None."""
    judged = frame.filter(pl.col("metric").is_in(("score_psi", "feature_psi")) & (pl.col("status") != "insufficient"))
    return judged.sort("value", descending=True).row(0, named=True) if judged.height else None
