"""How a text classifier does on text and sources it never trained on.

- Text-only held-out: the distinct texts of the test split (every source), scored with no context.
- Leave-one-source-out: for each reference source (each corpus, each YouTube video), a model of
  the same recipe is trained without that source, with every copy and near-duplicate of its texts
  (their `text_family`, ml/training/dataset.py) removed from training whatever source carried them
  (the smishing set repeats most of the SMS spam set, and rewords some of it), and
  scored on all of that source's records with the source's own labels. It is the honest stand-in
  for "a platform the model has never seen".
Both report per-policy PR-AUC and ROC-AUC for the policies a set actually contains. A policy that
no remaining reference source labels cannot be learned without the held-out one (every hate-speech
label comes from Davidson, every scam label from the smishing set), so it is reported as
unlearnable there, not scored.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from ml.evaluation.results import HeldOutSource, PolicyMetrics, SetMetrics
from ml.taxonomy import CONFLICT_PRECEDENCE, POLICIES, VIOLATING
from ml.training.content import ClassifierRecipe, FitPlan, combine, held_out_probas
from ml.training.dataset import label_array, without_families
from ml.training.metrics import pr_auc_by_policy, roc_auc_by_policy
from ml.training.text_classifier import TextFeatureCache

MIN_POSITIVES = 5  # a policy with fewer positives in a held-out set (or its training rows) is not scored there
BOOTSTRAP_ROUNDS = 200


def scored_policies(labels: np.ndarray, learnable: set[str] | None = None) -> list[str]:
    """The violating policies a set is scored on: enough positives (and negatives), and, when
    `learnable` is given, labelled at all by the training rows."""
    return [
        p
        for p in VIOLATING
        if MIN_POSITIVES <= (labels == POLICIES.index(p)).sum() < len(labels) and (learnable is None or p in learnable)
    ]


def present_policy_metrics(labels: np.ndarray, proba: np.ndarray, learnable: set[str] | None = None) -> SetMetrics:
    """PR-AUC and ROC-AUC of each scored policy (`scored_policies`); macro means over them."""
    pr, roc = pr_auc_by_policy(labels, proba), roc_auc_by_policy(labels, proba)
    policies = {
        p: PolicyMetrics(int((labels == POLICIES.index(p)).sum()), pr[p], roc[p])
        for p in scored_policies(labels, learnable)
    }
    return SetMetrics(
        rows=int(len(labels)),
        policies=policies,
        macro_pr_auc=float(np.mean([m.pr_auc for m in policies.values()])) if policies else math.nan,
        macro_roc_auc=float(np.mean([m.roc_auc for m in policies.values()])) if policies else math.nan,
    )


def bootstrap_macro_pr_auc(
    labels: np.ndarray, proba: np.ndarray, learnable: set[str], counts: np.ndarray
) -> np.ndarray:
    """Macro PR-AUC (`present_policy_metrics(...).macro_pr_auc`) of each bootstrap resample, all at once.

    `counts` [rounds, rows] says how often each row was drawn. A resample's average precision is the
    weighted average precision of the original rows with those counts as weights (a row drawn twice is a
    weight of two, one never drawn a weight of zero), so each policy's rows are sorted once and every
    resample is a cumulative sum over that order: the same numbers as scikit-learn's
    `average_precision_score` on the resampled rows (tests/test_fitting.py compares them), at a
    hundredth of the cost of calling it for every resample. NaN for a resample with no policy scored.
    """
    rounds, n = counts.shape
    per_policy = []
    for p in VIOLATING:
        if learnable is not None and p not in learnable:
            continue
        k = POLICIES.index(p)
        positive = labels == k
        drawn_positives = counts @ positive
        scored = (drawn_positives >= MIN_POSITIVES) & (drawn_positives < n)
        if not scored.any():
            continue
        order = np.argsort(-proba[:, k], kind="stable")
        score = proba[order, k]
        # The last row of each run of tied scores: scikit-learn's thresholds (ties enter together).
        ends = np.r_[np.flatnonzero(np.diff(score)), n - 1]
        weights = counts[:, order].astype(np.float64)
        tp = np.cumsum(weights * positive[order], axis=1)[:, ends]
        seen = np.cumsum(weights, axis=1)[:, ends]
        precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
        gained = np.diff(tp, axis=1, prepend=0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            ap = (gained * precision).sum(axis=1) / tp[:, -1]
        per_policy.append(np.where(scored, ap, np.nan))
    if not per_policy:
        return np.full(rounds, math.nan)
    stacked = np.stack(per_policy)
    scored_count = (~np.isnan(stacked)).sum(axis=0)
    total = np.nan_to_num(stacked).sum(axis=0)
    return np.divide(total, scored_count, out=np.full(rounds, math.nan), where=scored_count > 0)


def source_records(training_set: pl.DataFrame, source: str) -> pl.DataFrame:
    """One row per distinct text of a reference source, with that source's own label for it."""
    rank = pl.col("label").replace_strict(CONFLICT_PRECEDENCE, return_dtype=pl.Int8)
    return (
        training_set.filter((pl.col("label_source") == "reference") & (pl.col("source") == source))
        .with_columns(_rank=rank)
        .sort("_rank", "label_id", descending=[True, False])
        .unique("text_hash", keep="first", maintain_order=True)
        .drop("_rank")
        .sort("label_id")
    )


