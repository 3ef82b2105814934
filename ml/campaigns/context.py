"""What the enforcement policy's campaign rule reads about an item: its campaign and the removals it had.

`campaign_removals`: the confirmed removals (ml.campaigns.features.confirmed_removals: decided, and not
overturned on appeal by then) among the other posts of the item's campaign, decided before the item was
created. Removals are point in time; membership is the campaign as the `campaigns` asset last found it (in
daily batch scoring, built by the same ingest as the day scored). An item in no campaign has both null, so
the rule (`campaign_removals_at_least`) never fires for it.
"""

from __future__ import annotations

import polars as pl

CAMPAIGN_CONTEXT = ("campaign_id", "campaign_removals")


def with_campaign_context(frame: pl.DataFrame, members: pl.DataFrame, removals: pl.DataFrame) -> pl.DataFrame:
    """`frame` (content_id, created_at, ...) with CAMPAIGN_CONTEXT, in its row order.

    `members`: campaign_id, content_id (the campaigns asset's campaign_members); `removals`: content_id,
    removed_at, overturned_at (`confirmed_removals` of every decision and appeal)."""
    frame = frame.drop([c for c in CAMPAIGN_CONTEXT if c in frame.columns])
    items = frame.select("content_id", "created_at").join(
        members.select("content_id", "campaign_id"), on="content_id", how="inner"
    )
    removed = members.select("campaign_id", pl.col("content_id").alias("removed_id")).join(
        removals.select(pl.col("content_id").alias("removed_id"), "removed_at", "overturned_at"), on="removed_id"
    )
    counted = (
        items.join(removed, on="campaign_id")
        .filter(
            (pl.col("removed_id") != pl.col("content_id"))
            & (pl.col("removed_at") < pl.col("created_at"))
            & (pl.col("overturned_at").is_null() | (pl.col("overturned_at") >= pl.col("created_at")))
        )
        .group_by("content_id")
        .agg(pl.len().alias("campaign_removals"))
    )
    context = (
        items.select("content_id", "campaign_id")
        .unique("content_id", keep="first")
        .join(counted, on="content_id", how="left")
        .with_columns(pl.col("campaign_removals").fill_null(0).cast(pl.Int64))
    )
    return frame.join(context, on="content_id", how="left", maintain_order="left")
