"""Per-policy metrics of a model on a set of rows, its operating points, and per-slice figures.

Per policy: ROC-AUC, PR-AUC, precision and recall at the operating points, calibration error
and the confusion matrix; the same numbers by slice (surface, language, country, account-age
bucket). Operating points are chosen on the validation split, never on the rows they are
judged on.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import polars as pl
from sklearn.metrics import confusion_matrix, precision_recall_curve

from ml.evaluation.results import OperatingPoint, PolicyMetrics, SetMetrics, SliceMetrics
from ml.taxonomy import POLICIES, VIOLATING
from ml.training.calibration import expected_calibration_error
from ml.training.metrics import macro_pr_auc, pr_auc_by_policy, roc_auc_by_policy

AGE_BUCKETS = [(0, 7, "<7d"), (7, 30, "7-30d"), (30, 365, "30-365d"), (365, 1e9, ">1y")]
SLICE_COLUMNS = ("surface", "language", "country", "account_age_bucket")
MIN_SLICE_ROWS = 100
MIN_SLICE_CLASS_ROWS = 10  # a policy needs this many positives and negatives in a slice to be ranked there
TARGET_PRECISION = 0.95  # auto-action: precision on validation at least this
TARGET_RECALL = 0.7  # human review: recall on validation at least this
INTERVAL_ROUNDS = 200  # bootstrap resamples behind a PR-AUC interval (as many as leave-one-source-out's)


def choose_operating_points(
    labels: np.ndarray,
    proba: np.ndarray,
    target_precision: float = TARGET_PRECISION,
    target_recall: float = TARGET_RECALL,
) -> dict[str, OperatingPoint]:
    points = {}
    for k, policy in enumerate(POLICIES):
        if policy == "benign":
            continue
        y = labels == k
        if not y.any():
            points[policy] = OperatingPoint(policy, 1.01, 0.5, math.nan, math.nan, False)
            continue
        prec, rec, thr = precision_recall_curve(y, proba[:, k])
        prec, rec = prec[:-1], rec[:-1]  # align with thresholds
        ok = np.flatnonzero(prec >= target_precision)
        if len(ok):
            i = ok[0]
            auto, auto_p, reachable = float(thr[i]), float(prec[i]), True
        else:
            auto, auto_p, reachable = 1.01, float(prec.max()), False
        r_ok = np.flatnonzero(rec >= target_recall)
        j = r_ok[-1] if len(r_ok) else 0
        points[policy] = OperatingPoint(policy, auto, min(float(thr[j]), auto), auto_p, float(rec[j]), reachable)
    return points


def _at_threshold(y: np.ndarray, p: np.ndarray, threshold: float) -> tuple[float, float]:
    pred = p >= threshold
    tp = float((pred & y).sum())
    precision = tp / pred.sum() if pred.any() else math.nan
    recall = tp / y.sum() if y.any() else math.nan
    return precision, recall


def policy_metrics(labels: np.ndarray, proba: np.ndarray, points: dict[str, OperatingPoint]) -> SetMetrics:
    """Every policy's metrics on these rows; macro means over the violating policies."""
    pr, roc = pr_auc_by_policy(labels, proba), roc_auc_by_policy(labels, proba)
    policies = {}
    for k, policy in enumerate(POLICIES):
        y = labels == k
        at = {}
        if policy in points:
            op = points[policy]
            at["precision_at_auto_action"], at["recall_at_auto_action"] = _at_threshold(
                y, proba[:, k], op.auto_action_threshold
            )
            at["precision_at_review"], at["recall_at_review"] = _at_threshold(y, proba[:, k], op.review_threshold)
        policies[policy] = PolicyMetrics(
            int(y.sum()), pr[policy], roc[policy], expected_calibration_error(y.astype(float), proba[:, k]), **at
        )
    violating_pr = [pr[p] for p in VIOLATING if policies[p].positives]
    return SetMetrics(
        rows=int(len(labels)),
        macro_pr_auc=float(np.mean(violating_pr)) if violating_pr else math.nan,
        macro_roc_auc=slice_roc_auc(labels, proba, 1),
        policies=policies,
        max_calibration_error=max(policies[p].calibration_error for p in VIOLATING),
        confusion_matrix=tuple(
            tuple(int(v) for v in row)
            for row in confusion_matrix(labels, proba.argmax(axis=1), labels=list(range(len(POLICIES))))
        ),
    )


