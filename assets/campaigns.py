"""Coordinated campaigns for analysts and enforcement (group `campaigns`, built with the ingest; `mart_campaigns`
is built with the review queue, which groups a campaign's items, and batch scoring's campaign rule reads
`campaign_members`).

`campaigns`: posts linked by near-duplicate text and shared links, phone numbers and e-mail addresses
(ml/campaigns/links.py, the matching module's MinHash/LSH) within a week of each other, grouped into
connected components across accounts, and kept when they show coordination (a burst of accounts within
an hour, accounts sharing one link, number or address, or accounts on one device or IP fingerprint:
ml/campaigns/clusters.py). The components the
rule drops, popular phrases posted by unrelated accounts over days, are counted in the metadata.
"""

from collections.abc import Iterator
from dataclasses import replace

import dagster as dg
import polars as pl

from assets.metadata import markdown_table, table_schema
from assets.resources import LakehouseResource
from ml.campaigns.clusters import CampaignRule, campaign_keys, campaigns, membership_problems
from ml.campaigns.features import confirmed_removals
from ml.campaigns.links import (
    SIGNATURE_SCHEMA,
    SIGNATURES,
    account_fingerprints,
    post_artifacts,
    text_neighbours,
    text_signatures,
)
from ml.lake import write_parquet_atomic
from ml.matching.text import TextMatchParams

CAMPAIGNS = "campaigns"
CAMPAIGN_MEMBERS = "campaign_members"


def stored_signatures(lake) -> pl.DataFrame:
    """The MinHash signatures of every distinct text the campaigns asset has seen, kept between its builds (a
    text is signed once ever) and read by every scoring path that builds campaign features."""
    stored = _signatures_path(lake)
    return pl.read_parquet(stored) if stored.exists() else pl.DataFrame(schema=SIGNATURE_SCHEMA)


def _signatures_path(lake):
    return lake.features / SIGNATURES / "part-0.parquet"


DESCRIPTIONS = {
    CAMPAIGNS: "One row per coordinated campaign (ml/campaigns/clusters.py).",
    CAMPAIGN_MEMBERS: "One row per post of a campaign: campaign, post, author, created.",
}
CHECKS = {
    "members_agree": "Every campaign's post and account counts are those of its member rows, and no post belongs "
    "to two campaigns.",
}


def campaigns_asset(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> Iterator:
    """Campaigns over every post in the lake: size, accounts, first and last seen, burst (posts and accounts
    within an hour), accounts behind one shared artifact and on one fingerprint, how it is coordinated, dominant removed policy and
    the share already actioned; and one row per member post. Replaced whole, atomically, on every build."""
    lake = lakehouse.lake
    rule, params = CampaignRule(), TextMatchParams()
    content = lake.read_table("content").drop("date")
    decisions, appeals = lake.read_table("decisions").drop("date"), lake.read_table("appeals").drop("date")
    known = stored_signatures(lake)
    signatures = text_signatures(content.select("text_hash", "text"), known, params)
    if signatures.height > known.height:
        write_parquet_atomic(pl.concat([known, signatures]).unique("text_hash", keep="first"), _signatures_path(lake))
    keys = campaign_keys(content, text_neighbours(signatures, params), post_artifacts(content))
    every, members = campaigns(
        content,
        keys,
        confirmed_removals(decisions, appeals),
        decisions,
        replace(rule, coordinated_only=False),
        account_fingerprints(lake.read_table("users")),
    )
    found = every.filter(pl.col("coordination") != "none")
    members = members.join(found.select("campaign_id"), on="campaign_id")
    write_parquet_atomic(found, lake.features / CAMPAIGNS / "part-0.parquet")
    write_parquet_atomic(members, lake.features / CAMPAIGN_MEMBERS / "part-0.parquet")
    disagree, twice = membership_problems(found, members)
    by_kind = (
        found.group_by("coordination").agg(pl.len().alias("campaigns"), pl.col("posts").sum()).sort("coordination")
    )
    largest = found.sort("posts", descending=True).head(10)
    context.log.info(
        f"campaigns: {found.height} coordinated campaigns ({members.height} posts) of {every.height} "
        f"clusters across accounts; {every.height - found.height} dropped as uncoordinated"
    )
    yield dg.MaterializeResult(
        asset_key=CAMPAIGN_MEMBERS,
        metadata={
            "dagster/row_count": members.height,
            "dagster/column_schema": table_schema(members),
            "path": dg.MetadataValue.path(str(lake.features / CAMPAIGN_MEMBERS)),
        },
    )
    yield dg.MaterializeResult(
        asset_key=CAMPAIGNS,
        metadata={
            "dagster/row_count": found.height,
            "dagster/column_schema": table_schema(found),
            "member_posts": members.height,
            "clusters_across_accounts": every.height,
            "dropped_as_uncoordinated": every.height - found.height,
            "rule": str(rule),
            "by_coordination": dg.MetadataValue.md(markdown_table(by_kind)),
            "largest": dg.MetadataValue.md(
                markdown_table(
                    largest.select(
                        "campaign_id",
                        "posts",
                        "accounts",
                        "burst_accounts",
                        "artifact_accounts",
                        "fingerprint_accounts",
                        "coordination",
                        "dominant_policy",
                        pl.col("actioned_share").round(3),
                    )
                )
            ),
            "path": dg.MetadataValue.path(str(lake.features / CAMPAIGNS)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="members_agree",
                passed=disagree == 0 and twice == 0,
                description=f"{disagree} campaign(s) whose counts differ from their members; {twice} post(s) in two",
            )
        ],
    )


def campaigns_assets() -> list[dg.AssetsDefinition]:
    deps = ["content", "decisions", "appeals", "users"]
    return [
        dg.multi_asset(
            name=CAMPAIGNS,
            specs=[
                dg.AssetSpec(key, group_name="campaigns", kinds={"polars", "parquet"}, deps=deps, description=said)
                for key, said in DESCRIPTIONS.items()
            ],
            check_specs=[
                dg.AssetCheckSpec(c, asset=CAMPAIGNS, blocking=True, description=d) for c, d in CHECKS.items()
            ],
        )(campaigns_asset)
    ]
