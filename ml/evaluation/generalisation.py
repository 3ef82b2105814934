"""How a text classifier does on text and sources it never trained on.

- Text-only held-out: the distinct texts of the test split (every source), scored with no context.
- Leave-one-source-out: for each reference source (each corpus, each YouTube video), a model of
  the same recipe is trained without that source, with every copy of its texts removed from
  training whatever source carried them (the smishing set repeats most of the SMS spam set), and
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
from sklearn.metrics import average_precision_score

from ml.evaluation.results import HeldOutSource, PolicyMetrics, SetMetrics
from ml.taxonomy import CONFLICT_PRECEDENCE, POLICIES, VIOLATING
from ml.training.content import ClassifierRecipe, FitPlan, combine, held_out_probas
from ml.training.dataset import label_array
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


def _macro_pr_auc(labels: np.ndarray, proba: np.ndarray, learnable: set[str]) -> float:
    """present_policy_metrics(...).macro_pr_auc without the ROC-AUCs and the benign column: the
    bootstrap computes it a few thousand times."""
    scored = [POLICIES.index(p) for p in scored_policies(labels, learnable)]
    if not scored:
        return math.nan
    return float(np.mean([average_precision_score(labels == k, proba[:, k]) for k in scored]))


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
    labels: np.ndarray, ours: np.ndarray, theirs: np.ndarray, learnable: set[str], seed: int = 0
) -> tuple[float, float]:
    """95% paired-bootstrap interval of (ours - theirs) macro PR-AUC over the policies scored."""
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(BOOTSTRAP_ROUNDS):
        idx = rng.integers(0, len(labels), len(labels))
        a = _macro_pr_auc(labels[idx], ours[idx], learnable)
        b = _macro_pr_auc(labels[idx], theirs[idx], learnable)
        if math.isfinite(a) and math.isfinite(b):
            deltas.append(a - b)
    if not deltas:
        return math.nan, math.nan
    return float(np.percentile(deltas, 2.5)), float(np.percentile(deltas, 97.5))


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
        remaining = training_set.filter(~pl.col("text_hash").is_in(held["text_hash"].implode()))
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
