"""After a promotion: each day the champion acts on, its volumes per action and policy against what its
launch impact predicted, as rows of the monitoring tables (ml/monitoring/measures.py METRIC_SCHEMA).

A day after the launch fails when its realised volume parts from the predicted one by more than `LaunchBounds.volume_tolerance`
(relative) and by more than chance explains: counts of items a day vary like Poisson counts, and the
prediction is itself a mean over the backtest's days, so a departure must also exceed BEYOND_CHANCE
standard deviations of both. Without that second test, a 30-day window of eight (action, policy) pairs
would fail somewhere on noise alone; with it, a small policy's 3 -> 5 removals never fails, and a real jump
(a campaign, a broken feature, a threshold gone wrong) does.
"""

from __future__ import annotations

import math
from datetime import date

import polars as pl

from ml.launch.bounds import LaunchBounds
from ml.launch.impact import ACTING, LaunchImpact
from ml.monitoring.measures import metric_rows
from ml.monitoring.precision import top_policy
from ml.taxonomy import VIOLATING

METRIC = "launch_volume"  # items a day per action and policy: realised (value) against predicted (expected)
BEYOND_CHANCE = 4.0  # standard deviations; two-sided, about 6e-5 per judged row under no change


def realised_volumes(scores: pl.DataFrame) -> dict[tuple[str, str], int]:
    """(action, policy) -> items of a day's content_scores the champion took that action on, by its most likely
    violation, and (action, "all")."""
    acted = scores.filter(pl.col("action").is_in(ACTING)).with_columns(policy=top_policy(scores))
    counts = {(a, p): n for a, p, n in acted.group_by("action", "policy").len().iter_rows()}
    out: dict[tuple[str, str], int] = {}
    for action in ACTING:
        for policy in VIOLATING:
            out[(action, policy)] = counts.get((action, policy), 0)
        out[(action, "all")] = sum(out[(action, p)] for p in VIOLATING)
    return out


def allowed_departure(predicted: float, prediction_days: int, tolerance: float) -> float:
    """How far a day's count may lie from `predicted` (a mean over `prediction_days` days) before it fails."""
    noise = math.sqrt(predicted * (1 + 1 / max(prediction_days, 1)))
    return max(tolerance * predicted, BEYOND_CHANCE * max(noise, 1.0))


def launch_volumes(
    day: date,
    champion: str,
    scores: pl.DataFrame,
    impact: LaunchImpact | None,
    bounds: LaunchBounds,
    launched_on: date | None,
) -> pl.DataFrame:
    """One day's realised volumes against `impact`'s prediction. Only a day after `launched_on` (the day the
    champion was promoted) is judged: content from before the launch is what the backtest predicted from, and
    a past campaign there is history, not a launch gone wrong. Every row is insufficient on such a day, and when
    there is no prediction (`impact` None: promoted by hand before launch reports existed)."""
    realised = realised_volumes(scores)
    judged = impact is not None and launched_on is not None and day > launched_on
    predicted = impact.predicted() if judged else {}
    rows = []
    for (action, subject), value in realised.items():
        expected = predicted.get((action, subject), 0.0) if judged else None
        row = {"metric": METRIC, "subject": f"{action}/{subject}", "value": float(value), "n": scores.height}
        if expected is None:
            rows.append({**row, "status": "insufficient"})
            continue
        allowed = allowed_departure(expected, impact.days, bounds.volume_tolerance)
        status = "fail" if abs(value - expected) > allowed else "ok"
        rows.append(
            {
                **row,
                "expected": expected,
                "ci_low": max(0.0, expected - allowed),
                "ci_high": expected + allowed,
                "status": status,
            }
        )
    return metric_rows(day, champion, rows)


def describe(row: dict) -> str:
    """A row in words, for the post-launch check."""
    if row["expected"] is None:
        return (
            f"{row['date']}: not judged (a day from before the champion {row['champion']}'s launch, or a champion "
            "launched without a launch impact to hold it to)"
        )
    return (
        f"{row['date']}: {row['subject']} {row['value']:.0f} items against {row['expected']:.1f} a day predicted at "
        f"launch (allowed {row['ci_low']:.1f} .. {row['ci_high']:.1f}; {row['status']})"
    )
