"""Campaigns: groups of posts tied together by copies and shared artifacts across accounts, as analysts see them.

Two posts are linked when they share a key (ml/campaigns/links.py) and were posted within `window`
of each other; a cluster is a connected component of that graph (ml.matching.clusters) that spans
at least `min_accounts` accounts and `min_posts` posts. Most such clusters are not campaigns: a
popular phrase ("thank you so much", a song lyric) is posted by many unrelated accounts over days.
A cluster is a campaign when it shows coordination, one of:
- a burst: at least `min_burst_accounts` accounts posted it within one hour (hour-long buckets
  starting on the hour and on the half hour, so a burst across a full hour is not split);
- a shared artifact: at least `min_artifact_accounts` accounts posted the same normalised link,
  phone number or e-mail address in it (where a ring sends people);
- a shared fingerprint: at least `min_fingerprint_accounts` of its accounts use one device or IP
  fingerprint (one operator behind many accounts: a ring that spreads its posts over hours and rotates
  its links still runs them from a few devices). Fingerprints only judge a cluster; they link no posts.
`coordinated_only=False` keeps every cluster (with its coordination "none"), to see what the rule drops.
This grouping looks at every post of the period at once, as an analyst reviewing it does: it is for
reporting and enforcement of what is already known, not a model input (the model reads
ml/campaigns/features.py, which is point in time).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import polars as pl

from ml.matching.clusters import component_labels


@dataclass(frozen=True)
class CampaignRule:
    window: timedelta = timedelta(days=7)  # posts further apart than this are not linked directly
    min_accounts: int = 2
    min_posts: int = 3
    min_burst_accounts: int = 3  # accounts posting the cluster within one hour
    min_artifact_accounts: int = 3  # accounts sharing one link, number or address in the cluster
    min_fingerprint_accounts: int = 3  # accounts of the cluster on one device or IP fingerprint
    coordinated_only: bool = True


def linked_pairs(posts: pl.DataFrame, keys: pl.DataFrame, window: timedelta) -> pl.DataFrame:
    """Pairs of posts (positions in `posts`) sharing a key within `window` of each other.

    `keys`: content_id -> key (the post's text neighbours and artifacts). Within one key, posts are
    chained in time order (each to the next one within the window), which links the same component
    as every pair would, with one edge per post instead of one per pair."""
    positions = posts.select("content_id", "created_at").with_row_index("pos")
    keyed = keys.join(positions, on="content_id").sort("key", "created_at", "pos")
    chained = keyed.with_columns(
        next_pos=pl.col("pos").shift(-1).over("key"), next_at=pl.col("created_at").shift(-1).over("key")
    ).filter(pl.col("next_pos").is_not_null() & ((pl.col("next_at") - pl.col("created_at")) <= window))
    return chained.select(pl.col("pos").cast(pl.Int64).alias("left"), pl.col("next_pos").cast(pl.Int64).alias("right"))


def campaigns(
    posts: pl.DataFrame,
    keys: pl.DataFrame,
    removals: pl.DataFrame,
    decisions: pl.DataFrame,
    rule: CampaignRule = CampaignRule(),
    fingerprints: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(campaigns, members) of `posts` (content_id, author_id, created_at); `fingerprints` (author_id,
    fingerprint: ml/campaigns/links.py `account_fingerprints`) judge shared fingerprints, none without them.

    campaigns: campaign_id, posts, accounts, first_seen, last_seen, burst_posts_per_hour (the most posts
    of the campaign in any one hour), burst_accounts, artifact_accounts and fingerprint_accounts (the module
    docstring), coordination ("burst", "shared_artifact", "shared_fingerprint", those that hold joined by
    "+", or "none"), dominant_policy (most
    decided policy among its removed posts, "none" when nothing was removed), actioned_share (share of
    its posts removed or restricted), and members: campaign_id, content_id, author_id, created_at."""
    pairs = linked_pairs(posts, keys, rule.window)
    labels = component_labels(posts.height, pairs["left"].to_numpy(), pairs["right"].to_numpy())
    tagged = posts.select("content_id", "author_id", "created_at").with_columns(cluster=pl.Series(labels))
    sizes = tagged.group_by("cluster").agg(pl.len().alias("posts"), pl.col("author_id").n_unique().alias("accounts"))
    sized = sizes.filter((pl.col("posts") >= rule.min_posts) & (pl.col("accounts") >= rule.min_accounts))
    coordination = _coordination(tagged.join(sized.select("cluster"), on="cluster"), keys, fingerprints, rule)
    kept = coordination.filter(pl.col("coordination") != "none") if rule.coordinated_only else coordination
    members = tagged.join(kept.select("cluster"), on="cluster")
    # A stable id: the smallest content id of the campaign.
    ids = members.group_by("cluster").agg(pl.col("content_id").min().alias("campaign_id"))
    members = members.join(ids, on="cluster")
    coordination = kept.join(ids, on="cluster").drop("cluster")
    members = members.drop("cluster")
    policies = (
        decisions.filter(pl.col("action").is_in(["remove", "restrict"]))
        .select("content_id", "policy")
        .unique("content_id", keep="first")
    )
    hours = members.with_columns(hour=pl.col("created_at").dt.truncate("1h"))
    burst = (
        hours.group_by("campaign_id", "hour")
        .len()
        .group_by("campaign_id")
        .agg(pl.col("len").max().alias("burst_posts_per_hour"))
    )
    actioned = members.join(removals.select("content_id"), on="content_id", how="left", coalesce=False).with_columns(
        actioned=pl.col("content_id_right").is_not_null()
    )
    dominant = (
        members.join(policies, on="content_id")
        .group_by("campaign_id", "policy")
        .len()
        .sort("len", "policy", descending=[True, False])
        .unique("campaign_id", keep="first")
        .select("campaign_id", pl.col("policy").alias("dominant_policy"))
    )
    summary = (
        members.group_by("campaign_id")
        .agg(
            pl.len().alias("posts"),
            pl.col("author_id").n_unique().alias("accounts"),
            pl.col("created_at").min().alias("first_seen"),
            pl.col("created_at").max().alias("last_seen"),
        )
        .join(burst, on="campaign_id")
        .join(coordination, on="campaign_id")
        .join(actioned.group_by("campaign_id").agg(pl.col("actioned").mean().alias("actioned_share")), on="campaign_id")
        .join(dominant, on="campaign_id", how="left")
        .with_columns(pl.col("dominant_policy").fill_null("none"), pl.col("actioned_share").cast(pl.Float64))
        .sort("first_seen", "campaign_id")
    )
    return summary, members.select("campaign_id", "content_id", "author_id", "created_at").sort(
        "campaign_id", "created_at"
    )


def _coordination(
    tagged: pl.DataFrame, keys: pl.DataFrame, fingerprints: pl.DataFrame | None, rule: CampaignRule
) -> pl.DataFrame:
    """cluster, burst_accounts, artifact_accounts, fingerprint_accounts, coordination of every cluster in `tagged`."""
    # Hour-long buckets from the hour and from the half hour: times moved back 30 minutes, then truncated.
    by_hour = [
        tagged.group_by("cluster", (pl.col("created_at") - shift).dt.truncate("1h").alias("bucket")).agg(
            pl.col("author_id").n_unique().alias("n")
        )
        for shift in (timedelta(0), timedelta(minutes=30))
    ]
    burst = pl.concat(by_hour).group_by("cluster").agg(pl.col("n").max().alias("burst_accounts"))

    def most_accounts_behind_one(shared: pl.DataFrame, name: str) -> pl.DataFrame:
        return (
            shared.group_by("cluster", "key")
            .agg(pl.col("author_id").n_unique().alias("n"))
            .group_by("cluster")
            .agg(pl.col("n").max().alias(name))
        )

    artifacts = most_accounts_behind_one(
        tagged.join(keys.filter(~pl.col("key").str.starts_with("text:")), on="content_id"), "artifact_accounts"
    )
    if fingerprints is None:
        fingerprints = pl.DataFrame(schema={"author_id": pl.Int64, "fingerprint": pl.String})
    accounts = tagged.select("cluster", "author_id").unique()
    shared = most_accounts_behind_one(
        accounts.join(fingerprints.rename({"fingerprint": "key"}), on="author_id"), "fingerprint_accounts"
    )
    held = {
        "burst": pl.col("burst_accounts") >= rule.min_burst_accounts,
        "shared_artifact": pl.col("artifact_accounts") >= rule.min_artifact_accounts,
        "shared_fingerprint": pl.col("fingerprint_accounts") >= rule.min_fingerprint_accounts,
    }
    counts = ("burst_accounts", "artifact_accounts", "fingerprint_accounts")
    return (
        tagged.select("cluster")
        .unique()
        .join(burst, on="cluster", how="left")
        .join(artifacts, on="cluster", how="left")
        .join(shared, on="cluster", how="left")
        .with_columns(pl.col(*counts).fill_null(0).cast(pl.Int64))
        .with_columns(
            coordination=pl.concat_list(pl.when(test).then(pl.lit(name)) for name, test in held.items())
            .list.drop_nulls()
            .list.join("+")
        )
        .with_columns(
            pl.when(pl.col("coordination") == "").then(pl.lit("none")).otherwise("coordination").alias("coordination")
        )
    )


def campaign_keys(posts: pl.DataFrame, neighbours: pl.DataFrame, artifacts: pl.DataFrame) -> pl.DataFrame:
    """content_id -> key for `campaigns`: the near-duplicate group keys of its text (each neighbour text)
    and its artifacts. Exact copies of one text are linked only across accounts' posts in the window."""
    text = (
        posts.select("content_id", "text_hash")
        .join(neighbours, on="text_hash")
        .select("content_id", pl.concat_str([pl.lit("text:"), pl.col("neighbour")]).alias("key"))
    )
    art = artifacts.join(posts.select("content_id"), on="content_id").select(
        "content_id", pl.col("artifact").alias("key")
    )
    return pl.concat([text, art]).unique()


def membership_problems(summary: pl.DataFrame, members: pl.DataFrame) -> tuple[int, int]:
    """(campaigns whose post or account counts differ from their member rows, posts in more than one campaign):
    both 0 for a consistent pair of tables from `campaigns`."""
    counted = members.group_by("campaign_id").agg(pl.len().alias("n"), pl.col("author_id").n_unique().alias("a"))
    agree = summary.join(counted, on="campaign_id", how="left")
    disagree = agree.filter(
        pl.col("n").is_null() | (pl.col("n") != pl.col("posts")) | (pl.col("a") != pl.col("accounts"))
    ).height
    return disagree, members.height - members["content_id"].n_unique()


__all__ = ["CampaignRule", "campaign_keys", "campaigns", "linked_pairs", "membership_problems"]
