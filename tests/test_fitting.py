"""How linear fits run: the fast TF-IDF path, fits in threads, shared design matrices, the saved text
features and the fit cache give the numbers the plain way gives; a cache entry is used only when
nothing it depends on changed. And the Ray side of fitting: worker requests fitted to the cluster's
shape, and when the deep text model trains."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from sklearn.metrics import average_precision_score

from ml.corpora import builtin_records
from ml.evaluation.generalisation import bootstrap_macro_pr_auc, leave_one_source_out, scored_policies
from ml.reference import reference_frame
from ml.taxonomy import POLICIES, VIOLATING
from ml.text import eval_bucket
from ml.training.content import BASELINE_RECIPE, CONTENT_CLASSIFIER_RECIPE, FitPlan, fit_recipe, out_of_fold_proba
from ml.training.dataset import label_array, text_split
from ml.training.fit_cache import FitCache
from ml.training.placement import Node, PlacementError, WorkerShape, fit_to_cluster
from ml.training.text_classifier import (
    ClassifierParams,
    LinearTextClassifier,
    TextFeatureCache,
    TextMatrix,
    fitted_idf,
    tfidf,
)
from ml.training.text_model_params import why_not_trained

RECIPE = CONTENT_CLASSIFIER_RECIPE.ignoring_label_issues()  # no label_issues table in these tests


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    """Reference rows of the built-in template texts (one source per style), split by text bucket."""
    rows = reference_frame(builtin_records(per_policy=80))
    return rows.select(
        (pl.lit("ref:") + pl.col("record_id")).alias("label_id"),
        "text",
        "text_hash",
        pl.col("text_hash").alias("text_family"),  # no near-duplicates among the templates: each its own
        pl.col("policy").alias("label"),
        pl.lit("reference").alias("label_source"),
        "source",
        pl.col("confidence").cast(pl.Float64),
        text_split(pl.col("text_hash").map_elements(eval_bucket, return_dtype=pl.Int64), _rule()).alias("split"),
    ).sort("label_id")


def _rule():
    from ml.training.dataset import SplitRule

    return SplitRule()


def test_the_fast_tfidf_gives_the_diagonal_product_numbers(frame):
    counts = TextMatrix.of(frame["text"].to_list()).counts
    idf = fitted_idf(counts)
    tf = counts.copy()
    tf.data = 1.0 + np.log(tf.data)
    from sklearn.preprocessing import normalize

    expected = normalize(tf @ sp.diags(idf)).tocsr()
    got = tfidf(counts, idf).tocsr()
    # Compared sparse: dense, the hashed vocabulary's width makes it gigabytes (45 s of the suite).
    assert got.shape == expected.shape and got.nnz == expected.nnz > 0
    assert abs(got - expected).max() <= 1e-6 * max(abs(expected).max(), 1.0)


def test_the_bootstrap_gives_scikit_learns_average_precision_on_each_resample():
    # Scores rounded to two decimals so ties are many; a policy with few positives is scored only in
    # the resamples that drew enough of them.
    rng = np.random.default_rng(3)
    n = 400
    labels = rng.choice(len(POLICIES), n, p=[0.6, 0.012, 0.2, 0.1, 0.088])
    proba = np.round(rng.dirichlet(np.ones(len(POLICIES)), n) + np.eye(len(POLICIES))[labels] * 0.3, 2)
    draws = [rng.integers(0, n, n) for _ in range(30)]
    counts = np.stack([np.bincount(d, minlength=n) for d in draws])
    fast = bootstrap_macro_pr_auc(labels, proba, set(VIOLATING), counts)
    for got, idx in zip(fast, draws, strict=True):
        y, p = labels[idx], proba[idx]
        aps = [average_precision_score(y == POLICIES.index(q), p[:, POLICIES.index(q)]) for q in scored_policies(y)]
        assert got == pytest.approx(np.mean(aps), abs=1e-12)
    assert 0 < np.isnan(bootstrap_macro_pr_auc(labels, proba, {"hate_speech"}, counts)).sum() < len(draws)


def test_fits_in_threads_give_the_sequential_fit(frame):
    x, y = TextMatrix.of(frame["text"].to_list()), label_array(frame)
    params = ClassifierParams(views=("tfidf", "nb"), signals=True, signal_scale=0.3)
    one = LinearTextClassifier(params).fit(x, y, threads=1)
    two = LinearTextClassifier(params).fit(x, y, threads=2)
    np.testing.assert_array_equal(one.proba(x), two.proba(x))


def test_saved_text_features_read_back_the_same(frame, tmp_path):
    cache = TextFeatureCache(frame)
    loaded = TextFeatureCache.load(cache.save(tmp_path / "text_features.npz"))
    a, b = cache.rows(frame), loaded.rows(frame)
    assert (a.counts != b.counts).nnz == 0
    np.testing.assert_array_equal(a.signals, b.signals)


def test_a_recipe_fitted_through_the_cache_scores_like_one_fitted_afresh(frame, tmp_path):
    plain = fit_recipe(RECIPE, frame, None)
    plan = FitPlan(TextFeatureCache(frame), FitCache(tmp_path, "v1"))
    first = fit_recipe(RECIPE, frame, None, plan)
    assert plan.cache.misses == len(set(RECIPE.members)) and plan.cache.hits == 0
    again = fit_recipe(RECIPE, frame, None, plan)
    assert plan.cache.hits == len(set(RECIPE.members))  # nothing changed: nothing refitted
    x = TextMatrix.of(frame["text"].to_list())
    np.testing.assert_allclose(first.proba(x), plain.proba(x), atol=1e-6)
    np.testing.assert_array_equal(again.proba(x), first.proba(x))


def test_leave_one_source_out_reuses_unchanged_fits_and_refits_changed_ones(frame, tmp_path):
    plan = FitPlan(TextFeatureCache(frame), FitCache(tmp_path, "v1"))
    fresh = leave_one_source_out(RECIPE, BASELINE_RECIPE, frame, None, plan)
    fitted = plan.cache.misses
    cached = leave_one_source_out(RECIPE, BASELINE_RECIPE, frame, None, plan)
    assert plan.cache.misses == fitted and plan.cache.hits == fitted
    assert [s.candidate.macro_pr_auc for s in cached] == [s.candidate.macro_pr_auc for s in fresh]
    assert [s.delta_ci_low for s in cached] == [s.delta_ci_low for s in fresh]
    # Another dataset version is another input: every member is fitted again.
    other = FitPlan(plan.features, FitCache(tmp_path, "v2"))
    leave_one_source_out(RECIPE, BASELINE_RECIPE, frame, None, other)
    assert other.cache.hits == 0 and other.cache.misses == fitted


def test_out_of_fold_scores_through_the_cache_are_the_plain_ones(frame, tmp_path):
    rows, plain = out_of_fold_proba(frame, RECIPE)
    plan = FitPlan(TextFeatureCache(frame), FitCache(tmp_path, "v1"))
    out_of_fold_proba(frame, RECIPE, plan)
    rows_again, cached = out_of_fold_proba(frame, RECIPE, plan)
    assert plan.cache.hits > 0
    assert rows_again["label_id"].to_list() == rows["label_id"].to_list()
    np.testing.assert_allclose(cached, plain, atol=1e-6)


def test_a_member_that_reads_label_issues_needs_their_version(tmp_path):
    cache = FitCache(tmp_path, "v1")
    weighted = CONTENT_CLASSIFIER_RECIPE.members[0]
    assert weighted.treatment.flagged_weight != 1.0
    with pytest.raises(ValueError, match="label issues' version"):
        cache.key(weighted, "train", "model")
    a = FitCache(tmp_path, "v1", issues_version="i1").key(weighted, "train", "model")
    b = FitCache(tmp_path, "v1", issues_version="i2").key(weighted, "train", "model")
    assert a != b
    plain = BASELINE_RECIPE.members[0]  # reads no issues: their version is not part of its key
    assert FitCache(tmp_path, "v1", "i1").key(plain, "train", "model") == cache.key(plain, "train", "model")


def test_only_the_newest_dataset_versions_stay_in_the_cache(tmp_path):
    for version in ("a", "b", "c"):
        FitCache(tmp_path, version).put("k", np.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b", "c"]


def test_worker_requests_fit_the_cluster_shape():
    two_small = [Node("10.0.0.1", 1, 0), Node("10.0.0.2", 1, 0)]
    # A 2-CPU worker can never be placed on two 1-CPU nodes: two 1-CPU workers keep the total.
    assert fit_to_cluster(WorkerShape(1, 2), two_small) == WorkerShape(2, 1)
    assert fit_to_cluster(WorkerShape(1, 2), [Node("h", 8, 0)]) == WorkerShape(1, 2)
    assert fit_to_cluster(WorkerShape(4, 1), two_small) == WorkerShape(2, 1)  # as many as the cluster holds
    with pytest.raises(PlacementError, match="no node has a GPU: 10.0.0.1 with 1 CPU, 0 GPU"):
        fit_to_cluster(WorkerShape(1, 1, gpus_per_worker=1), two_small)
    with pytest.raises(PlacementError, match="no alive node"):
        fit_to_cluster(WorkerShape(1, 1), [])


def test_the_deep_text_model_trains_on_a_gpu_or_when_asked():
    assert why_not_trained("auto", has_gpu=True) is None
    assert "no GPU" in why_not_trained("auto", has_gpu=False)
    assert why_not_trained("on", has_gpu=False) is None
    assert why_not_trained("off", has_gpu=True) == "TRUSTLAKE_TEXT_MODEL_TRAINING=off"
    with pytest.raises(ValueError, match="expected one of auto, on, off"):
        why_not_trained("sometimes", has_gpu=False)
