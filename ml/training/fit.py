"""Fit each model kind on a training set and write a versioned artifact with its test metrics.

These are the functions the training assets call: split matrices, train, calibrate on the
validation split, measure on the test split, save under `<models>/<version>/`.
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
import torch

from ml.features.text import hashed_ngrams
from ml.training import lightgbm_model, minilm_model, text_model
from ml.training.artifacts import ModelArtifact
from ml.training.baseline import baseline_logits, train_baseline
from ml.training.calibration import fit_temperature, softmax
from ml.training.dataset import label_array
from ml.training.matrix import DENSE_COLUMNS, dense_matrix, design_matrix, mask_context
from ml.training.metrics import macro_pr_auc, pr_auc_by_policy


def new_version(kind: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{kind}-{stamp}-{secrets.token_hex(2)}"


CONTEXT_DROPOUT = 0.1  # share of training rows whose platform context is hidden


def splits(training_set: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    parts = tuple(training_set.filter(pl.col("split") == s) for s in ("train", "validation", "test"))
    for name, part in zip(("train", "validation", "test"), parts):
        if part.height == 0:
            raise ValueError(f"the training set has no {name} rows: simulate more days")
    return parts


def _test_metrics(y_test: np.ndarray, proba: np.ndarray, y_val: np.ndarray, proba_val: np.ndarray) -> dict:
    test = pr_auc_by_policy(y_test, proba)
    val = pr_auc_by_policy(y_val, proba_val)
    return {"test_pr_auc": test, "test_macro_pr_auc": macro_pr_auc(test),
            "validation_pr_auc": val, "validation_macro_pr_auc": macro_pr_auc(val)}


def _finish(kind: str, out_dir: Path, version: str, dataset_version: str, params: dict, metrics: dict,
            temperature: float) -> ModelArtifact:
    artifact = ModelArtifact(kind=kind, version=version, path=str(out_dir), dataset_version=dataset_version,
                             params=params, metrics=metrics, temperature=temperature)
    artifact.write_manifest()
    return artifact


def fit_lightgbm(training_set: pl.DataFrame, dataset_version: str, models_dir: Path, ray_storage: Path,
                 params: lightgbm_model.LightGBMParams) -> ModelArtifact:
    train, val, test = splits(training_set)
    train = mask_context(train, CONTEXT_DROPOUT, params.seed)
    X, X_val, X_test = design_matrix(train), design_matrix(val), design_matrix(test)
    y, y_val, y_test = label_array(train), label_array(val), label_array(test)
    booster, info = lightgbm_model.train_ray(X, y, X_val, y_val, params, ray_storage)
    val_logits = booster.predict(X_val, raw_score=True)
    temperature = fit_temperature(val_logits, y_val)
    metrics = _test_metrics(y_test, softmax(booster.predict(X_test, raw_score=True), temperature),
                            y_val, softmax(val_logits, temperature))
    metrics.update(rounds=int(booster.num_trees() // 5), rows_train=train.height, rows_validation=val.height,
                   rows_test=test.height, train_seconds=float(info["train_seconds"]),
                   wall_seconds=float(info["wall_seconds"]))
    version = new_version("lightgbm")
    out = models_dir / version
    out.mkdir(parents=True)
    booster.save_model(str(out / "model.txt"))
    return _finish("lightgbm", out, version, dataset_version, {"model": asdict(params)}, metrics, temperature)


def _finish_deep(net: torch.nn.Module, info: dict, profile: str, params, train: pl.DataFrame,
                 val_logits: np.ndarray, test_logits: np.ndarray, y_val: np.ndarray, y_test: np.ndarray,
                 dataset_version: str, models_dir: Path) -> ModelArtifact:
    """Calibrate, measure and save a deep text model (either profile) as a `text_model` artifact."""
    temperature = fit_temperature(val_logits, y_val)
    metrics = _test_metrics(y_test, softmax(test_logits, temperature), y_val, softmax(val_logits, temperature))
    metrics.update(rows_train=train.height, steps=int(info["steps"]), best_epoch=int(info["best_epoch"]),
                   use_gpu=bool(info["use_gpu"]), examples_per_second=float(info["examples_per_second"]),
                   train_seconds=float(info["train_seconds"]), wall_seconds=float(info["wall_seconds"]))
    version = new_version("text_model")
    out = models_dir / version
    out.mkdir(parents=True)
    torch.save(net.state_dict(), out / "model.pt")
    return _finish("text_model", out, version, dataset_version,
                   {"profile": profile, "model": asdict(params), "n_dense": len(DENSE_COLUMNS)}, metrics,
                   temperature)


def fit_text_model(training_set: pl.DataFrame, dataset_version: str, models_dir: Path, ray_storage: Path,
                   params: text_model.TextModelParams) -> ModelArtifact:
    """The compact profile: hashed n-gram wide-and-deep net plus platform context."""
    train, val, test = splits(training_set)
    train = mask_context(train, CONTEXT_DROPOUT, params.seed)
    ng = {k: hashed_ngrams(f["text"].to_list()) for k, f in (("train", train), ("val", val), ("test", test))}
    dn = {k: dense_matrix(f) for k, f in (("train", train), ("val", val), ("test", test))}
    y, y_val, y_test = label_array(train), label_array(val), label_array(test)
    net, info = text_model.train_ray(ng["train"], dn["train"], y, (ng["val"], dn["val"], y_val), params, ray_storage)
    return _finish_deep(net, info, "compact", params, train, text_model.predict_logits(net, ng["val"], dn["val"]),
                        text_model.predict_logits(net, ng["test"], dn["test"]), y_val, y_test, dataset_version,
                        models_dir)


def fit_baseline(training_set: pl.DataFrame, dataset_version: str, models_dir: Path, seed: int = 42) -> ModelArtifact:
    train, val, test = splits(training_set)
    y, y_val, y_test = label_array(train), label_array(val), label_array(test)
    started = time.perf_counter()
    pipeline = train_baseline(train["text"].to_list(), y, seed=seed)
    seconds = time.perf_counter() - started
    val_logits = baseline_logits(pipeline, val["text"].to_list())
    temperature = fit_temperature(val_logits, y_val)
    metrics = _test_metrics(y_test, softmax(baseline_logits(pipeline, test["text"].to_list()), temperature),
                            y_val, softmax(val_logits, temperature))
    metrics.update(rows_train=train.height, train_seconds=seconds)
    version = new_version("baseline")
    out = models_dir / version
    out.mkdir(parents=True)
    joblib.dump(pipeline, out / "model.joblib")
    return _finish("baseline", out, version, dataset_version, {"model": {"C": 4.0, "seed": seed}}, metrics,
                   temperature)


def fit_minilm(training_set: pl.DataFrame, dataset_version: str, models_dir: Path, ray_storage: Path,
               params: minilm_model.MiniLMParams) -> ModelArtifact:
    """The GPU profile of the text model: fine-tuned MiniLM encoder plus platform context."""
    train, val, test = splits(training_set)
    train = mask_context(train, CONTEXT_DROPOUT, params.seed)
    texts = {k: f["text"].to_list() for k, f in (("train", train), ("val", val), ("test", test))}
    dn = {k: dense_matrix(f) for k, f in (("train", train), ("val", val), ("test", test))}
    y, y_val, y_test = label_array(train), label_array(val), label_array(test)
    net, info = minilm_model.train_ray(texts["train"], dn["train"], y, (texts["val"], dn["val"], y_val), params,
                                       ray_storage)

    def logits(split: str) -> np.ndarray:
        return minilm_model.predict_logits(net, texts[split], dn[split], max_length=params.max_length)

    return _finish_deep(net, info, "minilm", params, train, logits("val"), logits("test"), y_val, y_test,
                        dataset_version, models_dir)
