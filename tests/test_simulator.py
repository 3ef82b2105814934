"""The platform simulator: determinism, realism properties, and per-day regeneration."""

from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from ml.matching.text import find_artifacts
from ml.raw.contracts import RAW_TABLES
from ml.simulator import partition_date, simulate_days
from ml.world import RING_STYLES, SimConfig, build_world, ring_styles

DAYS = 14


@pytest.fixture(scope="module")
def tables(pool, small_config):
    c = small_config
    return simulate_days(c, pool, c.start_date, c.start_date + timedelta(days=DAYS - 1))


def test_same_seed_gives_identical_tables(pool, small_config, tables):
    again = simulate_days(
        small_config, pool, small_config.start_date, small_config.start_date + timedelta(days=DAYS - 1)
    )
    for name in tables:
        assert tables[name].equals(again[name]), name


def test_different_seeds_give_different_platforms(pool, small_config, tables):
    other = SimConfig(
        seed=small_config.seed + 1, users=small_config.users, content_per_day=small_config.content_per_day
    )
    day = other.start_date
    a = tables["content"].filter(pl.col("created_at").dt.date() == day)
    b = simulate_days(other, pool, day, day)["content"]
    assert not set(a["content_id"]).intersection(b["content_id"])
    assert a["text_hash"].to_list() != b["text_hash"].to_list()


def test_a_day_regenerated_alone_equals_its_slice_of_a_long_run(pool, small_config, tables):
    day = small_config.start_date + timedelta(days=9)
    alone = simulate_days(small_config, pool, day, day)
    for name in RAW_TABLES:
        part = partition_date(name, tables[name], small_config)
        assert alone[name].equals(tables[name].filter(part == day)), name


def test_moving_the_first_day_only_moves_the_timestamps(pool, small_config, tables):
    """The platform's window is pinned at install time (today - TRUSTLAKE_DAYS): the simulator is
    day-index based, so a later first day gives the same platform shifted in time."""
    from dataclasses import replace

    shift = timedelta(days=61)
    moved = replace(small_config, start_date=small_config.start_date + shift)
    later = simulate_days(moved, pool, moved.start_date, moved.start_date + timedelta(days=DAYS - 1))
    for name in RAW_TABLES:
        times = [c for c, t in tables[name].schema.items() if isinstance(t, pl.Datetime)]
        assert times, name
        back = later[name].with_columns(pl.col(c) - shift for c in times)
        assert back.equals(tables[name]), name


def test_every_row_lands_in_the_partition_of_its_own_event_time(small_config, tables):
    for name in RAW_TABLES:
        part = partition_date(name, tables[name], small_config)
        assert part.min() >= small_config.start_date
        assert part.max() <= small_config.start_date + timedelta(days=DAYS - 1)


def test_platform_tables_hide_true_labels_and_archetypes(tables):
    for name in RAW_TABLES:
        cols = set(tables[name].columns)
        assert not cols & {"true_policy", "archetype", "ring_id", "author_archetype"}, name
    assert "gold_policy" in tables["qa_audits"].columns  # the one place gold labels appear


def test_violating_content_is_reported_far_more_than_benign(tables):
    truth = tables["content_truth"]
    reported = set(tables["reports"]["content_id"])
    rate = (
        truth.with_columns(reported=pl.col("content_id").is_in(list(reported)))
        .group_by(pl.col("true_policy") != "benign")
        .agg(pl.col("reported").mean())
    )
    rates = dict(rate.iter_rows())
    assert rates[True] > 5 * rates[False]
    assert 0 < rates[False] < 0.1  # benign content draws some false reports and brigades
    assert rates[True] < 0.9  # and many violations go unreported


def test_ring_members_share_device_or_ip_fingerprints(small_config):
    users = build_world(small_config).users
    rings = users.filter(pl.col("ring_id") >= 0)
    per_ring = rings.group_by("ring_id").agg(
        pl.len().alias("members"), pl.col("device_fingerprint").n_unique().alias("devices")
    )
    big = per_ring.filter(pl.col("members") >= 3)
    assert big.height > 0
    assert (big["devices"] <= 2).all()
    ordinary = users.filter(pl.col("archetype") == "ordinary")
    assert ordinary["device_fingerprint"].n_unique() == ordinary.height


