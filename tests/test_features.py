"""Feature builds: point-in-time correctness, ring detection, quality checks, split hygiene."""

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from ml.features.author import author_features
from ml.features.build import RANGES, SCHEMAS, campaign_features, content_features, scoring_frame
from ml.features.network import account_components, network_features
from ml.features.pointintime import count_before
from ml.features.quality import check_coverage, check_ranges, check_schema
from ml.simulator import simulate_days
from ml.training.dataset import SPLITS, assign_splits

DAYS = 10


@pytest.fixture(scope="module")
def raw(pool, small_config):
    c = small_config
    return simulate_days(c, pool, c.start_date, c.start_date + timedelta(days=DAYS - 1))


def _history(raw, cutoff: datetime | None):
    def upto(name, col):
        return raw[name] if cutoff is None else raw[name].filter(pl.col(col) <= cutoff)

    content = upto("content", "created_at")
    return (
        author_features(
            content,
            raw["users"],
            upto("reports", "reported_at"),
            upto("decisions", "decided_at"),
            upto("appeals", "resolved_at"),
        ),
        network_features(content, raw["users"], upto("decisions", "decided_at")),
        campaign_features(content, upto("decisions", "decided_at"), upto("appeals", "resolved_at")),
    )


def test_features_at_t_are_unchanged_when_events_after_t_are_added(raw, small_config):
    cutoff = datetime.combine(small_config.start_date + timedelta(days=5), datetime.min.time()) + timedelta(hours=13)
    early_tables, full_tables = _history(raw, cutoff), _history(raw, None)
    author_full, campaign_full = full_tables[0], full_tables[2]
    early_ids = raw["content"].filter(pl.col("created_at") <= cutoff)["content_id"]
    assert len(early_ids) > 1000
    for early, full in zip(early_tables, full_tables, strict=True):
        a = early.filter(pl.col("content_id").is_in(early_ids.implode())).sort("content_id")
        b = full.filter(pl.col("content_id").is_in(early_ids.implode())).sort("content_id")
        assert a.equals(b)
    # and the history is not trivially empty: later content does see earlier events
    assert author_full["prior_enforcements"].max() > 0 and author_full["prior_reports_received"].max() > 0
    assert campaign_full["copies_removed_before"].max() > 0 and campaign_full["artifact_removed_before"].max() > 0


def test_a_day_scored_alone_gets_the_features_it_gets_in_the_whole_window(raw, small_config):
    """The daily schedule scores one day; a backfill, the launch backtest and training see many. An item's
    author and network features must not depend on which other items are scored with it."""
    day = small_config.start_date + timedelta(days=6)
    tables = [raw[t] for t in ("users", "reports", "decisions", "appeals")]
    whole = scoring_frame(raw["content"], *tables)
    todays = raw["content"].filter(pl.col("created_at").dt.date() == day)
    alone = scoring_frame(todays, *tables, history=raw["content"])
    expected = whole.filter(pl.col("content_id").is_in(todays["content_id"].implode()))
    assert alone.height == todays.height
    assert alone.sort("content_id").equals(expected.sort("content_id"))
    # Without the history, the day would not know its authors' earlier posts, reports and removals, nor
    # the earlier copies of its posts.
    blind = scoring_frame(todays, *tables).sort("content_id")
    assert (blind["prior_posts"] < alone.sort("content_id")["prior_posts"]).any()
    assert (blind["copies_before"] < alone.sort("content_id")["copies_before"]).any()


def test_count_before_excludes_the_moment_itself_and_respects_windows():
    keys = np.array([0, 0, 0, 1])
    times = np.array([10, 20, 30, 20])
    got = count_before(keys, times, np.array([0, 0, 0, 1, 2]), np.array([20, 31, 31, 21, 50]))
    assert got.tolist() == [1, 3, 3, 1, 0]
    windowed = count_before(keys, times, np.array([0]), np.array([31]), window_seconds=15)
    assert windowed.tolist() == [2]


def test_network_features_find_a_planted_ring():
    t0 = datetime(2026, 10, 1)
    ring = [f"r{i}" for i in range(5)]
    users = pl.DataFrame(
        {
            "user_id": list(range(1, 9)),
            "signup_at": [t0 - timedelta(days=1)] * 8,
            "device_fingerprint": ["devA", "devA", "devB", "devB", "devB", "own6", "own7", "own8"],
            "ip_fingerprint": ["ip1", "ip2", "ip2", "ip9", "ip9", "ip6", "ip7", "ip8"],
        }
    )
    comp = account_components(users)
    ring_ids = comp.filter(pl.col("user_id") <= 5)["component_id"].unique()
    assert len(ring_ids) == 1 and len(ring) == 5
    assert comp.filter(pl.col("user_id") > 5)["component_id"].n_unique() == 3
    content = pl.DataFrame(
        {
            "content_id": [100, 101, 102],
            "author_id": [1, 6, 5],
            "created_at": [t0 + timedelta(hours=h) for h in (1, 2, 5)],
        }
    )
    decisions = pl.DataFrame({"content_id": [100], "action": ["remove"], "decided_at": [t0 + timedelta(hours=3)]})
    nf = network_features(content, users, decisions).sort("content_id")
    assert nf["component_size"].to_list() == [5, 1, 5]
    assert nf["shares_fingerprints"].to_list() == [True, False, True]
    # Member 1 was enforced at hour 3: visible at hour 5, not at hour 1.
    assert nf["component_enforced_share"].to_list() == pytest.approx([0.0, 0.0, 0.2])


