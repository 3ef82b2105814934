"""Campaign links, point-in-time campaign features and campaign clusters (ml/campaigns), on a small
platform built here: a ring posting near-copies of one scam template with a shared link from fresh
accounts, beside unrelated accounts posting their own texts."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from ml.campaigns.clusters import CampaignRule, campaign_keys, campaigns
from ml.campaigns.features import FEATURES, campaign_features, confirmed_removals
from ml.campaigns.links import account_fingerprints, post_artifacts, text_neighbours, text_signatures
from ml.matching.text import TextMatchParams
from ml.text import normalise, text_hash
from tests.helpers import scam_removals

T0 = datetime(2026, 11, 1, 12, 0)
TEMPLATE = "Congratulations {name}! You have won a {prize} voucher, claim it now at http://bit.ly/{code} before {when}"
NAMES = ["Sam", "Alex", "Jo", "Kim", "Lee", "Max", "Ana", "Ben"]
PRIZES = ["$500", "$1000", "£750", "$250"]
ORGANIC = [
    "the match last night was brilliant, what a second half from the home side",
    "does anyone know a good recipe for a quick vegetable curry on a weeknight",
    "finally finished the book you lent me, the ending was not what I expected",
    "traffic on the ring road was terrible this morning, took an hour to get in",
]


def post(cid: int, author: int, minutes: float, text: str) -> dict:
    return {
        "content_id": cid,
        "author_id": author,
        "created_at": T0 + timedelta(minutes=minutes),
        "text": text,
        "text_hash": text_hash(normalise(text)),
    }


@pytest.fixture(scope="module")
def platform():
    rows = []
    # The ring: eight fresh accounts, one near-copy each, minutes apart, every one with the same link.
    for i, name in enumerate(NAMES):
        text = TEMPLATE.format(name=name, prize=PRIZES[i % 4], code="x7Qz", when=f"{(i % 5) + 1}pm")
        rows.append(post(100 + i, 1000 + i, 10 * i, text))
    # Unrelated accounts, their own texts.
    for i, text in enumerate(ORGANIC):
        rows.append(post(200 + i, 2000 + i, 5 + 20 * i, text))
    content = pl.DataFrame(rows).with_columns(pl.col("created_at").cast(pl.Datetime("us")))
    # The first two ring posts were removed 25 minutes after they were posted; one removal overturned later.
    decisions = scam_removals({100: T0 + timedelta(minutes=25), 101: T0 + timedelta(minutes=35)})
    appeals = pl.DataFrame(
        {"content_id": [101], "outcome": ["overturned"], "resolved_at": [T0 + timedelta(minutes=65)]}
    ).with_columns(pl.col("resolved_at").cast(pl.Datetime("us")))
    params = TextMatchParams()
    neighbours = text_neighbours(text_signatures(content, None, params), params)
    return content, decisions, appeals, neighbours, post_artifacts(content)


def features_of(platform, content=None, history=None, decisions=None):
    all_content, all_decisions, appeals, neighbours, artifacts = platform
    removals = confirmed_removals(all_decisions if decisions is None else decisions, appeals)
    return campaign_features(
        all_content if content is None else content,
        all_content if history is None else history,
        neighbours,
        artifacts,
        removals,
    )


def test_later_posts_of_a_ring_see_its_earlier_copies_links_accounts_and_removals(platform):
    f = features_of(platform).sort("content_id")
    ring = f.filter(pl.col("content_id").is_between(100, 107))
    # The n-th post of the ring saw n earlier near-copies from n other accounts, through text and link.
    assert ring["copies_before"].to_list() == list(range(8))
    assert ring["copy_accounts_before"].to_list() == list(range(8))
    assert ring["artifact_posts_before"].to_list() == list(range(8))
    # Post 102 (20 min) came before any removal; 103 (30 min) after the first; 104..106 after both;
    # 107 (70 min) after the second was overturned on appeal (65 min).
    assert ring["copies_removed_before"].to_list() == [0, 0, 0, 1, 2, 2, 2, 1]
    assert ring["linked_removal_rate"][7] == pytest.approx(2 / 14)
    organic = f.filter(pl.col("content_id") >= 200)
    assert (organic.select(FEATURES).to_numpy() == 0).all()


def test_features_are_point_in_time_later_posts_and_decisions_change_nothing(platform):
    content, decisions, *_ = platform
    cut = T0 + timedelta(minutes=32)
    early = content.filter(pl.col("created_at") < cut)
    known_then = decisions.filter(pl.col("decided_at") < cut)
    # The early posts' rows from the history as it stood at the cut, and from the full history.
    then = features_of(platform, content=early, history=early, decisions=known_then).sort("content_id")
    now = features_of(platform, content=early).sort("content_id")
    assert then.equals(now)


def test_a_ring_is_one_campaign_and_unrelated_posts_are_none(platform):
    content, decisions, appeals, neighbours, artifacts = platform
    keys = campaign_keys(content, neighbours, artifacts)
    summary, members = campaigns(content, keys, confirmed_removals(decisions, appeals), decisions, CampaignRule())
    assert summary.height == 1
    row = summary.row(0, named=True)
    assert row["posts"] == 8 and row["accounts"] == 8
    assert row["dominant_policy"] == "scam" and row["actioned_share"] == pytest.approx(2 / 8)
    assert row["burst_posts_per_hour"] == 6  # minutes 0..50 fall in the first hour
    # Six accounts within the hour from 12:00 (five from 12:30), eight behind the one link.
    assert row["burst_accounts"] == 6 and row["artifact_accounts"] == 8
    assert row["coordination"] == "burst+shared_artifact"
    assert sorted(members["content_id"].to_list()) == list(range(100, 108))


def test_a_popular_phrase_from_unrelated_accounts_is_a_cluster_but_not_a_campaign(platform):
    content, decisions, appeals, neighbours, artifacts = platform
    # Five accounts post the same friendly line a day apart: linked, spread out, nowhere to send anyone.
    line = "thank you so much for sharing this, it made my day"
    spread = pl.DataFrame([post(300 + i, 3000 + i, 24 * 60 * i + 7 * i, line) for i in range(5)]).with_columns(
        pl.col("created_at").cast(pl.Datetime("us"))
    )
    everything = pl.concat([content, spread])
    params = TextMatchParams()
    keys = campaign_keys(
        everything, text_neighbours(text_signatures(everything, None, params), params), post_artifacts(everything)
    )
    removals = confirmed_removals(decisions, appeals)
    found, _ = campaigns(everything, keys, removals, decisions, CampaignRule())
    assert found["campaign_id"].to_list() == [100]  # the ring only
    every, _ = campaigns(everything, keys, removals, decisions, CampaignRule(coordinated_only=False))
    phrase = every.filter(pl.col("campaign_id") == 300).row(0, named=True)
    assert phrase["posts"] == 5 and phrase["accounts"] == 5
    assert phrase["burst_accounts"] == 1 and phrase["artifact_accounts"] == 0 and phrase["coordination"] == "none"
    # The same line from three accounts on one device (and two others on their own) is one operator's.
    devices = pl.DataFrame(
        {"author_id": [3000 + i for i in range(5)], "fingerprint": ["device:a"] * 3 + ["device:b", "device:c"]}
    )
    shared, _ = campaigns(everything, keys, removals, decisions, CampaignRule(), devices)
    phrase = shared.filter(pl.col("campaign_id") == 300).row(0, named=True)
    assert phrase["fingerprint_accounts"] == 3 and phrase["coordination"] == "shared_fingerprint"


def test_signatures_of_known_texts_are_reused_not_recomputed(platform):
    content = platform[0]
    params = TextMatchParams()
    first = text_signatures(content.head(5), None, params)
    both = text_signatures(content, first, params)
    assert both.height == content["text_hash"].n_unique()
    reused = both.join(first, on="text_hash")
    assert np.array_equal(np.array(reused["signature"].to_list()), np.array(reused["signature_right"].to_list()))


def test_a_campaign_member_sees_the_removals_its_campaign_had_before_it_was_posted(platform):
    from ml.campaigns.context import with_campaign_context

    content, decisions, appeals, neighbours, artifacts = platform
    removals = confirmed_removals(decisions, appeals)
    _, members = campaigns(content, campaign_keys(content, neighbours, artifacts), removals, decisions)
    got = with_campaign_context(content.sample(fraction=1.0, shuffle=True, seed=3), members, removals)
    by_id = dict(zip(got["content_id"].to_list(), got["campaign_removals"].to_list(), strict=True))
    # 100 removed at 25 min, 101 at 35 min and overturned at 65 min: 100..102 (0..20 min) saw none, 103
    # (30 min) one, 104..106 (40..60 min) two, 107 (70 min) one again.
    assert [by_id[c] for c in range(100, 108)] == [0, 0, 0, 1, 2, 2, 2, 1]
    assert all(by_id[c] is None for c in range(200, 204))  # in no campaign: the rule never fires
    assert got["content_id"].to_list() != sorted(got["content_id"].to_list())  # the frame's order is kept


CAPPED_POLICY = """
version: 1
default: allow
rules:
  - name: review_campaign_members
    policy: any
    score_at_least: 0.1
    context: {campaign_removals_at_least: 3}
    action: review
    max_per_hour: 3
  - name: send_to_review
    policy: any
    score_at_least: 0.9
    action: remove
