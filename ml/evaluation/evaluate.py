"""Full evaluations of trained models, gates included: the functions the evaluation assets call.

- `evaluate_text_model`: a content-classifier candidate (text only) on the text-only held-out
  set, QA gold scored with text alone, and leave-one-source-out, with the baseline and the
  champion's content classifier on the same rows.
- `evaluate_risk_model`: the pair on platform content of the test period (the simulated split)
  and its QA-gold subset, per slice, beside its own classifier alone and the champion pair.
- `deployment_candidate`: the pair, or its classifier alone when the risk model did not earn its place.
Operating points are chosen on validation rows, never on the rows they are judged on. Each
evaluation is also written beside its model as evaluation.json and operating_points.json.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl

from ml.evaluation.gates import GateConfig, pair_gates, text_gates
from ml.evaluation.generalisation import leave_one_source_out, macro_delta_interval, present_policy_metrics
from ml.evaluation.metrics import (
    choose_operating_points,
    policy_metrics,
    slice_metrics,
    with_pr_auc_intervals,
    with_slices,
)
from ml.evaluation.plots import calibration_plot, pr_curves
from ml.evaluation.results import ClassifierEvaluation, PairedGain, PairEvaluation, SetMetrics, as_json
from ml.training.artifacts import ModelArtifact, classifier_alone
from ml.training.content import BASELINE_RECIPE, ClassifierRecipe, FitPlan
from ml.training.dataset import held_out_texts, label_array, platform_rows
from ml.training.scorer import Scorer


def _write(model_dir: Path, name: str, payload) -> None:
    (model_dir / name).write_text(json.dumps(as_json(payload), indent=2))


def _plots(
    model_dir: Path, title: str, y: np.ndarray, p: np.ndarray, other: np.ndarray | None, other_name: str
) -> dict[str, str]:
    """PR curves (beside `other`'s, when given) and the calibration plot of a model on one set."""
    return {
        "pr_curves": str(pr_curves(y, p, model_dir / "pr_curves.png", title, other, other_name)),
        "calibration": str(calibration_plot(y, p, model_dir / "calibration.png", f"{title}: calibration")),
    }


def recipe_of(artifact: ModelArtifact) -> ClassifierRecipe | None:
    """The linear recipe an artifact was trained with, or None for kinds that have none (the deep model)."""
    recipe = artifact.params.get("recipe")
    return ClassifierRecipe.from_dict(recipe) if recipe else None


def evaluate_text_model(
    artifact: ModelArtifact,
    training_set: pl.DataFrame,
    baseline: ModelArtifact,
    champion_classifier: ModelArtifact | None,
    issues: pl.DataFrame | None,
    config: GateConfig = GateConfig(),
    run_loso: bool = True,
    plan: FitPlan | None = None,
) -> ClassifierEvaluation:
    """Text-only held-out, QA gold (text only) and leave-one-source-out figures of a classifier, gated.

    Leave-one-source-out retrains the candidate's own recipe, so it needs one (`recipe_of`); a kind
    without one is reported without it and its gate says it cannot be promoted. `plan` carries the
    training set's text features, the threads and the fit cache its refits use.
    """
    scorer, base = Scorer(artifact), Scorer(baseline)
    val, test = held_out_texts(training_set, "validation"), held_out_texts(training_set, "test")
    gold = platform_rows(training_set).filter((pl.col("split") == "test") & (pl.col("label_source") == "qa_audit"))
    points = choose_operating_points(label_array(val), scorer.predict_proba(val.select("text")))
    base_points = choose_operating_points(label_array(val), base.predict_proba(val.select("text")))
    y_test, p_test = label_array(test), scorer.predict_proba(test.select("text"))
    p_base = base.predict_proba(test.select("text"))
    champion_version = champion_text_only = None
    if champion_classifier is not None and champion_classifier.version != artifact.version:
        champ = Scorer(champion_classifier)
        champ_points = choose_operating_points(label_array(val), champ.predict_proba(val.select("text")))
        champion_version = champion_classifier.version
        champion_text_only = policy_metrics(y_test, champ.predict_proba(test.select("text")), champ_points)
    recipe = recipe_of(artifact)
    held_out_sources = (
        leave_one_source_out(recipe, recipe_of(baseline) or BASELINE_RECIPE, training_set, issues, plan)
        if run_loso and recipe is not None
        else None
    )
    model_dir = Path(artifact.path)
    plots = _plots(model_dir, f"{artifact.version}: text-only held-out", y_test, p_test, p_base, "baseline")
    ev = ClassifierEvaluation(
        version=artifact.version,
        kind=artifact.kind,
        dataset_version=artifact.dataset_version,
        baseline_version=baseline.version,
        operating_points=points,
        text_only=with_pr_auc_intervals(policy_metrics(y_test, p_test, points), y_test, p_test),
        baseline_text_only=policy_metrics(y_test, p_base, base_points),
        qa_gold_text_only=_qa_gold(gold, scorer.predict_proba(gold.select("text")), points) if gold.height else None,
        champion_version=champion_version,
        champion_text_only=champion_text_only,
        held_out_sources=held_out_sources,
        plots=plots,
    )
    return _judged(replace(ev, gates=text_gates(ev, config)), model_dir)


def pair_operating_points(scorer: Scorer, training_set: pl.DataFrame, platform_val: pl.DataFrame) -> dict:
    """Thresholds on everything the pair will see: platform validation rows with their context and the
    validation texts of every source without it. The platform rows alone are too few to place a
    precision-0.95 threshold (77 rows in the 12-day test configuration)."""
    texts = held_out_texts(training_set, "validation").select("text", "label")
    proba = np.vstack([scorer.predict_proba(platform_val), scorer.predict_proba(texts.select("text"))])
    return choose_operating_points(np.concatenate([label_array(platform_val), label_array(texts)]), proba)


def campaign_items(frame: pl.DataFrame) -> np.ndarray:
    """Rows whose post was linked, when it was posted, to another account's earlier post: a near-duplicate of
    its text or a shared link, number or address (the campaign features, point in time; no simulator truth)."""
    linked = [c for c in ("copy_accounts_before", "artifact_accounts_before") if c in frame.columns]
    if not linked:
        return np.zeros(frame.height, dtype=bool)
    return frame.select(pl.any_horizontal(pl.col(c).fill_null(0) > 0 for c in linked)).to_series().to_numpy()


def paired_gain(labels: np.ndarray, pair: np.ndarray, classifier: np.ndarray, confidence: float = 0.95) -> PairedGain:
    """Macro PR-AUC of the pair minus its classifier's on the same rows, with its paired-bootstrap interval."""
    if len(labels) == 0:
        return PairedGain(0, np.nan, np.nan, np.nan, confidence)
    delta = present_policy_metrics(labels, pair).macro_pr_auc - present_policy_metrics(labels, classifier).macro_pr_auc
    low, high = macro_delta_interval(labels, pair, classifier, None, confidence=confidence)
    return PairedGain(len(labels), float(delta), low, high, confidence)


def evaluate_risk_model(
    artifact: ModelArtifact,
    training_set: pl.DataFrame,
    users: pl.DataFrame,
    champion: ModelArtifact | None,
    classifier_evaluation: ClassifierEvaluation,
    config: GateConfig = GateConfig(),
    instead_of: PairEvaluation | None = None,
) -> PairEvaluation:
    """The pair on the simulated test split (platform content, test period) and its QA-gold subset, gated.

    With `instead_of` (the evaluation of a pair that did not beat its classifier), `artifact` is that
    classifier deployed alone (ml/training/artifacts.py classifier_alone), evaluated the same way and carrying
    the pair's gains, so the run and its registry say why it stands in the pair's place."""
    scorer = Scorer(artifact)
    if scorer.classifier.version != classifier_evaluation.version:
        raise ValueError(
            f"the pair {artifact.version} pairs content classifier {scorer.classifier.version}, but the "
            f"evaluation given is of {classifier_evaluation.version}"
        )
    frame = with_slices(
        platform_rows(training_set).join(
            users.select(pl.col("user_id").alias("author_id"), "country"), on="author_id", how="left"
        )
    )
    val, test = frame.filter(pl.col("split") == "validation"), frame.filter(pl.col("split") == "test")
    gold = test.filter(pl.col("label_source") == "qa_audit")
    points = pair_operating_points(scorer, training_set, val)
    y_test, p_test = label_array(test), scorer.predict_proba(test)
    p_text = scorer.classifier.predict_proba(test.select("text"))
    champion_version = champion_test = p_champ = None
    if champion is not None and champion.version != artifact.version:
        champ = Scorer(champion)
        champ_points = pair_operating_points(champ, training_set, val)
        p_champ = champ.predict_proba(test)
        champion_version, champion_test = champion.version, policy_metrics(y_test, p_champ, champ_points)
    model_dir = Path(artifact.path)
    plots = _plots(model_dir, f"{artifact.version}: simulated test split", y_test, p_test, p_champ, "champion")
    ev = PairEvaluation(
        version=artifact.version,
        kind=artifact.kind,
        dataset_version=artifact.dataset_version,
        content_classifier_version=scorer.classifier.version,
        operating_points=points,
        test=policy_metrics(y_test, p_test, points),
        classifier_alone_test=policy_metrics(y_test, p_text, points),
        qa_gold=_qa_gold(gold, scorer.predict_proba(gold), points) if gold.height else None,
        slices=slice_metrics(test, y_test, p_test, p_text),
        champion_version=champion_version,
        champion_test=champion_test,
        classifier=classifier_evaluation,
        plots=plots,
    )
    if instead_of is None:
        linked, confidence = campaign_items(test), config.pair_gain_confidence or 0.95  # 0: reported at 95%
        gains = (
            paired_gain(y_test, p_test, p_text, confidence),
            paired_gain(y_test[linked], p_test[linked], p_text[linked], confidence),
        )
    else:
        gains = instead_of.gain, instead_of.campaign_gain
    ev = replace(ev, gain=gains[0], campaign_gain=gains[1], instead_of=instead_of.version if instead_of else None)
    return _judged(replace(ev, gates=pair_gates(ev, config)), model_dir)


def deployment_candidate(
    pair_artifact: ModelArtifact,
    pair: PairEvaluation,
    training_set: pl.DataFrame,
    users: pl.DataFrame,
    champion: ModelArtifact | None,
    config: GateConfig = GateConfig(),
) -> tuple[ModelArtifact, PairEvaluation]:
    """What may be deployed from an evaluated pair: the pair itself when its risk model earned its place
    (`beats_classifier_significantly`), else its content classifier alone (a `classifier_alone` artifact made
    beside it), evaluated the same way on the same rows and carrying the pair's gains."""
    if "beats_classifier_significantly" not in pair.failed_gates:
        return pair_artifact, pair
    models = Path(pair_artifact.path).parent
    classifier = ModelArtifact.read(models / pair_artifact.params["content_classifier"])
    alone = classifier_alone(classifier, models, instead_of=pair_artifact.version)
    return alone, evaluate_risk_model(alone, training_set, users, champion, pair.classifier, config, instead_of=pair)


def _qa_gold(gold: pl.DataFrame, proba: np.ndarray, points: dict) -> SetMetrics:
    """Metrics on the QA-gold rows, with intervals: the audited sample is small, so its figures need them."""
    labels = label_array(gold)
    return with_pr_auc_intervals(policy_metrics(labels, proba, points), labels, proba)


def _judged(ev, model_dir: Path):
    """`ev` with its gates, written beside its model (operating_points.json, evaluation.json)."""
    _write(model_dir, "operating_points.json", ev.operating_points)
    _write(model_dir, "evaluation.json", ev)
    return ev
