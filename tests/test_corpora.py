"""Corpus parsing, label mapping, deduplication and the built-in fallback."""

import polars as pl
import pytest

from ml.corpora import builtin_pool, deduplicate, load_text_pool, read_corpora
from ml.taxonomy import POLICIES
from ml.text import eval_bucket, normalise, text_hash
from tests.helpers import DEFAULT_CORPORA, HAS_CORPORA

needs_corpora = pytest.mark.skipif(not HAS_CORPORA, reason="corpora directory not present")

# Published counts (shared/data/corpora/SOURCES.md).
EXPECTED_ROWS = {
    "davidson_hate_offensive": 24_783,
    "olid_offenseval2019": 13_240,
    "sms_spam_collection": 5_574,
    "sms_smishing": 5_971,
    "youtube_spam": 1_586,
}


@pytest.fixture(scope="module")
def records():
    return read_corpora(DEFAULT_CORPORA)


@needs_corpora
def test_every_corpus_parses_to_its_published_row_count(records):
    counts = dict(records.group_by("corpus").len().iter_rows())
    assert counts == EXPECTED_ROWS


@needs_corpora
def test_labels_map_to_the_policy_taxonomy_with_published_class_counts(records):
    by = dict(
        records.group_by("corpus", "policy")
        .len()
        .select(pl.concat_str("corpus", "policy", separator="/"), "len")
        .iter_rows()
    )
    assert by["davidson_hate_offensive/hate_speech"] == 1_430
    assert by["davidson_hate_offensive/harassment"] == 19_190
    assert by["olid_offenseval2019/harassment"] == 4_400
    assert by["sms_spam_collection/spam"] == 747
    # Smishing labels are spelled four ways; all land after case folding.
    assert by["sms_smishing/scam"] == 638 and by["sms_smishing/spam"] == 489
    assert set(records["policy"].unique()) == set(POLICIES)


@needs_corpora
def test_smishing_copies_of_sms_spam_keep_the_more_specific_scam_label(records):
    pool = deduplicate(records)
    smish = records.filter(pl.col("corpus") == "sms_smishing", pl.col("policy") == "scam")
    hashes = {text_hash(normalise(t)) for t in smish["text"].to_list()}
    kept = pool.filter(pl.col("text_hash").is_in(list(hashes)))
    assert kept.height > 0
    assert kept["policy"].unique().to_list() == ["scam"]
    assert kept["label_conflict"].sum() > 0  # some were 'spam' in the SMS Spam Collection


@needs_corpora
def test_deduplicated_pool_has_one_row_per_normalised_text(records):
    pool = deduplicate(records)
    assert pool["text_hash"].n_unique() == pool.height
    assert pool.height < records.height  # 5,025 smishing texts alone are copies
    assert pool["n_copies"].sum() <= records.height


def test_conflict_rule_prefers_the_higher_precedence_label():
    records = pl.DataFrame(
        {
            "corpus": ["a", "b", "c", "a", "b"],
            "source_label": ["x"] * 5,
            "policy": ["spam", "scam", "benign", "benign", "harassment"],
            "text": ["WIN a prize now", "win a  PRIZE now ", "win a prize now", "hello", "Hello"],
        }
    )
    pool = deduplicate(records).sort("text_norm")
    assert pool["policy"].to_list() == ["harassment", "scam"]
    assert pool["label_conflict"].to_list() == [True, True]
    assert pool["n_copies"].to_list() == [2, 3]
    assert pool["text"].to_list() == ["hello", "WIN a prize now"]  # first copy seen is kept


def test_duplicates_always_share_an_evaluation_bucket():
    a, b = normalise("Free  ENTRY now!!"), normalise("free entry NOW!!")
    assert a == b and eval_bucket(text_hash(a)) == eval_bucket(text_hash(b))
    buckets = {eval_bucket(text_hash(str(i))) for i in range(2000)}
    assert buckets == set(range(100))


def test_missing_corpora_directory_falls_back_loudly_to_builtin_texts(tmp_path):
    with pytest.warns(UserWarning, match="NO CORPORA DIRECTORY"):
        pool, source = load_text_pool(tmp_path / "nowhere")
    assert source == "builtin"
    assert set(pool["policy"].unique()) == set(POLICIES)
    assert pool["text_hash"].n_unique() == pool.height


def test_builtin_pool_is_deterministic():
    assert builtin_pool(3).equals(builtin_pool(3))
