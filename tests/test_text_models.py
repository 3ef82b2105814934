"""The text-first design on real corpus text: split hygiene across label sources, label-noise
detection against planted flips, the gates that stop a candidate that did not learn text, and
`trustlake labels import`."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ml.corpora import load_records
from ml.evaluation.evaluate import evaluate_text_model
from ml.reference import import_labels, reference_frame
from ml.taxonomy import POLICIES
from ml.text import eval_bucket
from ml.training.content import BASELINE_RECIPE, CONTENT_CLASSIFIER_RECIPE, fit_text_classifier
from ml.training.dataset import assign_splits, dataset_version, label_array
from ml.training.label_noise import training_label_issues
from tests.helpers import DEFAULT_CORPORA, HAS_CORPORA, run_cli

pytestmark = pytest.mark.skipif(not HAS_CORPORA, reason="needs the labelled corpora")


@pytest.fixture(scope="module")
def reference_labels_frame() -> pl.DataFrame:
    """Reference records shaped like training_labels rows (no platform columns), a fixed sample."""
    records, _ = load_records(DEFAULT_CORPORA)
    ref = reference_frame(records).sample(n=16_000, seed=3)
    return ref.select(
        (pl.lit("reference:") + pl.col("source") + ":" + pl.col("record_id")).alias("label_id"),
        pl.lit(None, pl.Int64).alias("content_id"),
        "text",
        "text_hash",
        pl.col("text_hash").map_elements(eval_bucket, return_dtype=pl.Int64).alias("eval_bucket"),
        pl.col("policy").alias("label"),
        pl.lit("reference").alias("label_source"),
        "source",
        "confidence",
        pl.lit(None, pl.Date).alias("created_date"),
    ).sort("label_id")


def platform_copies(ref: pl.DataFrame, n: int, seed: int) -> pl.DataFrame:
    """Platform labels on reposted reference texts, spread over 20 days (a moderator-label stand-in)."""
    rng = np.random.default_rng(seed)
    rows = ref.sample(n=n, seed=seed, with_replacement=True)
    offsets = pl.Series("offset", rng.integers(0, 20, n))
    return (
        rows.with_columns(offsets)
        .with_columns(
            (pl.lit("content:") + pl.int_range(pl.len()).cast(pl.String)).alias("label_id"),
            pl.int_range(pl.len()).cast(pl.Int64).alias("content_id"),
            pl.lit("moderator_decision").alias("label_source"),
            pl.lit("platform").alias("source"),
            (pl.date(2026, 10, 1) + pl.duration(days=pl.col("offset"))).alias("created_date"),
        )
        .drop("offset")
    )


def test_no_evaluation_bucket_text_trains_from_any_source(reference_labels_frame):
    labels = pl.concat([reference_labels_frame, platform_copies(reference_labels_frame, 4000, 1)])
    split, removed = assign_splits(labels)
    train = split.filter(pl.col("split") == "train")
    assert train["eval_bucket"].max() < 80
    assert set(train["label_source"].unique()) == {"reference", "moderator_decision"}
    # A text and all its copies, whatever their source, sit in exactly one split.
    assert split.group_by("text_hash").agg(pl.col("split").n_unique()).filter(pl.col("split") > 1).height == 0
    # Platform rows train only from the earlier days and are evaluated only on the later ones.
    plat = split.filter(pl.col("content_id").is_not_null())
    assert (
        plat.filter(pl.col("split") == "train")["created_date"].max()
        < plat.filter(pl.col("split") != "train")["created_date"].min()
    )
    assert removed["platform_rows_removed_late_train_text"] > 0


@pytest.fixture(scope="module")
def training_frame(reference_labels_frame) -> pl.DataFrame:
    split, _ = assign_splits(reference_labels_frame)
    return split


def test_confident_learning_finds_planted_label_flips(training_frame):
    rows = training_frame.filter(pl.col("split") == "train")
    rng = np.random.default_rng(0)
    y = label_array(rows)
    flip = rng.random(len(y)) < 0.08
    noisy = y.copy()
    noisy[flip] = (y[flip] + rng.integers(1, len(POLICIES), flip.sum())) % len(POLICIES)
    planted = rows.with_columns(pl.Series("label", np.array(POLICIES)[noisy]))
    issues = training_label_issues(planted, CONTENT_CLASSIFIER_RECIPE)
    assert issues["label_id"].to_list() == planted["label_id"].to_list()  # one verdict per label row, in order
    found = issues["is_label_issue"].to_numpy()
    precision = (found & flip).sum() / max(found.sum(), 1)
    recall = (found & flip).sum() / flip.sum()
    # Measured on this sample: precision ~0.6, recall ~0.8 (the corpora carry their own label noise,
    # so some "false positives" are real errors). Random flagging at this rate would score ~0.08.
    assert precision > 0.4 and recall > 0.5, (precision, recall)


def test_a_candidate_that_did_not_learn_text_fails_its_gate(training_frame, tmp_path):
    version = dataset_version(training_frame)
    baseline = fit_text_classifier(training_frame, version, tmp_path, None, BASELINE_RECIPE)
    # Text shuffled against labels in training: whatever the model learns, it is not the text's policy.
    train = training_frame.filter(pl.col("split") == "train")
    shuffled = pl.concat(
        [
            train.with_columns(train["text"].sample(fraction=1.0, shuffle=True, seed=9).alias("text")),
            training_frame.filter(pl.col("split") != "train"),
        ]
    )
    candidate = fit_text_classifier(
        shuffled, version, tmp_path, None, CONTENT_CLASSIFIER_RECIPE.ignoring_label_issues()
    )
    ev = evaluate_text_model(candidate, training_frame, baseline, None, None, run_loso=False)
    gates = {g.name: g for g in ev.gates}
    assert not gates["beats_baseline_text_only"].passed
    assert "vs baseline" in gates["beats_baseline_text_only"].message
    assert not gates["non_inferior_on_every_held_out_source"].passed  # not measured: cannot be promoted


def test_label_handling_beats_the_baseline_when_moderator_labels_are_noisy(reference_labels_frame, tmp_path):
    # Platform copies of reference texts whose moderator labels are wrong a third of the time, as
    # confident as the platform prior says. The baseline trains on every label as given; the
    # content classifier weights by confidence and leaves out the labels confident learning flags.
    rng = np.random.default_rng(4)
    copies = platform_copies(reference_labels_frame, 12_000, 2)
    wrong = rng.random(copies.height) < 0.33
    noisy = np.where(
        wrong,
        (label_array(copies) + rng.integers(1, len(POLICIES), copies.height)) % len(POLICIES),
        label_array(copies),
    )
    copies = copies.with_columns(pl.Series("label", np.array(POLICIES)[noisy]), pl.lit(0.67).alias("confidence"))
    frame, _ = assign_splits(pl.concat([reference_labels_frame, copies]))
    issues = training_label_issues(frame, CONTENT_CLASSIFIER_RECIPE)
    assert issues.filter(pl.col("is_label_issue") & pl.col("label_id").str.starts_with("content:")).height > 500
    version = dataset_version(frame)
    baseline = fit_text_classifier(frame, version, tmp_path, None, BASELINE_RECIPE)
    candidate = fit_text_classifier(frame, version, tmp_path, issues, CONTENT_CLASSIFIER_RECIPE)
    ev = evaluate_text_model(candidate, frame, baseline, None, issues, run_loso=False)
    gate = {g.name: g for g in ev.gates}["beats_baseline_text_only"]
    assert gate.passed, gate.message


def test_labels_import_quarantines_bad_rows_and_lands_good_ones(tmp_path):
    src = tmp_path / "export.csv"
    src.write_bytes(
        b"body,verdict\n"
        b"buy cheap followers now www.example.com,SPAM\n"
        b"see you at lunch,OK\n"
        b",SPAM\n"  # empty text
        b"you are a pathetic loser,HARASS\n"
        b"claim your prize today,\n"  # missing label
        b"totally normal text,UNKNOWN_TAG\n"  # a label with no policy
        b"caf\xe9 talk,OK\n"
    )  # not UTF-8
    mapping = tmp_path / "map.yaml"
    mapping.write_text("SPAM: spam\nOK: benign\nHARASS: harassment\n")
    home = tmp_path / "home"

    def import_export(mapping):
        args = ("--text-column", "body", "--label-column", "verdict", "--mapping", str(mapping))
        return run_cli(home, "labels", "import", str(src), *args, "--source", "team_export")

    result = import_export(mapping)
    assert result.returncode == 0, result.stderr
    assert "label 'UNKNOWN_TAG' has no policy in the mapping" in result.stderr
    landed = pl.read_parquet(home / "lake" / "reference" / "team_export" / "part-0.parquet")
    assert sorted(landed["policy"].to_list()) == ["benign", "harassment", "spam"]
    quarantined = pl.read_csv(next((home / "lake" / "quarantine" / "labels").glob("team_export-*.csv")))
    assert dict(zip(quarantined["row"].to_list(), quarantined["reason"].to_list())) == {
        3: "empty text",
        5: "missing label",
        6: "label 'UNKNOWN_TAG' has no policy in the mapping",
        7: "text is not valid UTF-8",
    }
    bad_map = tmp_path / "bad.yaml"
    bad_map.write_text("SPAM: junk\n")
    refused = import_export(bad_map)
    assert refused.returncode == 2 and "label 'SPAM' maps to 'junk', which is not a policy" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_imported_labels_keep_every_good_row_in_the_library_call(tmp_path):
    src = tmp_path / "x.parquet"
    pl.DataFrame({"t": ["a b c", "d e f", ""], "l": ["spam", "benign", "spam"]}).write_parquet(src)
    result = import_labels(src, "t", "l", "mine")
    assert result.good.height == 2 and result.rejected["reason"].to_list() == ["empty text"]
