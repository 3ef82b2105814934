"""Run a full evaluation of one model artifact: the function the evaluation assets call."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import polars as pl

from ml.evaluation import choose_operating_points, policy_metrics, slice_metrics, with_slices
from ml.evaluation_plots import calibration_plot, pr_curves
from ml.training.artifacts import ModelArtifact
from ml.training.dataset import label_array
from ml.training.scorer import Scorer


def evaluate(artifact: ModelArtifact, training_set: pl.DataFrame, users: pl.DataFrame,
             champion: ModelArtifact | None, target_precision: float = 0.95, target_recall: float = 0.7) -> dict:
    """Metrics on the test split and on its QA-gold subset, slices, champion comparison, plots.

    Writes operating_points.json and the PNG plots into the model's directory.
    """
    scorer = Scorer(artifact)
    frame = with_slices(training_set.join(users.select(pl.col("user_id").alias("author_id"), "country"),
                                          on="author_id", how="left"))
    val, test = frame.filter(pl.col("split") == "validation"), frame.filter(pl.col("split") == "test")
    gold = test.filter(pl.col("label_source") == "qa_audit")
    points = choose_operating_points(label_array(val), scorer.predict_proba(val), target_precision, target_recall)
    y_test, p_test = label_array(test), scorer.predict_proba(test)
    out = {
        "version": artifact.version, "kind": artifact.kind, "dataset_version": artifact.dataset_version,
        "operating_points": {p: asdict(op) for p, op in points.items()},
        "test": policy_metrics(y_test, p_test, points),
        "qa_gold": policy_metrics(label_array(gold), scorer.predict_proba(gold), points) if gold.height else None,
        "slices": slice_metrics(test, y_test, p_test),
        "champion_version": None, "champion_test": None, "champion_qa_gold": None,
    }
    p_champ = None
    if champion is not None and champion.version != artifact.version:
        champ = Scorer(champion)
        # The champion is judged with its own operating points, on exactly the same rows.
        champ_points = choose_operating_points(label_array(val), champ.predict_proba(val), target_precision,
                                               target_recall)
        p_champ = champ.predict_proba(test)
        out.update(champion_version=champion.version, champion_test=policy_metrics(y_test, p_champ, champ_points))
        if gold.height:
            out["champion_qa_gold"] = policy_metrics(label_array(gold), champ.predict_proba(gold), champ_points)
    model_dir = Path(artifact.path)
    (model_dir / "operating_points.json").write_text(json.dumps(out["operating_points"], indent=2))
    out["plots"] = {
        "pr_curves": str(pr_curves(y_test, p_test, model_dir / "pr_curves.png", f"{artifact.version}: test split",
                                   p_champ)),
        "calibration": str(calibration_plot(y_test, p_test, model_dir / "calibration.png",
                                            f"{artifact.version}: calibration")),
    }
    (model_dir / "evaluation.json").write_text(json.dumps(out, indent=2, default=_json))
    return out


def _json(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(type(value))