def test_feature_tables_match_their_declared_schema_and_ranges(raw):
    author, network, campaign = _history(raw, None)
    for name, frame in (
        ("content_features", content_features(raw["content"])),
        ("author_features", author),
        ("network_features", network),
        ("campaign_features", campaign),
    ):
        assert check_schema(frame, SCHEMAS[name]).passed, name
        assert check_ranges(frame, RANGES[name]).passed, name
        assert check_coverage(frame, raw["content"].height, raw["content"]["content_id"].head(50)).passed


def test_quality_checks_name_what_is_wrong(raw):
    frame = content_features(raw["content"])
    broken = frame.with_columns(pl.lit(-1, pl.Int32).alias("url_count")).drop("emoji_count")
    assert "missing column emoji_count" in check_schema(broken, SCHEMAS["content_features"]).message
    assert "url_count has" in check_ranges(broken, {"url_count": (0, None)}).message
    cov = check_coverage(frame.head(10), frame.height, frame["content_id"].tail(5))
    assert not cov.passed and "5 of 5 labelled content items have no feature row" in cov.message


def test_no_text_hash_appears_in_two_splits():
    rng = np.random.default_rng(1)
    n = 3000
    days = [datetime(2026, 10, 1).date() + timedelta(days=int(d)) for d in rng.integers(0, 20, n)]
    distinct = [f"{h:016x}" for h in rng.integers(0, 2**62, 1500, dtype=np.int64)]
    hashes = [distinct[i] for i in rng.integers(0, 1500, n)]  # many duplicates, like reposted spam
    labels = pl.DataFrame(
        {
            "content_id": np.arange(n),
            "created_date": days,
            "text_hash": hashes,
            "eval_bucket": [int(h[:8], 16) % 100 for h in hashes],
            "label": ["spam"] * n,
        }
    )
    split, removed = assign_splits(labels)
    homes = split.group_by("text_hash").agg(pl.col("split").n_unique())
    assert homes["split"].max() == 1
    assert set(split["split"].unique()) == set(SPLITS)
    assert split.height + sum(removed.values()) == n  # every removed row is accounted for
    train_days = split.filter(pl.col("split") == "train")["created_date"]
    test_days = split.filter(pl.col("split") == "test")["created_date"]
    assert train_days.max() < test_days.min()


def test_near_duplicates_share_a_family_a_split_and_leave_together():
    """A ring's reworded copies of a corpus text (another hash each) are one family with the original: one
    split, whatever their hashes' own buckets say, and holding the original out holds them all out."""
    from ml.campaigns.links import text_families, text_signatures
    from ml.matching.text import TextMatchParams
    from ml.ring_campaigns import campaign_texts
    from ml.text import eval_bucket, normalise, text_hash
    from ml.training.dataset import FAMILY, without_families

    original = "URGENT! We are trying to contact U. Todays draw shows that you have won a 800 prize. Call 09050003091"
    variants = campaign_texts(np.random.default_rng(3), original, "varied", 12)
    others = [
        "does anyone know a good recipe for a quick vegetable curry on a weeknight",
        "traffic on the ring road was terrible this morning, took an hour to get in",
    ]
    texts = [original, *variants, *others]
    hashes = [text_hash(normalise(t)) for t in texts]
    labels = pl.DataFrame(
        {
            "label_id": [f"ref:{i}" for i in range(len(texts))],
            "content_id": [None] * len(texts),
            "created_date": [None] * len(texts),
            "text": texts,
            "text_hash": hashes,
            "eval_bucket": [eval_bucket(h) for h in hashes],
            "label": ["scam"] * (len(texts) - 2) + ["benign"] * 2,
        },
        schema_overrides={"content_id": pl.Int64, "created_date": pl.Date},
    )
    assert len({eval_bucket(h) for h in hashes[: len(texts) - 2]}) > 3  # by hash alone they would scatter
    params = TextMatchParams()
    families = text_families(text_signatures(labels, None, params), params)
    split, _ = assign_splits(labels, families=families)
    ring = split.head(len(texts) - 2)
    assert ring[FAMILY].n_unique() == 1 and ring["split"].n_unique() == 1
    assert split.tail(2)[FAMILY].to_list() == hashes[-2:]  # unrelated texts are their own families
    left = without_families(split, split.head(1))
    assert left["text"].to_list() == others


def test_a_model_trained_before_a_dense_column_existed_reads_the_columns_it_knows():
    # A deployed model keeps scoring after an upgrade appends features: it reads the first columns.
    from ml.training.matrix import DENSE_COLUMNS, dense_columns_of, dense_matrix

    frame = pl.DataFrame(
        {"text": ["win a prize now", "hi"], "account_age_days": [3.0, None], "bank_text_jaccard": [0.8, 0.0]}
    )
    full = dense_matrix(frame)
    older = dense_matrix(frame, dense_columns_of(len(DENSE_COLUMNS) - 2))
    assert full.shape == (2, len(DENSE_COLUMNS)) and older.shape == (2, len(DENSE_COLUMNS) - 2)
    np.testing.assert_array_equal(older, full[:, :-2])
    assert full[0, DENSE_COLUMNS.index("bank_text_jaccard")] == pytest.approx(0.8)
    with pytest.raises(ValueError, match="this code knows"):
        dense_columns_of(len(DENSE_COLUMNS) + 1)
