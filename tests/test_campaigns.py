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
from ml.campaigns.links import post_artifacts, text_neighbours, text_signatures
from ml.matching.text import TextMatchParams
from ml.text import normalise, text_hash

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
    decisions = pl.DataFrame(
        {
            "decision_id": [1, 2],
            "content_id": [100, 101],
            "policy": ["scam", "scam"],
            "action": ["remove", "remove"],
            "decided_at": [T0 + timedelta(minutes=25), T0 + timedelta(minutes=35)],
        }
    ).with_columns(pl.col("decided_at").cast(pl.Datetime("us")))
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
    assert sorted(members["content_id"].to_list()) == list(range(100, 108))


def test_signatures_of_known_texts_are_reused_not_recomputed(platform):
    content = platform[0]
    params = TextMatchParams()
    first = text_signatures(content.head(5), None, params)
    both = text_signatures(content, first, params)
    assert both.height == content["text_hash"].n_unique()
    reused = both.join(first, on="text_hash")
    assert np.array_equal(np.array(reused["signature"].to_list()), np.array(reused["signature_right"].to_list()))