def with_pr_auc_intervals(metrics: SetMetrics, labels: np.ndarray, proba: np.ndarray, seed: int = 0) -> SetMetrics:
    """`metrics` with a 95% bootstrap interval on each violating policy's PR-AUC (the rows resampled with
    replacement, INTERVAL_ROUNDS times): what a model card quotes beside the figure, since a few hundred
    texts leave a PR-AUC uncertain by several points. A policy absent from the rows keeps NaN."""
    rng = np.random.default_rng(seed)
    # A resample is a count per row; drawn once and shared by the policies, so they see the same resamples.
    weights = (
        np.stack(
            [
                np.bincount(rng.integers(0, len(labels), len(labels)), minlength=len(labels))
                for _ in range(INTERVAL_ROUNDS)
            ]
        )
        if len(labels)
        else np.zeros((0, 0))
    )
    policies = dict(metrics.policies)
    for policy in VIOLATING:
        k = POLICIES.index(policy)
        if policy not in policies or not policies[policy].positives or policies[policy].positives == len(labels):
            continue
        values = _weighted_average_precision(labels == k, proba[:, k], weights)
        values = values[np.isfinite(values)]
        if len(values) >= INTERVAL_ROUNDS // 2:
            low, high = np.percentile(values, [2.5, 97.5])
            policies[policy] = replace(policies[policy], pr_auc_ci_low=float(low), pr_auc_ci_high=float(high))
    return replace(metrics, policies=policies)


def _weighted_average_precision(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Average precision (scikit-learn's definition: precision at each distinct threshold, weighted by the
    recall it adds) of `score` for `y`, once per row of `weights` (a count per row: one bootstrap resample).
    The rows are sorted once for every resample, which is what makes 200 resamples take milliseconds."""
    order = np.argsort(-score, kind="mergesort")
    y, score, weights = y[order], score[order], weights[:, order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # one point per distinct threshold
    tp = np.cumsum(weights * y, axis=1)[:, last_of_tie]
    seen = np.cumsum(weights, axis=1)[:, last_of_tie]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(seen > 0, tp / np.maximum(seen, 1), 1.0)
        recall = tp / tp[:, -1:]
    gained = np.diff(np.concatenate([np.zeros((len(weights), 1)), recall], axis=1), axis=1)
    return np.sum(gained * precision, axis=1)  # NaN for a resample without a positive


def with_slices(frame: pl.DataFrame) -> pl.DataFrame:
    age = pl.col("account_age_days")
    bucket = pl.when(age.is_null()).then(pl.lit("unknown"))
    for lo, hi, name in AGE_BUCKETS:
        bucket = bucket.when((age >= lo) & (age < hi)).then(pl.lit(name))
    return frame.with_columns(bucket.otherwise(pl.lit("unknown")).alias("account_age_bucket"))


def slice_roc_auc(labels: np.ndarray, proba: np.ndarray, min_class_rows: int = MIN_SLICE_CLASS_ROWS) -> float:
    """Mean ROC-AUC over violating policies with enough positives and negatives in the rows.

    ROC-AUC, unlike PR-AUC, does not move with a slice's base rate, so slices that simply
    contain less of a policy (few scams among posts) are compared fairly.
    """
    roc = roc_auc_by_policy(labels, proba)
    scores = [
        roc[p]
        for p in VIOLATING
        if (labels == POLICIES.index(p)).sum() >= min_class_rows
        and (labels != POLICIES.index(p)).sum() >= min_class_rows
    ]
    return float(np.mean(scores)) if scores else math.nan


def slice_metrics(
    frame: pl.DataFrame, labels: np.ndarray, proba: np.ndarray, classifier_proba: np.ndarray
) -> dict[str, dict[str, SliceMetrics]]:
    """Rows, macro PR-AUC and macro ROC-AUC of each slice value with enough rows, beside the content
    classifier alone's macro ROC-AUC on the same rows."""
    out: dict[str, dict[str, SliceMetrics]] = {}
    for col in SLICE_COLUMNS:
        if col not in frame.columns:
            continue
        values = frame[col].fill_null("unknown").cast(pl.String).to_numpy()
        out[col] = {}
        for v in np.unique(values):
            m = values == v
            if m.sum() < MIN_SLICE_ROWS:
                continue
            out[col][str(v)] = SliceMetrics(
                int(m.sum()),
                macro_pr_auc(pr_auc_by_policy(labels[m], proba[m])),
                slice_roc_auc(labels[m], proba[m]),
                slice_roc_auc(labels[m], classifier_proba[m]),
            )
    return out
