"""PR curves and reliability diagrams as PNG files, shown in the evaluation materializations."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.calibration import calibration_curve  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402

from ml.taxonomy import POLICIES, VIOLATING  # noqa: E402


def _saved(fig, path: Path) -> Path:
    """Lay `fig` out, write it to `path` as a PNG and free it."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def pr_curves(
    labels: np.ndarray,
    proba: np.ndarray,
    path: Path,
    title: str,
    reference: np.ndarray | None = None,
    reference_name: str = "champion",
) -> Path:
    fig, axes = plt.subplots(1, len(VIOLATING), figsize=(4 * len(VIOLATING), 3.6), sharey=True)
    for ax, policy in zip(axes, VIOLATING):
        k = POLICIES.index(policy)
        y = labels == k
        if y.any():
            p, r, _ = precision_recall_curve(y, proba[:, k])
            ax.plot(r, p, label="candidate")
            if reference is not None:
                p2, r2, _ = precision_recall_curve(y, reference[:, k])
                ax.plot(r2, p2, label=reference_name, linestyle="--")
        ax.set_title(policy)
        ax.set_xlabel("recall")
        ax.set_ylim(0, 1.02)
    axes[0].set_ylabel("precision")
    axes[0].legend(loc="lower left")
    fig.suptitle(title)
    return _saved(fig, path)


def calibration_plot(labels: np.ndarray, proba: np.ndarray, path: Path, title: str, bins: int = 10) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for policy in VIOLATING:
        k = POLICIES.index(policy)
        y = labels == k
        if not y.any() or y.all():
            continue
        observed, predicted = calibration_curve(y, proba[:, k], n_bins=bins, strategy="uniform")
        ax.plot(predicted, observed, marker="o", label=policy)
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.legend()
    ax.set_title(title)
    return _saved(fig, path)


def radius_plot(table, radius: int, path: Path, title: str) -> Path:
    """PDQ recall of each evasion and the benign false-match rate against the match radius, with the
    radius in use marked. `table` is `ml.matching.threshold.RadiusEvaluation.table`."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    radii = table["radius"].to_numpy()
    for column in [c for c in table.columns if c.startswith("recall_") and c != "recall_min"]:
        ax.plot(radii, table[column].to_numpy(), label=column.removeprefix("recall_"), linewidth=1)
    ax.plot(radii, table["false_match_rate"].to_numpy(), label="benign false matches", color="black", linestyle="--")
    ax.axvline(radius, color="grey", linestyle=":")
    ax.set_xlabel("PDQ Hamming radius (bits of 256)")
    ax.set_ylabel("share")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7, ncol=2, loc="center right")
    ax.set_title(title)
    return _saved(fig, path)