def reference_sources(training_set: pl.DataFrame) -> list[str]:
    return sorted(training_set.filter(pl.col("label_source") == "reference")["source"].unique().to_list())


def learnable_policies(remaining: pl.DataFrame) -> set[str]:
    """Violating policies the remaining reference records of the train split label at least MIN_POSITIVES
    times. Platform labels do not count: a handful of moderator mistakes is not a policy one can learn."""
    ref = remaining.filter((pl.col("split") == "train") & (pl.col("label_source") == "reference"))
    counts = dict(ref.group_by("label").len().iter_rows())
    return {p for p in VIOLATING if counts.get(p, 0) >= MIN_POSITIVES}


def macro_delta_interval(
    labels: np.ndarray,
    ours: np.ndarray,
    theirs: np.ndarray,
    learnable: set[str] | None,
    seed: int = 0,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Paired-bootstrap interval (95% unless `confidence` says otherwise) of (ours - theirs) macro PR-AUC over
    the policies scored: both read the same `BOOTSTRAP_ROUNDS` resamples of the rows."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    counts = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(BOOTSTRAP_ROUNDS)])
    deltas = bootstrap_macro_pr_auc(labels, ours, learnable, counts) - bootstrap_macro_pr_auc(
        labels, theirs, learnable, counts
    )
    deltas = deltas[np.isfinite(deltas)]
    if not len(deltas):
        return math.nan, math.nan
    tail = 50 * (1 - confidence)
    return float(np.percentile(deltas, tail)), float(np.percentile(deltas, 100 - tail))


def leave_one_source_out(
    candidate: ClassifierRecipe,
    baseline: ClassifierRecipe,
    training_set: pl.DataFrame,
    issues: pl.DataFrame | None,
    plan: FitPlan | None = None,
) -> tuple[HeldOutSource, ...]:
    """Both recipes retrained without each reference source in turn and scored on its records.

    The members of both recipes are fitted once per source (the baseline's member is one of the
    candidate's), all in one pool, and their held-out probabilities come from the fit cache when
    nothing they depend on changed.
    """
    plan = plan or FitPlan(TextFeatureCache(training_set))
    members = list(baseline.members) + list(candidate.members)
    out = []
    for source in reference_sources(training_set):
        held = source_records(training_set, source)
        remaining = without_families(training_set, held)
        y = label_array(held)
        probas = held_out_probas(
            members, remaining, issues if candidate.uses_label_issues else None, plan, f"without {source}", held
        )
        p_theirs = combine([probas[m] for m in baseline.members], baseline.votes())
        p_ours = combine([probas[m] for m in candidate.members], candidate.votes())
        learnable = learnable_policies(remaining)
        unlearnable = tuple(sorted(p for p in VIOLATING if p not in learnable and (y == POLICIES.index(p)).any()))
        ours, theirs = present_policy_metrics(y, p_ours, learnable), present_policy_metrics(y, p_theirs, learnable)
        low, high = macro_delta_interval(y, p_ours, p_theirs, learnable)
        out.append(
            HeldOutSource(
                source,
                ours,
                theirs,
                remaining.filter(pl.col("split") == "train").height,
                unlearnable,
                ours.macro_pr_auc - theirs.macro_pr_auc,
                low,
                high,
            )
        )
    return tuple(out)
