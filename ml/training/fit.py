"""Fit the deep text model (Ray TorchTrainer) as a content-classifier candidate.

It sees text only, like `ml.training.content`'s linear classifier, and is trained on the same
rows (every labelled text of the train split, likely label errors left out); it competes with
the linear classifier on text-only held-out and leave-one-source-out figures. Profiles:
`compact` (hashed n-gram wide-and-deep net, CPU default) and `minilm` (fine-tunes the packaged
all-MiniLM-L6-v2 encoder; what `auto` picks when Ray sees a GPU).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl
import torch

from ml.features.text import hashed_ngrams
from ml.training import minilm_model, text_model
from ml.training.artifacts import ModelArtifact, new_version
from ml.training.calibration import fit_temperature, softmax
from ml.training.dataset import held_out_texts, label_array
from ml.training.labels import LabelTreatment, training_rows
from ml.training.matrix import DENSE_COLUMNS, text_inputs
from ml.training.metrics import macro_pr_auc, pr_auc_by_policy

# The deep model's rows: every label as given, likely label errors on platform labels left out
# (its training loop takes no per-row weights, so the linear recipe's down-weighting becomes a drop).
DEEP_MODEL_LABELS = LabelTreatment(weighted=False, flagged_weight=0.0)


def _rows(training_set: pl.DataFrame, issues: pl.DataFrame | None) -> pl.DataFrame:
    return training_rows(
        training_set, DEEP_MODEL_LABELS if issues is not None else LabelTreatment(weighted=False), issues
    )


def _finish_deep(
    net: torch.nn.Module,
    info: dict,
    profile: str,
    params,
    rows: int,
    val_logits: np.ndarray,
    y_val: np.ndarray,
    dataset_version: str,
    models_dir: Path,
) -> ModelArtifact:
    temperature = fit_temperature(val_logits, y_val)
    val_pr = pr_auc_by_policy(y_val, softmax(val_logits, temperature))
    metrics = {
        "validation_text_only_pr_auc": val_pr,
        "validation_text_only_macro_pr_auc": macro_pr_auc(val_pr),
        "rows_train": rows,
        "steps": int(info["steps"]),
        "best_epoch": int(info["best_epoch"]),
        "use_gpu": bool(info["use_gpu"]),
        "examples_per_second": float(info["examples_per_second"]),
        "train_seconds": float(info["train_seconds"]),
        "wall_seconds": float(info["wall_seconds"]),
    }
    version = new_version("text_model")
    out = models_dir / version
    out.mkdir(parents=True)
    torch.save(net.state_dict(), out / "model.pt")
    return ModelArtifact(
        kind="text_model",
        version=version,
        path=str(out),
        dataset_version=dataset_version,
        params={"profile": profile, "model": asdict(params), "n_dense": len(DENSE_COLUMNS)},
        metrics=metrics,
        temperature=temperature,
    ).write_manifest()


def fit_text_model(
    training_set: pl.DataFrame,
    issues: pl.DataFrame | None,
    dataset_version: str,
    models_dir: Path,
    ray_storage: Path,
    params: text_model.TextModelParams,
) -> ModelArtifact:
    """The compact profile: a hashed n-gram wide-and-deep net over text and text signals."""
    train, val = _rows(training_set, issues), held_out_texts(training_set, "validation")
    ng = {k: hashed_ngrams(f["text"].to_list()) for k, f in (("train", train), ("val", val))}
    dn = {k: text_inputs(f) for k, f in (("train", train), ("val", val))}
    y, y_val = label_array(train), label_array(val)
    net, info = text_model.train_ray(ng["train"], dn["train"], y, (ng["val"], dn["val"], y_val), params, ray_storage)
    return _finish_deep(
        net,
        info,
        "compact",
        params,
        train.height,
        text_model.predict_logits(net, ng["val"], dn["val"]),
        y_val,
        dataset_version,
        models_dir,
    )


def fit_minilm(
    training_set: pl.DataFrame,
    issues: pl.DataFrame | None,
    dataset_version: str,
    models_dir: Path,
    ray_storage: Path,
    params: minilm_model.MiniLMParams,
) -> ModelArtifact:
    """The GPU profile: fine-tune all-MiniLM-L6-v2 end to end on text (and text signals)."""
    train, val = _rows(training_set, issues), held_out_texts(training_set, "validation")
    texts = {"train": train["text"].to_list(), "val": val["text"].to_list()}
    dn = {"train": text_inputs(train), "val": text_inputs(val)}
    y, y_val = label_array(train), label_array(val)
    net, info = minilm_model.train_ray(
        texts["train"], dn["train"], y, (texts["val"], dn["val"], y_val), params, ray_storage
    )
    val_logits = minilm_model.predict_logits(net, texts["val"], dn["val"], max_length=params.max_length)
    return _finish_deep(net, info, "minilm", params, train.height, val_logits, y_val, dataset_version, models_dir)