def test_qa_audits_are_a_uniform_sample_of_all_content(tables):
    truth = tables["content_truth"]
    audited = truth.filter(pl.col("content_id").is_in(tables["qa_audits"]["content_id"].to_list()))
    share_all = (truth["true_policy"] != "benign").mean()
    share_audited = (audited["true_policy"] != "benign").mean()
    n = audited.height
    se = np.sqrt(share_all * (1 - share_all) / n)
    assert abs(share_audited - share_all) < 4 * se
    # Reported content is not over-sampled either.
    reported = set(tables["reports"]["content_id"])
    rate_rep = audited["content_id"].is_in(list(reported)).mean()
    rate_all = truth["content_id"].is_in(list(reported)).mean()
    assert abs(rate_rep - rate_all) < 4 * np.sqrt(rate_all * (1 - rate_all) / n)


def test_decisions_exist_only_for_reported_or_proactively_sampled_content(tables):
    d = tables["decisions"]
    reported = set(tables["reports"]["content_id"])
    by_report = d.filter(pl.col("review_reason") == "user_report")
    assert by_report["content_id"].is_in(list(reported)).all()
    proactive = d.filter(pl.col("review_reason") == "proactive")
    assert proactive.height > 0
    assert not proactive["content_id"].is_in(list(reported)).any()
    assert d["content_id"].n_unique() == d.height


def test_wrong_removals_are_overturned_more_often(tables):
    truth = tables["content_truth"].select("content_id", "true_policy")
    a = (
        tables["appeals"]
        .join(tables["decisions"].select("decision_id", "policy"), on="decision_id")
        .join(truth, on="content_id")
    )
    rates = dict(
        a.group_by(pl.col("policy") != pl.col("true_policy"))
        .agg((pl.col("outcome") == "overturned").mean())
        .iter_rows()
    )
    assert rates[True] > rates[False] + 0.3


def test_rings_post_campaigns_in_their_style(tables):
    """copy: one text within 30 minutes; varied: a variant per post, links rotated, within 2 hours; sleeper: the
    same over 8 hours, from accounts whose other posts are as ordinary accounts' are."""
    rings = tables["user_truth"].select(author_id="user_id", style=pl.col("ring_id").map_batches(ring_styles))
    posts = (
        tables["content"]
        .join(tables["content_truth"].select("content_id", "campaign_id", "true_policy"), on="content_id")
        .join(rings, on="author_id")
    )
    links = posts.select(
        "content_id",
        links=pl.col("text").map_elements(lambda t: "|".join(find_artifacts(t).urls), return_dtype=pl.String),
    )
    bursts = (
        posts.filter(pl.col("campaign_id") >= 0)
        .join(links, on="content_id")
        .group_by("campaign_id", "style")
        .agg(
            pl.len(),
            pl.col("text_hash").n_unique().alias("texts"),
            pl.col("links").filter(pl.col("links") != "").n_unique().alias("links"),
            (pl.col("created_at").max() - pl.col("created_at").min()).alias("span"),
        )
    )
    by_style = {style: bursts.filter(pl.col("style") == style) for style in RING_STYLES}
    assert all(frame.height for frame in by_style.values()) and (bursts["len"] >= 3).any()
    assert (by_style["copy"]["texts"] == 1).all() and by_style["copy"]["span"].max() <= timedelta(minutes=30)
    for style, hours in (("varied", 2), ("sleeper", 8)):
        frame = by_style[style].filter(pl.col("len") >= 3)
        assert (frame["texts"] >= 2).all() and frame["span"].max() <= timedelta(hours=hours)
        assert 2 <= frame["links"].max() <= 3  # a ring's link, rotated over three variants
    assert by_style["sleeper"]["span"].max() > timedelta(hours=2)
    # Outside campaigns, sleeper accounts post as ordinary accounts do; the other rings' accounts mostly violate.
    regular = posts.filter(pl.col("campaign_id") < 0).group_by("style").agg((pl.col("true_policy") != "benign").mean())
    violating = dict(regular.iter_rows())
    assert violating["sleeper"] < 0.2 < 0.6 < violating["copy"]
