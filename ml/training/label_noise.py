"""Likely label errors, found by confident learning (cleanlab) on out-of-fold probabilities.

A label is suspect when a model that never saw its text is confident it belongs elsewhere,
beyond what the per-class noise rates estimated from the whole set explain (Northcutt et al.,
"Confident Learning", JAIR 2021). Suspect platform labels count less in the classifiers' training
(ml/training/labels.py says why not zero) and are published to QA through `mart_label_issues`;
nothing here knows the true labels.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from ml.taxonomy import POLICIES
from ml.training.content import ClassifierRecipe, FitPlan, out_of_fold_proba
from ml.training.dataset import label_array


def label_issues(label_ids: pl.Series, labels: np.ndarray, oof_proba: np.ndarray) -> pl.DataFrame:
    """One row per labelled row: whether its label is a likely error, the suggested label and scores."""
    issue = find_label_issues(labels, oof_proba, filter_by="prune_by_noise_rate", n_jobs=1)
    quality = get_label_quality_scores(labels, oof_proba, method="self_confidence")
    suggested = oof_proba.argmax(axis=1)
    return pl.DataFrame(
        {
            "label_id": label_ids,
            "given_label": np.array(POLICIES)[labels],
            "suggested_label": np.array(POLICIES)[suggested],
            "suggested_probability": oof_proba[np.arange(len(labels)), suggested],
            "label_quality": quality,
            "is_label_issue": issue,
            **{f"oof_p_{p}": oof_proba[:, k] for k, p in enumerate(POLICIES)},
        }
    )


def training_label_issues(
    training_set: pl.DataFrame, recipe: ClassifierRecipe, plan: FitPlan | None = None
) -> pl.DataFrame:
    """`label_issues` of every train-split label row, from out-of-fold probabilities of `recipe`
    with every label counted."""
    rows, oof = out_of_fold_proba(training_set, recipe.ignoring_label_issues(), plan)
    return label_issues(rows["label_id"], label_array(rows), oof)
