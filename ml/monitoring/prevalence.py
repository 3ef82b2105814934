"""Prevalence of one day: the mean calibrated score and the share over the review threshold, per policy,
against the QA estimate (audits are a uniform random sample, so their share is unbiased)."""

from __future__ import annotations

from datetime import date

import polars as pl

from ml.monitoring.measures import metric_rows, nan_none, wilson
from ml.monitoring.reference import Reference
from ml.monitoring.thresholds import MonitoringThresholds, level
from ml.taxonomy import VIOLATING


def prevalence(
    reference: Reference, day: date, scores: pl.DataFrame, qa_labels: pl.DataFrame, limits: MonitoringThresholds
) -> pl.DataFrame:
    """Predicted prevalence per policy (mean calibrated score; share over the review threshold) against the
    QA estimate of the same day's content. `qa_labels`: content_id and gold label of QA-audited content.

    The gap row holds predicted minus QA prevalence, `expected` the champion's gap on its training window;
    it is judged on how far it moved from that, and only when the offset-corrected prediction lies outside
    the QA estimate's 95% interval (a day's audit sample is small)."""
    audited = scores.select("content_id").join(qa_labels.select("content_id", "label"), on="content_id")
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
        elif low <= predicted - offset <= high:  # inside the QA interval: the move may be sampling noise
            status = "ok"
        else:
            status = level(abs(predicted - qa - offset), limits.prevalence_gap_warn, limits.prevalence_gap_fail)
        rows.append(
            {
                "metric": "prevalence_gap",
                "subject": policy,
                "value": None if predicted is None or qa is None else predicted - qa,
                "expected": offset,
                "ci_low": None if predicted is None or n == 0 else predicted - high,
                "ci_high": None if predicted is None or n == 0 else predicted - low,
                "n": n,
                "status": status,
            }
        )
    return metric_rows(day, reference.champion, rows)
