"""Fit the text-first model pair: the content classifier (text only) and the risk model over it.

The content classifier is a `ClassifierRecipe`: a small ensemble of linear text classifiers
(ml/training/text_classifier.py), each reading the training labels its own way
(ml/training/labels.py), their probabilities averaged and calibrated per policy on the
validation split's distinct texts. A member may vote on some policies only: abuse (hate speech,
harassment) and spam (spam, scam) look different in text, and what helps one hurts the other on
sources the model never saw. The default recipe has two members every policy reads and one
specialist per policy family:
- the labels as given, weighted by confidence, with text signals beside the n-grams: it learns
  what the platform sees often (reposted spam campaigns) and what spam looks like (links, digits);
- every label as given, unweighted (the baseline's own reading): a hedge where the others do not help;
- abuse only: the per-text consensus of all labels (a wrong moderator decision is outvoted by the
  reference set and QA instead of learned), read through the naive-Bayes view as well as TF-IDF;
- spam only: every label as given with the text signals.
In the members that read label weights, platform labels confident learning flagged as likely
errors count a third and a reference text takes its most specific reference label. The baseline
is the plain recipe: one classifier, TF-IDF n-grams, every label as given, unweighted.

The risk model is LightGBM (Ray Train) over the classifier's out-of-fold scores plus behaviour,
network and context features of platform content; at scoring time it answers for rows that carry
platform context and the classifier answers for rows that do not (ml/training/scorer.py).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
import polars as pl

from ml.taxonomy import POLICIES, VIOLATING
from ml.training import lightgbm_model
from ml.training.artifacts import ModelArtifact
from ml.training.calibration import fit_policy_calibration, fit_temperature, softmax
from ml.training.dataset import held_out_texts, label_array, platform_rows
from ml.training.labels import AS_GIVEN, LabelTreatment, training_rows
from ml.training.matrix import dense_matrix, mask_context
from ml.training.metrics import macro_pr_auc, pr_auc_by_policy
from ml.training.text_classifier import (
    ClassifierParams,
    LinearTextClassifier,
    TextFeatureCache,
    TextMatrix,
    group_folds,
)

PROBA_OOF = tuple(f"oof_p_{p}" for p in POLICIES)
CONTEXT_DROPOUT = 0.1  # share of risk-model training rows whose platform context is hidden
# Weight of a platform label confident learning flagged: a third, not zero (ml/training/labels.py says why).
FLAGGED_LABEL_WEIGHT = 0.3
OUT_OF_FOLD_FOLDS = 4


ABUSE: tuple[str, ...] = ("hate_speech", "harassment")
SPAM: tuple[str, ...] = ("spam", "scam")


@dataclass(frozen=True)
class RecipeMember:
    treatment: LabelTreatment
    params: ClassifierParams
    # The violating policies whose probabilities this member votes on (every member votes on benign).
    policies: tuple[str, ...] = VIOLATING

    def __post_init__(self):
        unknown = set(self.policies) - set(VIOLATING)
        if unknown or not self.policies:
            raise ValueError(f"a recipe member votes on violating policies {VIOLATING}, not {sorted(unknown) or '()'}")

    def votes(self) -> np.ndarray:
        """bool [len(POLICIES)]: the probability columns this member votes on."""
        return np.array([p == "benign" or p in self.policies for p in POLICIES])


@dataclass(frozen=True)
class ClassifierRecipe:
    """How a linear content classifier is trained: its members, averaged. Saved with every artifact
    (`params["recipe"]`), so leave-one-source-out can retrain exactly the recipe it judges."""

    name: str
    members: tuple[RecipeMember, ...]

    @property
    def uses_label_issues(self) -> bool:
        return any(m.treatment.flagged_weight != 1.0 for m in self.members)

    def ignoring_label_issues(self) -> ClassifierRecipe:
        """The same recipe with every label counted (what the out-of-fold scores for cleanlab use)."""
        return ClassifierRecipe(
            self.name, tuple(replace(m, treatment=replace(m.treatment, flagged_weight=1.0)) for m in self.members)
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierRecipe:
        return cls(
            d["name"],
            tuple(
                RecipeMember(
                    LabelTreatment(**m["treatment"]),
                    ClassifierParams.from_dict(m["params"]),
                    tuple(m.get("policies", VIOLATING)),
                )
                for m in d["members"]
            ),
        )


# Measured with leave-one-source-out on two simulated worlds (30 days x 2,000 posts, 12 days x
# 800), docs/models.md has the table. On abuse, the consensus member read through naive-Bayes
# weights carries offensive tweets (+0.012 over the baseline where the all-policy consensus member
# gave +0.007); on spam it cost the YouTube videos up to 0.014, and the text signals that carry
# them cost offensive tweets 0.026 when abuse heads read them too. So each family gets its own
# specialist, and the two all-policy members keep every source within reach of the plain recipe.
WEIGHTED = LabelTreatment(weighted=True, flagged_weight=FLAGGED_LABEL_WEIGHT, specific_reference_labels=True)
CONTENT_CLASSIFIER_RECIPE = ClassifierRecipe(
    "content_classifier",
    (
        RecipeMember(WEIGHTED, ClassifierParams(signals=True, signal_scale=0.3)),
        RecipeMember(AS_GIVEN, ClassifierParams()),
        RecipeMember(replace(WEIGHTED, consensus=True), ClassifierParams(views=("tfidf", "nb")), ABUSE),
        RecipeMember(AS_GIVEN, ClassifierParams(signals=True, signal_scale=0.3), SPAM),
    ),
)
BASELINE_RECIPE = ClassifierRecipe("baseline", (RecipeMember(AS_GIVEN, ClassifierParams()),))


class EnsembleTextClassifier:
    """Per policy, the mean probability of the members that vote on it; rows sum to one over POLICIES."""

    # bool [members, POLICIES]; None: every member votes on every policy (and classifiers pickled
    # before members voted per policy, which have no such attribute, read it from here).
    votes: np.ndarray | None = None

    def __init__(self, members: list[LinearTextClassifier], votes: np.ndarray | None = None):
        self.members = members
        self.votes = votes

    def proba(self, x: TextMatrix) -> np.ndarray:
        votes = np.ones((len(self.members), len(POLICIES)), bool) if self.votes is None else self.votes
        weight = votes[:, None, :].astype(np.float64)
        p = (np.stack([m.proba(x) for m in self.members]) * weight).sum(axis=0) / weight.sum(axis=0)
        return p / p.sum(axis=1, keepdims=True)


def new_version(kind: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{kind}-{stamp}-{secrets.token_hex(2)}"


def fit_recipe(
    recipe: ClassifierRecipe,
    training_set: pl.DataFrame,
    issues: pl.DataFrame | None,
    cache: TextFeatureCache | None = None,
    fitted: dict[RecipeMember, LinearTextClassifier] | None = None,
) -> EnsembleTextClassifier:
    """Fit every member of `recipe` on the train split of `training_set` (uncalibrated).

    `fitted` shares members between recipes fitted on the same rows: a member that reads no label
    issues (the content classifier's plain member is the baseline) is fitted once and reused.
    """
    cache = cache or TextFeatureCache(training_set.filter(pl.col("split") == "train"))
    members = []
    for member in recipe.members:
        shareable = fitted is not None and (issues is None or member.treatment.flagged_weight == 1.0)
        if shareable and member in fitted:
            members.append(fitted[member])
            continue
        rows = training_rows(training_set, member.treatment, issues)
        model = LinearTextClassifier(member.params).fit(cache.rows(rows), label_array(rows), rows["weight"].to_numpy())
        if shareable:
            fitted[member] = model
        members.append(model)
    return EnsembleTextClassifier(members, np.stack([m.votes() for m in recipe.members]))


def out_of_fold_proba(
    training_set: pl.DataFrame, recipe: ClassifierRecipe, seed: int = 42, folds: int = OUT_OF_FOLD_FOLDS
) -> tuple[pl.DataFrame, np.ndarray]:
    """Every train-split label row, and its probabilities from `recipe` fitted on the other folds
    (folds grouped by text hash, so no copy of a text is scored by a model that saw it)."""
    rows = training_rows(training_set, AS_GIVEN)
    cache = TextFeatureCache(rows)
    fold = group_folds(rows["text_hash"].to_numpy(), folds, seed)
    train = training_set.filter(pl.col("split") == "train")
    oof = np.zeros((rows.height, len(POLICIES)))
    for f in range(folds):
        held = fold == f
        held_hashes = rows.filter(pl.Series(held))["text_hash"].implode()
        model = fit_recipe(recipe, train.filter(~pl.col("text_hash").is_in(held_hashes)), None, cache)
        oof[held] = model.proba(cache.rows(rows.filter(pl.Series(held))))
    return rows, oof


def _save(
    kind: str, version: str, out: Path, dataset_version: str, params: dict, metrics: dict, temperature: float = 1.0
) -> ModelArtifact:
    artifact = ModelArtifact(
        kind=kind,
        version=version,
        path=str(out),
        dataset_version=dataset_version,
        params=params,
        metrics=metrics,
        temperature=temperature,
    )
    artifact.write_manifest()
    return artifact


def fit_text_classifier(
    training_set: pl.DataFrame,
    dataset_version: str,
    models_dir: Path,
    issues: pl.DataFrame | None,
    recipe: ClassifierRecipe,
) -> ModelArtifact:
    """Fit `recipe`, calibrate it per policy on the validation texts, and save it (kind = recipe name)."""
    started = time.perf_counter()
    if recipe.uses_label_issues and issues is None:
        raise ValueError(f"recipe {recipe.name} down-weights likely label errors: pass the label_issues table")
    model = fit_recipe(recipe, training_set, issues)
    val = held_out_texts(training_set, "validation")
    raw_val = model.proba(TextMatrix.of(val["text"].to_list()))
    calibration = fit_policy_calibration(raw_val, label_array(val))
    val_pr = pr_auc_by_policy(label_array(val), calibration.apply(raw_val))
    metrics = {
        "validation_text_only_pr_auc": val_pr,
        "validation_text_only_macro_pr_auc": macro_pr_auc(val_pr),
        "rows_train": training_set.filter(pl.col("split") == "train").height,
        "train_seconds": time.perf_counter() - started,
    }
    version = new_version(recipe.name)
    out = models_dir / version
    out.mkdir(parents=True)
    joblib.dump({"model": model, "calibration": calibration}, out / "model.joblib")
    return _save(recipe.name, version, out, dataset_version, {"recipe": recipe.to_dict()}, metrics)


def risk_features(frame: pl.DataFrame, classifier_proba: np.ndarray) -> np.ndarray:
    """[content classifier probabilities | dense platform context and text signals]."""
    return np.hstack([classifier_proba.astype(np.float32), dense_matrix(frame)])


def fit_risk_model(
    training_set: pl.DataFrame,
    issues: pl.DataFrame,
    classifier: ModelArtifact,
    models_dir: Path,
    ray_storage: Path,
    params: lightgbm_model.LightGBMParams,
) -> ModelArtifact:
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
    booster, info = lightgbm_model.train_ray(X, y, X_val, y_val, params, ray_storage)
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
    return _save("risk_model", version, out, classifier.dataset_version, params_out, metrics, temperature)
