"""Fit the text-first model pair: the content classifier (text only) and the risk model over it.

The content classifier is trained on every labelled text in the train split (reference sets,
moderator decisions, appeal outcomes, QA gold), weighted by label confidence, with likely label
errors left out, and calibrated per policy on the validation split's distinct texts. The risk
model is LightGBM (Ray Train) over the classifier's out-of-fold scores plus behaviour, network
and context features of platform content; at scoring time it answers for rows that carry
platform context and the classifier answers for rows that do not (ml/training/scorer.py).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import joblib
import numpy as np
import polars as pl

from ml.taxonomy import POLICIES
from ml.training import lightgbm_model
from ml.training.artifacts import ModelArtifact
from ml.training.calibration import fit_policy_calibration, fit_temperature, softmax
from ml.training.dataset import held_out_texts, label_array, platform_rows
from ml.training.matrix import dense_matrix, mask_context
from ml.training.metrics import macro_pr_auc, pr_auc_by_policy
from ml.training.text_classifier import ClassifierParams, LinearTextClassifier, ngram_counts

PROBA_OOF = tuple(f"oof_p_{p}" for p in POLICIES)
CONTEXT_DROPOUT = 0.1  # share of risk-model training rows whose platform context is hidden
BASELINE_PARAMS = ClassifierParams(views=("tfidf",))


def new_version(kind: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{kind}-{stamp}-{secrets.token_hex(2)}"


def classifier_training_rows(training_set: pl.DataFrame, issues: pl.DataFrame | None) -> pl.DataFrame:
    """Train-split rows, less platform labels confident learning flagged (when `issues` is given).

    Only platform labels (moderator decisions, appeals) are dropped: they are the known-noisy ones.
    Flagged reference labels are mostly genuine ambiguity (Davidson's hate versus offensive): dropping
    them cost held-out hate-speech PR-AUC (0.404 -> 0.358 measured), so they stay and go to QA instead.
    """
    train = training_set.filter(pl.col("split") == "train")
    if issues is None:
        return train
    flagged = issues.filter(pl.col("is_label_issue") & pl.col("label_id").str.starts_with("content:"))
    return train.join(flagged.select("label_id"), on="label_id", how="anti")


def fit_linear(rows: pl.DataFrame, params: ClassifierParams, weighted: bool) -> LinearTextClassifier:
    weight = rows["confidence"].to_numpy() if weighted else None
    return LinearTextClassifier(params).fit(ngram_counts(rows["text"].to_list()), label_array(rows), weight)


def _save(kind: str, version: str, out: Path, dataset_version: str, params: dict, metrics: dict,
          temperature: float = 1.0) -> ModelArtifact:
    artifact = ModelArtifact(kind=kind, version=version, path=str(out), dataset_version=dataset_version,
                             params=params, metrics=metrics, temperature=temperature)
    artifact.write_manifest()
    return artifact


def fit_text_classifier(training_set: pl.DataFrame, dataset_version: str, models_dir: Path,
                        issues: pl.DataFrame | None, params: ClassifierParams, kind: str,
                        weighted: bool = True) -> ModelArtifact:
    """Fit, calibrate per policy on validation texts, and save a text-only classifier artifact.

    kind `content_classifier` drops `issues` and weights by confidence; kind `baseline` is the
    plain recipe (ClassifierParams views=("tfidf",), unweighted, every label as given).
    """
    started = time.perf_counter()
    rows = classifier_training_rows(training_set, issues)
    model = fit_linear(rows, params, weighted)
    val = held_out_texts(training_set, "validation")
    raw_val = model.proba(ngram_counts(val["text"].to_list()))
    calibration = fit_policy_calibration(raw_val, label_array(val))
    val_pr = pr_auc_by_policy(label_array(val), calibration.apply(raw_val))
    metrics = {"validation_text_only_pr_auc": val_pr, "validation_text_only_macro_pr_auc": macro_pr_auc(val_pr),
               "rows_train": rows.height, "label_issues_dropped": training_set.filter(pl.col("split") == "train").height
               - rows.height, "train_seconds": time.perf_counter() - started}
    version = new_version(kind)
    out = models_dir / version
    out.mkdir(parents=True)
    joblib.dump({"model": model, "calibration": calibration}, out / "model.joblib")
    return _save(kind, version, out, dataset_version,
                 {"model": asdict(params), "weighted": weighted, "drops_label_issues": issues is not None},
                 metrics)


def risk_features(frame: pl.DataFrame, classifier_proba: np.ndarray) -> np.ndarray:
    """[content classifier probabilities | dense platform context and text signals]."""
    return np.hstack([classifier_proba.astype(np.float32), dense_matrix(frame)])


def fit_risk_model(training_set: pl.DataFrame, issues: pl.DataFrame, classifier: ModelArtifact,
                   models_dir: Path, ray_storage: Path, params: lightgbm_model.LightGBMParams) -> ModelArtifact:
    """LightGBM on Ray over the classifier's out-of-fold scores plus context, platform rows only.

    Train rows carry out-of-fold scores (from `label_issues`: each text scored by a model that never
    saw it), so the risk model learns how far to trust the classifier on unseen text; validation and
    test rows carry the classifier's own scores, as at serving time.
    """
    from ml.training.scorer import Scorer

    platform = platform_rows(training_set)
    train = mask_context(platform.filter(pl.col("split") == "train"), CONTEXT_DROPOUT, params.seed)
    val = platform.filter(pl.col("split") == "validation")
    if train.height == 0 or val.height == 0:
        raise ValueError("the training set has no platform rows to train or validate the risk model on: "
                         "simulate more days")
    oof = train.select("label_id").join(issues.select("label_id", *PROBA_OOF), on="label_id", how="left")
    if oof[PROBA_OOF[0]].null_count():
        raise ValueError("label_issues has no out-of-fold scores for some risk-model training rows: "
                         "rebuild label_issues from this training set")
    text_scorer = Scorer(classifier)
    X = risk_features(train, oof.select(PROBA_OOF).to_numpy())
    X_val = risk_features(val, text_scorer.predict_proba(val.select("text")))
    y, y_val = label_array(train), label_array(val)
    booster, info = lightgbm_model.train_ray(X, y, X_val, y_val, params, ray_storage)
    val_logits = booster.predict(X_val, raw_score=True)
    temperature = fit_temperature(val_logits, y_val)
    val_pr = pr_auc_by_policy(y_val, softmax(val_logits, temperature))
    metrics = {"validation_pr_auc": val_pr, "validation_macro_pr_auc": macro_pr_auc(val_pr),
               "rounds": int(booster.num_trees() // len(POLICIES)), "rows_train": train.height,
               "rows_validation": val.height, "train_seconds": float(info["train_seconds"]),
               "wall_seconds": float(info["wall_seconds"])}
    version = new_version("risk_model")
    out = models_dir / version
    out.mkdir(parents=True)
    booster.save_model(str(out / "model.txt"))
    params_out = {"model": asdict(params), "content_classifier": classifier.version,
                  "content_classifier_dataset_version": classifier.dataset_version}
    return _save("risk_model", version, out, classifier.dataset_version, params_out, metrics, temperature)
