"""Prevalence of one day: the mean calibrated score and the share over the review threshold, per policy,
against the QA estimate (audits are a uniform random sample, so their share is unbiased).

The gap (predicted minus true prevalence) is measured on the audited items themselves: the mean of score
minus gold label over them. Audits are a uniform sample, so that is an unbiased estimate of the whole day's
gap (survey sampling's difference estimator), and, the score and the label moving together, its interval
is far narrower than the one of the day's mean score against the audit sample's share: a day whose audit
sample happens to hold many violations the champion scores high is not an alarm; a champion that scores
violations low is, at a smaller gap than before."""

from __future__ import annotations

from datetime import date

import polars as pl

from ml.monitoring.measures import metric_rows, nan_none, paired_gap, wilson
from ml.monitoring.reference import Reference
from ml.monitoring.thresholds import MonitoringThresholds
from ml.taxonomy import VIOLATING


def prevalence(
    reference: Reference, day: date, scores: pl.DataFrame, qa_labels: pl.DataFrame, limits: MonitoringThresholds
) -> pl.DataFrame:
    """Predicted prevalence per policy (mean calibrated score; share over the review threshold) against the
    QA estimate of the same day's content. `qa_labels`: content_id and gold label of QA-audited content.

    The gap row holds the champion's score minus the gold label averaged over the audited items (predicted
    minus true prevalence, unbiased), `expected` the champion's gap on its training window measured the same
    way; it is judged on how far it moved from that, and only when that usual gap lies outside the day's 95%
    interval (a day's audit sample is small): `moved`."""
    audited = scores.join(qa_labels.select("content_id", "label"), on="content_id")
    n = audited.height
    rows = []
    for policy in VIOLATING:
        column = f"p_{policy}"
        predicted = float(scores[column].mean()) if scores.height else None
        review = reference.thresholds.get(policy, {}).get("review")
        over = float((scores[column] >= review).mean()) if scores.height and review is not None else None
        hits = int((audited["label"] == policy).sum())
        qa = hits / n if n else None
        low, high = wilson(hits, n)
        offset = reference.prevalence_offset.get(policy, 0.0)
        gap, gap_low, gap_high = paired_gap(audited[column], audited["label"] == policy)
        rows += [
            {"metric": "predicted_prevalence", "subject": policy, "value": predicted, "n": scores.height},
            {"metric": "share_over_review_threshold", "subject": policy, "value": over, "n": scores.height},
            {
                "metric": "qa_prevalence",
                "subject": policy,
                "value": qa,
                "ci_low": nan_none(low),
                "ci_high": nan_none(high),
                "n": n,
            },
        ]
        if predicted is None or qa is None or n < limits.min_audited:
            status = "insufficient"
        elif gap_low <= offset <= gap_high:  # the champion's usual gap is inside the day's: may be sampling noise
            status = "ok"
        else:
            status = moved(gap - offset, gap_low - offset, gap_high - offset, limits)
        rows.append(
            {
                "metric": "prevalence_gap",
                "subject": policy,
                "value": nan_none(gap),
                "expected": offset,
                "ci_low": nan_none(gap_low),
                "ci_high": nan_none(gap_high),
                "n": n,
                "status": status,
            }
        )
    return metric_rows(day, reference.champion, rows)


def moved(move: float, low: float, high: float, limits: MonitoringThresholds) -> str:
    """The status of a gap that moved by `move` from the champion's usual one, its 95% interval [low, high]
    (which excludes 0): WARN when the move is past the warn threshold, ERROR only when even the interval's
    nearer end is past the fail threshold. A day of twenty-odd audits that happens to hold half violations
    the champion scores at 0.5 moves the estimate by 0.13 with an interval reaching to 0.03 (the tests'
    12-day world on its 12-01, whose true gap moved 0.02): worth a look, not proof of a broken champion."""
    surely = min(abs(low), abs(high))
    if surely > limits.prevalence_gap_fail:
        return "fail"
    return "warn" if abs(move) > limits.prevalence_gap_warn else "ok"
