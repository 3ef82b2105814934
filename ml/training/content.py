"""Fit the content classifier: text only, an ensemble of linear members read through a recipe.

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

Fits are many (the final one, out-of-fold folds for label issues, one per held-out source), so
they share work: every one-vs-rest model of every member is fitted in one thread pool, members
reading the same rows share their design matrices, and a fit cache (ml/training/fit_cache.py)
keeps what an unchanged input would only fit again. The risk model over the classifier's scores
is ml/training/risk.py.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import joblib
import numpy as np
import polars as pl

from ml.taxonomy import POLICIES, VIOLATING
from ml.training.artifacts import ModelArtifact, new_version
from ml.training.calibration import fit_policy_calibration
from ml.training.dataset import held_out_texts, label_array
from ml.training.fit_cache import FitCache
from ml.training.labels import AS_GIVEN, LabelTreatment, training_rows
from ml.training.metrics import macro_pr_auc, pr_auc_by_policy
from ml.training.text_classifier import (
    ClassifierParams,
    DesignCache,
    LinearTextClassifier,
    TextFeatureCache,
    TextMatrix,
    group_folds,
    run_fits,
)

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

    def votes(self) -> np.ndarray:
        """bool [members, POLICIES]: which member votes on which policy."""
        return np.stack([m.votes() for m in self.members])

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


def combine(probas: list[np.ndarray], votes: np.ndarray | None) -> np.ndarray:
    """Per policy, the mean probability of the members that vote on it; rows sum to one over POLICIES.
    `votes` bool [members, POLICIES] (None: every member votes on every policy)."""
    votes = np.ones((len(probas), len(POLICIES)), bool) if votes is None else votes
    weight = votes[:, None, :].astype(np.float64)
    p = (np.stack(probas) * weight).sum(axis=0) / weight.sum(axis=0)
    return p / p.sum(axis=1, keepdims=True)


class EnsembleTextClassifier:
    """A fitted recipe: its members' probabilities combined per policy (`combine`)."""

    # bool [members, POLICIES]; None: every member votes on every policy (and classifiers pickled
    # before members voted per policy, which have no such attribute, read it from here).
    votes: np.ndarray | None = None

    def __init__(self, members: list[LinearTextClassifier], votes: np.ndarray | None = None):
        self.members = members
        self.votes = votes

    def proba(self, x: TextMatrix) -> np.ndarray:
        return combine([m.proba(x) for m in self.members], self.votes)


@dataclass
class FitPlan:
    """How fits run: the text features of every row they may read, the threads to fit on, and the
    fit cache (None: fit everything afresh)."""

    features: TextFeatureCache
    cache: FitCache | None = None
    threads: int | None = None


def _distinct(members) -> list[RecipeMember]:
    return list(dict.fromkeys(members))


def fit_members(
    members: list[RecipeMember],
    training_set: pl.DataFrame,
    issues: pl.DataFrame | None,
    plan: FitPlan,
    subset: str,
) -> dict[RecipeMember, LinearTextClassifier]:
    """Fit each distinct member on the train split of `training_set` (which rows of the dataset it
    holds: `subset`, part of the cache key), every one-vs-rest model of every member in one pool."""
    out: dict[RecipeMember, LinearTextClassifier] = {}
    keys = {m: plan.cache.key(m, subset, "model") for m in _distinct(members)} if plan.cache else {}
    todo = []
    for member in _distinct(members):
        cached = plan.cache.get(keys[member]) if plan.cache else None
        if cached is not None:
            out[member] = cached
        else:
            todo.append(member)
    jobs, designs = [], {}
    for member in todo:
        rows = training_rows(training_set, member.treatment, issues)
        x = plan.features.rows(rows)
        # Members reading the same rows in the same order share their design matrices.
        order = hash(rows["text_hash"].to_numpy().tobytes())
        design = designs.setdefault(order, DesignCache(x))
        model = LinearTextClassifier(member.params)
        jobs += model.fit_jobs(x, label_array(rows), rows["weight"].to_numpy(), design)
        out[member] = model
    run_fits(jobs, plan.threads)
    for member in todo:
        if plan.cache:
            plan.cache.put(keys[member], out[member])
    return out


