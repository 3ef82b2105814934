"""Ranking metrics per policy, the numbers every model report shares."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from ml.taxonomy import POLICIES, VIOLATING


def pr_auc_by_policy(labels: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Average precision (PR-AUC) of each policy, one-vs-rest; NaN where a policy is absent."""
    out = {}
    for k, policy in enumerate(POLICIES):
        y = labels == k
        out[policy] = float(average_precision_score(y, proba[:, k])) if y.any() else float("nan")
    return out


def roc_auc_by_policy(labels: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    out = {}
    for k, policy in enumerate(POLICIES):
        y = labels == k
        out[policy] = float(roc_auc_score(y, proba[:, k])) if 0 < y.sum() < len(y) else float("nan")
    return out


def macro_pr_auc(by_policy: dict[str, float]) -> float:
    """Mean PR-AUC over the violating policies: what enforcement quality depends on."""
    return float(np.nanmean([by_policy[p] for p in VIOLATING]))
