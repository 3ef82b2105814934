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

from dataclasses import dataclass
from typing import Callable

import numpy as np
import polars as pl
import scipy.sparse as sp

from ml.taxonomy import CONFLICT_PRECEDENCE, POLICIES, VIOLATING
from ml.training.dataset import label_array
from ml.training.metrics import pr_auc_by_policy, roc_auc_by_policy
from ml.training.text_classifier import ngram_counts

MIN_POSITIVES = 5  # a policy with fewer positives in a held-out set is not scored there
BOOTSTRAP_ROUNDS = 200

# fit(counts, labels, confidence) -> a model with .proba(counts)
Recipe = Callable[[sp.csr_matrix, np.ndarray, np.ndarray], object]


def present_policy_metrics(labels: np.ndarray, proba: np.ndarray, learnable: set[str] | None = None) -> dict:
    """PR-AUC and ROC-AUC of each violating policy with enough positives (and, when `learnable` is
    given, that the training rows label at all); macro means over them."""
    pr, roc = pr_auc_by_policy(labels, proba), roc_auc_by_policy(labels, proba)
    policies = {p: {"positives": int((labels == POLICIES.index(p)).sum()), "pr_auc": pr[p], "roc_auc": roc[p]}
                for p in VIOLATING if MIN_POSITIVES <= (labels == POLICIES.index(p)).sum() < len(labels)
                and (learnable is None or p in learnable)}
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


def macro_delta_interval(labels: np.ndarray, ours: np.ndarray, theirs: np.ndarray, learnable: set[str],
                         seed: int = 0) -> tuple[float, float]:
    """95% paired-bootstrap interval of (ours - theirs) macro PR-AUC over the policies scored."""
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(BOOTSTRAP_ROUNDS):
        idx = rng.integers(0, len(labels), len(labels))
        a = present_policy_metrics(labels[idx], ours[idx], learnable)["macro_pr_auc"]
        b = present_policy_metrics(labels[idx], theirs[idx], learnable)["macro_pr_auc"]
        if a == a and b == b:
            deltas.append(a - b)
    if not deltas:
        return float("nan"), float("nan")
    return float(np.percentile(deltas, 2.5)), float(np.percentile(deltas, 97.5))


@dataclass(frozen=True)
class SourceRecipe:
    """How a recipe trains when nothing is held out: its rows (label-issue rule applied) and fit."""

    rows: pl.DataFrame
    fit: Recipe
    weighted: bool


def leave_one_source_out(candidate: SourceRecipe, baseline: SourceRecipe, training_set: pl.DataFrame
                         ) -> tuple[dict[str, dict], dict[str, dict]]:
    """({source: candidate metrics}, {source: baseline metrics}) for every reference source; the
    candidate's entries also carry the paired-bootstrap interval of its macro PR-AUC minus the
    baseline's on the same records (`delta`, `delta_ci_low`, `delta_ci_high`)."""
    prepared = []
    for recipe in (candidate, baseline):
        rows = recipe.rows
        conf = rows["confidence"].to_numpy() if recipe.weighted else np.ones(rows.height)
        prepared.append((recipe, ngram_counts(rows["text"].to_list()), label_array(rows), conf, rows["text_hash"]))
    ours: dict[str, dict] = {}
    theirs: dict[str, dict] = {}
    for source in reference_sources(training_set):
        held = source_records(training_set, source)
        held_counts, held_y = ngram_counts(held["text"].to_list()), label_array(held)
        proba = []
        for recipe, counts, y, conf, hashes in prepared:
            keep = ~hashes.is_in(held["text_hash"].implode()).to_numpy()
            proba.append((recipe.fit(counts[keep], y[keep], conf[keep]).proba(held_counts), int(keep.sum())))
        # A policy the remaining sources never label cannot be learned by any recipe (every scam label
        # in the corpora comes from the smishing set): it is reported as unlearnable, not scored.
        keep = ~prepared[0][4].is_in(held["text_hash"].implode()).to_numpy()
        counts_left = np.bincount(prepared[0][2][keep], minlength=len(POLICIES))
        learnable = {p for p in VIOLATING if counts_left[POLICIES.index(p)] >= MIN_POSITIVES}
        unlearnable = sorted(p for p in VIOLATING if p not in learnable and (held_y == POLICIES.index(p)).sum())
        (p_ours, n_ours), (p_theirs, n_theirs) = proba
        ours[source] = {**present_policy_metrics(held_y, p_ours, learnable), "rows_trained": n_ours,
                        "unlearnable_policies": unlearnable}
        theirs[source] = {**present_policy_metrics(held_y, p_theirs, learnable), "rows_trained": n_theirs,
                          "unlearnable_policies": unlearnable}
        low, high = macro_delta_interval(held_y, p_ours, p_theirs, learnable)
        ours[source].update(delta=ours[source]["macro_pr_auc"] - theirs[source]["macro_pr_auc"],
                            delta_ci_low=low, delta_ci_high=high)
    return ours, theirs
