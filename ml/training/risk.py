"""Fit the risk model: LightGBM over the content classifier's scores plus platform context.

The risk model sees the classifier's out-of-fold scores (from `label_issues`: each text scored by a
model that never saw it) beside behaviour, network and context features of platform content, and
is trained on Ray (ml/training/lightgbm_model.py). At scoring time it answers for rows that carry
platform context and the classifier answers for rows that do not (ml/training/scorer.py).

A risk model must earn its place (the pair gate `beats_classifier_significantly`); when it does not, the
content classifier is deployed alone (ml/training/artifacts.py `classifier_alone`: a pair without a booster).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import polars as pl

from ml.taxonomy import POLICIES
from ml.training import lightgbm_model
from ml.training.artifacts import ModelArtifact, new_version
from ml.training.calibration import fit_temperature, softmax
from ml.training.dataset import label_array, platform_rows
from ml.training.matrix import mask_context, risk_features
from ml.training.metrics import macro_pr_auc, pr_auc_by_policy
from ml.training.scorer import Scorer

PROBA_OOF = tuple(f"oof_p_{p}" for p in POLICIES)
CONTEXT_DROPOUT = 0.1  # share of risk-model training rows whose platform context is hidden


def fit_risk_model(
    training_set: pl.DataFrame,
    issues: pl.DataFrame,
    classifier: ModelArtifact,
    models_dir: Path,
    params: lightgbm_model.LightGBMParams,
) -> ModelArtifact:
    """LightGBM on Ray over the classifier's out-of-fold scores plus context, platform rows only.

    Train rows carry out-of-fold scores (from `label_issues`: each text scored by a model that never
    saw it), so the risk model learns how far to trust the classifier on unseen text; validation and
    test rows carry the classifier's own scores, as at serving time.
    """
    platform = platform_rows(training_set)
    train = mask_context(platform.filter(pl.col("split") == "train"), CONTEXT_DROPOUT, params.seed)
    val = platform.filter(pl.col("split") == "validation")
    if train.height == 0 or val.height == 0:
        raise ValueError(
            "the training set has no platform rows to train or validate the risk model on: simulate more days"
        )
    oof = train.select("label_id").join(issues.select("label_id", *PROBA_OOF), on="label_id", how="left")
    if oof[PROBA_OOF[0]].null_count():
        raise ValueError(
            "label_issues has no out-of-fold scores for some risk-model training rows: "
            "rebuild label_issues from this training set"
        )
    text_scorer = Scorer(classifier)
    X = risk_features(train, oof.select(PROBA_OOF).to_numpy())
    X_val = risk_features(val, text_scorer.predict_proba(val.select("text")))
    y, y_val = label_array(train), label_array(val)
    booster, info = lightgbm_model.train_ray(X, y, X_val, y_val, params)
    val_logits = booster.predict(X_val, raw_score=True)
    temperature = fit_temperature(val_logits, y_val)
    val_pr = pr_auc_by_policy(y_val, softmax(val_logits, temperature))
    metrics = {
        "validation_pr_auc": val_pr,
        "validation_macro_pr_auc": macro_pr_auc(val_pr),
        "rounds": int(booster.num_trees() // len(POLICIES)),
        "rows_train": train.height,
        "rows_validation": val.height,
        "train_seconds": float(info["train_seconds"]),
        "wall_seconds": float(info["wall_seconds"]),
        "workers": int(info["workers"]),
        "threads_per_worker": int(info["threads_per_worker"]),
    }
    version = new_version("risk_model")
    out = models_dir / version
    out.mkdir(parents=True)
    booster.save_model(str(out / "model.txt"))
    params_out = {
        "model": asdict(params),
        "content_classifier": classifier.version,
        "content_classifier_dataset_version": classifier.dataset_version,
    }
    return ModelArtifact(
        "risk_model", version, str(out), classifier.dataset_version, params_out, metrics, temperature
    ).write_manifest()
