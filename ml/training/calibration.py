"""Temperature scaling: one scalar fitted on validation logits makes softmax probabilities honest."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising validation negative log-likelihood, in [0.05, 20]."""

    def nll(t: float) -> float:
        p = softmax(logits, t)[np.arange(len(labels)), labels]
        return float(-np.log(np.clip(p, 1e-12, None)).mean())

    return float(minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded").x)


def expected_calibration_error(y_true: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """ECE of binary probabilities `p` for outcomes `y_true`."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            ece += m.mean() * abs(p[m].mean() - y_true[m].mean())
    return float(ece)


@dataclass(frozen=True)
class PolicyCalibration:
    """Platt scaling per policy (a + b * logit p), then renormalised so rows sum to one."""

    slopes: tuple[float, ...]
    intercepts: tuple[float, ...]

    def apply(self, proba: np.ndarray) -> np.ndarray:
        z = _logit(proba) * np.asarray(self.slopes) + np.asarray(self.intercepts)
        p = 1.0 / (1.0 + np.exp(-z))
        return p / p.sum(axis=1, keepdims=True)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def fit_policy_calibration(proba: np.ndarray, labels: np.ndarray) -> PolicyCalibration:
    """One 1-D logistic regression per policy on the validation split's log-odds."""
    from sklearn.linear_model import LogisticRegression

    slopes, intercepts = [], []
    for k in range(proba.shape[1]):
        y = labels == k
        if y.all() or not y.any():
            slopes.append(1.0)
            intercepts.append(0.0)
            continue
        lr = LogisticRegression(C=1e4).fit(_logit(proba[:, k : k + 1]), y)
        slopes.append(float(lr.coef_[0, 0]))
        intercepts.append(float(lr.intercept_[0]))
    return PolicyCalibration(tuple(slopes), tuple(intercepts))
