"""The champion compiled for serving gives the scores of the champion as trained (to 1e-6), on texts
neither model saw, for each kind it compiles: the content classifier ensemble, the baseline, and a
risk model stacked on the classifier (rows with and without platform context)."""

import shutil
from pathlib import Path

import lightgbm as lgb
import numpy as np
import polars as pl
import pytest

from ml.scoring import load_model, score_frame
from ml.scoring.compiled import CompiledScorer
from ml.taxonomy import POLICIES
from ml.training.artifacts import PROBA_COLUMNS, ModelArtifact, classifier_alone, new_version
from ml.training.dataset import label_array
from ml.training.matrix import risk_features
from ml.training.scorer import Scorer
from tests.helpers import labelled_training_frame, text_classifier_candidate

CONTEXT = ["surface", "account_age_days", "follower_count", "verified", "prior_posts", "prior_reports_received"]


@pytest.fixture(scope="module")
def models(pool, tmp_path_factory) -> Path:
    """A content classifier and its baseline, and a small LightGBM risk model stacked on the classifier
    (fitted in process with a few rounds: the compiled path only needs a real booster to agree with)."""
    models = tmp_path_factory.mktemp("compiled") / "models"
    frame, _ = labelled_training_frame(pool, seed=21, days=6, rows=2000)
    classifier, _ = text_classifier_candidate(frame, models)
    inputs = risk_features(frame, Scorer(classifier).predict_proba(frame.select("text")))
    booster = lgb.train(
        {"objective": "multiclass", "num_class": len(POLICIES), "num_threads": 1, "verbose": -1},
        lgb.Dataset(inputs, label_array(frame)),
        num_boost_round=5,
    )
    version = new_version("risk_model")
    (models / version).mkdir()
    booster.save_model(str(models / version / "model.txt"))
    params = {"content_classifier": classifier.version, "content_classifier_dataset_version": "test"}
    ModelArtifact("risk_model", version, str(models / version), "test", params, {}, 1.3).write_manifest()
    classifier_alone(classifier, models, instead_of=version)
    # Actions need operating points: the classifier's serve for the others here.
    points = Path(classifier.path, "operating_points.json")
    for d in models.iterdir():
        if d.is_dir() and not (d / "operating_points.json").exists():
            shutil.copy(points, d)
    return models


@pytest.fixture(scope="module")
def held_out(pool) -> pl.DataFrame:
    """Texts from another simulated world (other seed): not in any model's training rows. A few rows
    lose their context (the classifier answers them), one text is empty and one repeats."""
    frame, _ = labelled_training_frame(pool, seed=97, days=3, rows=600)
    frame = frame.select("text", *CONTEXT)
    no_context = pl.int_range(pl.len()) % 5 == 0
    frame = frame.with_columns(pl.when(no_context).then(None).otherwise(pl.col(c)).alias(c) for c in CONTEXT)
    return pl.concat([frame, frame.head(3).with_columns(pl.lit("").alias("text")), frame.head(1)])


def artifact_dirs(models: Path) -> dict[str, Path]:
    return {ModelArtifact.read(d).kind: d for d in models.iterdir() if (d / "artifact.json").exists()}


@pytest.mark.parametrize("kind", ["content_classifier", "baseline", "risk_model", "classifier_alone"])
def test_compiled_scores_equal_the_trained_scorer(models, held_out, kind):
    directory = artifact_dirs(models)[kind]
    compiled, trained = load_model(directory), load_model(directory, compiled=False)
    assert isinstance(compiled.scorer, CompiledScorer) and isinstance(trained.scorer, Scorer)
    for frame in (held_out, held_out.select("text")):
        a, b = score_frame(compiled, frame), score_frame(trained, frame)
        assert a.height == b.height == frame.height
        np.testing.assert_allclose(a.select(PROBA_COLUMNS).to_numpy(), b.select(PROBA_COLUMNS).to_numpy(), atol=1e-6)
        assert a["action"].to_list() == b["action"].to_list()
        # Scores mean something: not all alike, and probabilities.
        proba = a.select(PROBA_COLUMNS).to_numpy()
        assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-6) and proba.std(axis=0).max() > 0.01


def test_one_request_scores_as_in_a_batch(models, held_out):
    """The HTTP service scores one item, or a micro-batch of several requests, through the same call as
    batch scoring: a row's scores do not depend on what it is scored beside."""
    champion = load_model(artifact_dirs(models)["risk_model"])
    whole = score_frame(champion, held_out).select(PROBA_COLUMNS).to_numpy()
    for i in (0, 5, 17, held_out.height - 1):
        alone = score_frame(champion, held_out.slice(i, 1)).select(PROBA_COLUMNS).to_numpy()
        np.testing.assert_allclose(alone[0], whole[i], atol=1e-6)


def test_the_classifier_alone_answers_every_row_with_its_classifier_whatever_the_context(models, held_out):
    """Deployed in place of a pair that did not earn its place, the classifier scores rows with platform context
    as it scores their texts alone; the pair it stands in for does not (its booster reads the context)."""
    dirs = artifact_dirs(models)
    alone, classifier, pair = (load_model(dirs[k]) for k in ("classifier_alone", "content_classifier", "risk_model"))
    assert alone.scorer.artifact.params["instead_of"] == pair.version
    with_context = score_frame(alone, held_out).select(PROBA_COLUMNS).to_numpy()
    text_only = score_frame(classifier, held_out.select("text")).select(PROBA_COLUMNS).to_numpy()
    np.testing.assert_allclose(with_context, text_only, atol=1e-9)
    paired = score_frame(pair, held_out).select(PROBA_COLUMNS).to_numpy()
    assert np.abs(paired - text_only).max() > 0.01
