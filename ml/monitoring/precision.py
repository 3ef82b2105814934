"""Live precision of one day: of the content the enforcement policy removed on its own, the share that
what happened later (moderator decisions, appeal outcomes, QA audits, resolved in `training_labels`)
says did violate a policy, against the precision the champion's operating points promised."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

from ml.monitoring.measures import metric_rows, nan_none, wilson
from ml.monitoring.reference import Reference
from ml.monitoring.thresholds import MonitoringThresholds, level
from ml.taxonomy import VIOLATING

AUTO_ACTION = "remove"  # the enforcement policy's action taken without a person (ml/enforcement_policy.yaml)
FLAGGED = ("remove", "review")


def top_policy(scores: pl.DataFrame) -> pl.Expr:
    """The violating policy with the highest score (ties go to the first in VIOLATING)."""
    columns = [f"p_{p}" for p in VIOLATING]
    best = pl.max_horizontal(*columns)
    expr = pl.lit(VIOLATING[-1])
    for p in reversed(VIOLATING[:-1]):
        expr = pl.when(pl.col(f"p_{p}") == best).then(pl.lit(p)).otherwise(expr)
    return expr


def live_precision(
    reference: Reference, day: date, scores: pl.DataFrame, labels: pl.DataFrame, limits: MonitoringThresholds
) -> pl.DataFrame:
    """Precision of the day's auto-actions by what happened to them later, and QA recall.

    `scores`: the day's content_scores rows; `labels`: training_labels rows of platform content
    (content_id, label, label_source). An auto-action is right when the resolved label is a violating
    policy (any: the removal was justified), and right for its policy when the label is the policy it
    scored highest. The promise is the mean validation precision of the auto-actioned items' policies.
    """
    auto = scores.filter(pl.col("action") == AUTO_ACTION).with_columns(top_policy=top_policy(scores))
    judged = auto.join(labels.select("content_id", "label", "label_source"), on="content_id", how="inner")
    right = judged.filter(pl.col("label") != "benign")
    promised = [reference.promised_precision.get(p) for p in judged["top_policy"].to_list()]
    promised = [p for p in promised if p is not None]
    expected = float(np.mean(promised)) if promised else None
    n, k = judged.height, right.height
    low, high = wilson(k, n)
    value = k / n if n else None
    if n < limits.min_labelled or expected is None:
        status = "insufficient"
    elif high >= expected:  # the promise lies inside the interval: no evidence of a drop
        status = "ok"
    else:
        status = level(expected - value, limits.precision_drop_warn, limits.precision_drop_fail)
    rows = [
        {
            "metric": "live_precision",
            "subject": "all",
            "value": value,
            "expected": expected,
            "ci_low": nan_none(low),
            "ci_high": nan_none(high),
            "n": n,
            "status": status,
        },
        {"metric": "auto_actions", "subject": "all", "value": float(auto.height), "n": auto.height},
        {
            "metric": "auto_actions_labelled_share",
            "subject": "all",
            "value": n / auto.height if auto.height else None,
            "n": auto.height,
        },
    ]
    qa_judged = judged.filter(pl.col("label_source") == "qa_audit")
    if qa_judged.height:
        lo, hi = wilson(int((qa_judged["label"] != "benign").sum()), qa_judged.height)
        rows.append(
            {
                "metric": "live_precision_qa",
                "subject": "all",
                "value": float((qa_judged["label"] != "benign").mean()),
                "expected": expected,
                "ci_low": lo,
                "ci_high": hi,
                "n": qa_judged.height,
            }
        )
    for policy in VIOLATING:
        mine = judged.filter(pl.col("top_policy") == policy)
        if mine.height:
            hits = int((mine["label"] == policy).sum())
            lo, hi = wilson(hits, mine.height)
            rows.append(
                {
                    "metric": "live_precision",
                    "subject": policy,
                    "value": hits / mine.height,
                    "expected": reference.promised_precision.get(policy),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": mine.height,
                }
            )
    audited = scores.join(
        labels.filter(pl.col("label_source") == "qa_audit").select("content_id", "label"), on="content_id", how="inner"
    )
    for policy in VIOLATING:
        positives = audited.filter(pl.col("label") == policy)
        if positives.height:
            hits = int(positives["action"].is_in(FLAGGED).sum())
            lo, hi = wilson(hits, positives.height)
            rows.append(
                {
                    "metric": "qa_recall",
                    "subject": policy,
                    "value": hits / positives.height,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": positives.height,
                }
            )
    return metric_rows(day, reference.champion, rows)