"""


def test_the_campaign_rule_decides_at_most_its_cap_per_hour_and_the_rest_fall_through():
    from ml.enforcement import PolicyError, parse_policy
    from ml.taxonomy import POLICIES

    policy = parse_policy(CAPPED_POLICY)
    n = 12  # ten members in the first hour, two in the next, all with five earlier removals
    created = [T0 + timedelta(minutes=5 * i) for i in range(10)] + [T0 + timedelta(minutes=65 + i) for i in range(2)]
    context = pl.DataFrame({"created_at": created, "campaign_removals": [5] * n}).with_columns(
        pl.col("created_at").cast(pl.Datetime("us"))
    )
    proba = pl.DataFrame({f"p_{p}": [0.95 if p == "spam" else 0.0125] * n for p in POLICIES})
    thresholds = {p: {"auto_action": 0.99, "review": 0.5} for p in POLICIES}
    # The rows come in reverse time order: the cap still keeps the earliest three of each hour.
    decided = policy.decide_with_reasons(proba, thresholds, context.reverse())["decided_by"].reverse().to_list()
    assert decided == ["review_campaign_members"] * 3 + ["send_to_review"] * 7 + ["review_campaign_members"] * 2
    # Across the batches of one call the hour's count carries over.
    used: dict = {}
    first = policy.decide_with_reasons(proba.head(2), thresholds, context.head(2), used)["decided_by"].to_list()
    rest = policy.decide_with_reasons(proba.slice(2, 8), thresholds, context.slice(2, 8), used)["decided_by"]
    assert first == ["review_campaign_members"] * 2
    assert rest.to_list() == ["review_campaign_members"] + ["send_to_review"] * 7
    # Without creation times (an online request) a capped rule decides nothing.
    assert set(policy.decide(proba, thresholds, context.drop("created_at"))) == {"remove"}
    with pytest.raises(PolicyError, match=r"line 10: max_per_hour 0 must be a whole number of at least 1"):
        parse_policy(CAPPED_POLICY.replace("max_per_hour: 3", "max_per_hour: 0"))


def test_scoring_with_the_stored_signatures_gives_the_features_it_computes_alone(platform):
    """The scoring paths read the signatures the campaigns asset keeps instead of signing the history again: the
    same features either way, and a text missing from the stored table (posted since) is signed on the spot."""
    from ml.features import build

    content, decisions, appeals, *_ = platform
    stored = text_signatures(content.filter(pl.col("content_id") != 107), None, TextMatchParams())
    alone = build.campaign_features(content, decisions, appeals)
    with_stored = build.campaign_features(content, decisions, appeals, signatures=stored)
    assert with_stored.sort("content_id").equals(alone.sort("content_id"))
    assert stored.height == content["text_hash"].n_unique() - 1  # 107's text was not in it, and was still linked
    assert with_stored.filter(pl.col("content_id") == 107)["copies_before"].item() == 7


def test_membership_problems_name_counts_that_disagree_and_posts_in_two_campaigns(platform):
    from ml.campaigns.clusters import membership_problems

    content, decisions, appeals, neighbours, artifacts = platform
    keys = campaign_keys(content, neighbours, artifacts)
    summary, members = campaigns(content, keys, confirmed_removals(decisions, appeals), decisions, CampaignRule())
    assert membership_problems(summary, members) == (0, 0)
    assert membership_problems(summary, members.head(7)) == (1, 0)  # a member row lost: the counts disagree
    doubled = pl.concat([members, members.head(1).with_columns(pl.lit(-1, dtype=pl.Int64).alias("campaign_id"))])
    assert membership_problems(summary, doubled) == (0, 1)  # one post in a second campaign


def test_every_ring_style_is_detected_the_sleeper_style_too(pool, small_config):
    """On a simulated week, the campaign rule (the detector; nothing in it is trained) keeps most campaign
    posts of each ring style as campaign members, the sleeper style's (varied text, rotated links, spread
    over eight hours, accounts that look ordinary otherwise: the style bench/campaign_pair.py holds out of
    the risk model's training) among them, through the fingerprints its accounts share; and most of what
    it keeps violates."""
    from datetime import timedelta

    from ml.simulator import simulate_days
    from ml.world import ring_styles

    raw = simulate_days(small_config, pool, small_config.start_date, small_config.start_date + timedelta(days=6))
    content, decisions = raw["content"], raw["decisions"]
    params = TextMatchParams()
    keys = campaign_keys(
        content, text_neighbours(text_signatures(content, None, params), params), post_artifacts(content)
    )
    removals = confirmed_removals(decisions, raw["appeals"])
    _, members = campaigns(content, keys, removals, decisions, fingerprints=account_fingerprints(raw["users"]))
    styles = raw["user_truth"].select(author_id="user_id", style=pl.col("ring_id").map_batches(ring_styles))
    posts = (
        content.select("content_id", "author_id")
        .join(raw["content_truth"].select("content_id", "campaign_id", "true_policy"), on="content_id")
        .join(styles, on="author_id")
        .with_columns(found=pl.col("content_id").is_in(members["content_id"].implode()))
    )
    recall = dict(posts.filter(pl.col("campaign_id") >= 0).group_by("style").agg(pl.col("found").mean()).iter_rows())
    assert set(recall) == {"copy", "varied", "sleeper"}
    assert min(recall.values()) >= 0.75, recall
    kept = posts.filter("found")
    assert (kept["true_policy"] != "benign").mean() >= 0.8