def held_out_probas(
    members: list[RecipeMember],
    training_set: pl.DataFrame,
    issues: pl.DataFrame | None,
    plan: FitPlan,
    subset: str,
    held: pl.DataFrame,
) -> dict[RecipeMember, np.ndarray]:
    """Each distinct member's probabilities on the `held` rows, fitted on the train split of
    `training_set` (`subset` names those rows); cached as probabilities, not models."""
    out: dict[RecipeMember, np.ndarray] = {}
    keys = {m: plan.cache.key(m, subset, "proba") for m in _distinct(members)} if plan.cache else {}
    for member in _distinct(members):
        cached = plan.cache.get(keys[member]) if plan.cache else None
        if cached is not None and len(cached) == held.height:
            out[member] = cached
    missing = [m for m in _distinct(members) if m not in out]
    if missing:
        x = plan.features.rows(held)
        fitted = fit_members(missing, training_set, issues, FitPlan(plan.features, None, plan.threads), subset)
        for member, model in fitted.items():
            out[member] = model.proba(x)
            if plan.cache:
                plan.cache.put(keys[member], out[member])
    return out


def fit_recipe(
    recipe: ClassifierRecipe, training_set: pl.DataFrame, issues: pl.DataFrame | None, plan: FitPlan | None = None
) -> EnsembleTextClassifier:
    """Fit every member of `recipe` on the train split of `training_set` (uncalibrated)."""
    plan = plan or FitPlan(TextFeatureCache(training_set.filter(pl.col("split") == "train")))
    fitted = fit_members(list(recipe.members), training_set, issues, plan, "train")
    return EnsembleTextClassifier([fitted[m] for m in recipe.members], recipe.votes())


def out_of_fold_proba(
    training_set: pl.DataFrame,
    recipe: ClassifierRecipe,
    plan: FitPlan | None = None,
    seed: int = 42,
    folds: int = OUT_OF_FOLD_FOLDS,
) -> tuple[pl.DataFrame, np.ndarray]:
    """Every train-split label row, and its probabilities from `recipe` fitted on the other folds
    (folds grouped by text hash, so no copy of a text is scored by a model that saw it).

    Exact copies, not near-duplicate families (which the split and leave-one-source-out hold out whole): these
    scores stand in for the classifier at scoring time, which has trained on a ring's earlier rewordings of a
    template, and confident learning reads a template labelled alike by many moderators as corroboration.
    Grouped by family, on the tests' 12-day world, confident learning flagged 56 platform scam labels as
    likely errors instead of 32, 50 of them right by the simulator's truth (against 26), and the classifier
    that down-weights the flags fell behind the baseline on scam (text-only 0.806 against 0.839)."""
    rows = training_rows(training_set, AS_GIVEN)
    plan = plan or FitPlan(TextFeatureCache(rows))
    fold = group_folds(rows["text_hash"].to_numpy(), folds, seed)
    train = training_set.filter(pl.col("split") == "train")
    oof = np.zeros((rows.height, len(POLICIES)))
    for f in range(folds):
        held = fold == f
        held_rows = rows.filter(pl.Series(held))
        remaining = train.filter(~pl.col("text_hash").is_in(held_rows["text_hash"].implode()))
        probas = held_out_probas(
            list(recipe.members), remaining, None, plan, f"fold {f} of {folds}, seed {seed}", held_rows
        )
        oof[held] = combine([probas[m] for m in recipe.members], recipe.votes())
    return rows, oof


def fit_text_classifier(
    training_set: pl.DataFrame,
    dataset_version: str,
    models_dir: Path,
    issues: pl.DataFrame | None,
    recipe: ClassifierRecipe,
    plan: FitPlan | None = None,
) -> ModelArtifact:
    """Fit `recipe`, calibrate it per policy on the validation texts, and save it (kind = recipe name)."""
    started = time.perf_counter()
    if recipe.uses_label_issues and issues is None:
        raise ValueError(f"recipe {recipe.name} down-weights likely label errors: pass the label_issues table")
    model = fit_recipe(recipe, training_set, issues, plan)
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
    return ModelArtifact(
        recipe.name, version, str(out), dataset_version, {"recipe": recipe.to_dict()}, metrics
    ).write_manifest()
