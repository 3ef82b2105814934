"""How a text model does on text and sources it never trained on.

- Text-only held-out: the distinct texts of the test split (every source), scored with no context.
- Leave-one-source-out: for each reference source (each corpus, each YouTube video), a model of
  the same recipe is trained without that source, with every copy of its texts removed from
  training whatever source carried them (the smishing set repeats most of the SMS spam set), and
  scored on all of that source's records with the source's own labels. It is the honest stand-in
  for "a platform the model has never seen".
Both report per-policy PR-AUC and ROC-AUC for the policies a set actually contains.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import polars as pl
import scipy.sparse as sp

from ml.taxonomy import CONFLICT_PRECEDENCE, POLICIES, VIOLATING
from ml.training.dataset import label_array
from ml.training.metrics import pr_auc_by_policy, roc_auc_by_policy
from ml.training.text_classifier import ngram_counts

MIN_POSITIVES = 5  # a policy with fewer positives in a held-out set is not scored there

# fit(counts, labels, confidence) -> a model with .proba(counts)
Recipe = Callable[[sp.csr_matrix, np.ndarray, np.ndarray], object]


def present_policy_metrics(labels: np.ndarray, proba: np.ndarray) -> dict:
    """PR-AUC and ROC-AUC of each violating policy with enough positives; macro means over them."""
    pr, roc = pr_auc_by_policy(labels, proba), roc_auc_by_policy(labels, proba)
    policies = {p: {"positives": int((labels == POLICIES.index(p)).sum()), "pr_auc": pr[p], "roc_auc": roc[p]}
                for p in VIOLATING if MIN_POSITIVES <= (labels == POLICIES.index(p)).sum() < len(labels)}
    return {"rows": int(len(labels)), "policies": policies,
            "macro_pr_auc": float(np.mean([m["pr_auc"] for m in policies.values()])) if policies else float("nan"),
            "macro_roc_auc": float(np.mean([m["roc_auc"] for m in policies.values()])) if policies else float("nan")}


def source_records(training_set: pl.DataFrame, source: str) -> pl.DataFrame:
    """One row per distinct text of a reference source, with that source's own label for it."""
    rank = pl.col("label").replace_strict(CONFLICT_PRECEDENCE, return_dtype=pl.Int8)
    return (training_set.filter((pl.col("label_source") == "reference") & (pl.col("source") == source))
            .with_columns(_rank=rank).sort("_rank", "label_id", descending=[True, False])
            .unique("text_hash", keep="first", maintain_order=True).drop("_rank").sort("label_id"))


def reference_sources(training_set: pl.DataFrame) -> list[str]:
    return sorted(training_set.filter(pl.col("label_source") == "reference")["source"].unique().to_list())


def leave_one_source_out(train_rows: pl.DataFrame, training_set: pl.DataFrame, recipes: dict[str, Recipe],
                         weighted: dict[str, bool]) -> dict[str, dict[str, dict]]:
    """{recipe name: {source: metrics}} for every reference source; `train_rows` is what the recipe
    trains on when nothing is held out (its label-issue rule already applied)."""
    counts = ngram_counts(train_rows["text"].to_list())
    y, conf = label_array(train_rows), train_rows["confidence"].to_numpy()
    hashes = train_rows["text_hash"]
    out: dict[str, dict[str, dict]] = {name: {} for name in recipes}
    for source in reference_sources(training_set):
        held = source_records(training_set, source)
        keep = ~hashes.is_in(held["text_hash"].implode()).to_numpy()
        held_counts, held_y = ngram_counts(held["text"].to_list()), label_array(held)
        for name, fit in recipes.items():
            model = fit(counts[keep], y[keep], conf[keep] if weighted[name] else np.ones(int(keep.sum())))
            metrics = present_policy_metrics(held_y, model.proba(held_counts))
            out[name][source] = {**metrics, "rows_trained": int(keep.sum())}
    return out
