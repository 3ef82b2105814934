"""When to retrain: new labels since the champion's training set, or drift past the fail threshold, as a
request whose key names the evidence (the same evidence, the same key)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl


def new_labels_since(labels: pl.DataFrame, labels_until: datetime | None) -> dict[str, int]:
    """Platform labels (moderator decisions, appeal outcomes, QA audits) stamped after `labels_until`,
    by label source. `labels`: training_labels rows with label_source and label_at."""
    platform = labels.filter(pl.col("label_source") != "reference")
    if labels_until is not None:
        platform = platform.filter(pl.col("label_at") > labels_until)
    return dict(sorted(platform.group_by("label_source").len().iter_rows()))


@dataclass(frozen=True)
class RetrainRequest:
    """Why the retraining job should run, and a key that names the evidence (the same evidence, the same key)."""

    reason: str  # drift | new_labels
    run_key: str
    tags: dict[str, str]


def retrain_request(
    champion: str,
    dataset_version: str,
    new_labels: dict[str, int],
    min_new_labels: int,
    drifted: dict | None,
    psi_limit: float,
) -> RetrainRequest | None:
    """Retrain on drift past `psi_limit` (the PSI fail threshold) in a day scored by this champion, else on
    `min_new_labels` new labels. One drift request per champion; one label request per champion and
    each further `min_new_labels` labels, so a retraining that keeps the champion is not asked for again
    until there is more evidence."""
    total = sum(new_labels.values())
    common = {
        "trustlake/champion": champion,
        "trustlake/champion_dataset_version": dataset_version,
        "trustlake/new_labels": str(total),
        "trustlake/new_labels_threshold": str(min_new_labels),
    }
    if drifted is not None and drifted["value"] > psi_limit:
        return RetrainRequest(
            "drift",
            f"drift:{champion}",
            {
                **common,
                "trustlake/retrain_reason": "drift",
                "trustlake/drift_psi": f"{drifted['value']:.3f}",
                "trustlake/drift_metric": f"{drifted['metric']}:{drifted['subject']}",
                "trustlake/drift_day": str(drifted["date"]),
                "trustlake/drift_psi_threshold": f"{psi_limit:g}",
            },
        )
    if total >= min_new_labels:
        return RetrainRequest(
            "new_labels",
            f"new_labels:{champion}:{total // min_new_labels}",
            {
                **common,
                "trustlake/retrain_reason": "new_labels",
                **{f"trustlake/new_labels/{source}": str(n) for source, n in new_labels.items()},
            },
        )
    return None
