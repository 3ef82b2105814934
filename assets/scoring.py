"""Batch scoring of each day's content by the deployed champion (group `scoring`).

`scoring_assets` makes the asset over the platform's days, which the deployment decides (its first
day is pinned per home): orchestration/definitions.py passes them in.
"""

from datetime import UTC, datetime

import dagster as dg
import polars as pl

from assets.campaigns import CAMPAIGN_MEMBERS, stored_signatures
from assets.images import IMAGE_TEXT, image_text_table
from assets.metadata import add_partition_metadata, markdown_table, partition_days, rounded
from assets.resources import LakehouseResource
from ml.campaigns.context import with_campaign_context
from ml.campaigns.features import confirmed_removals
from ml.campaigns.links import SIGNATURES
from ml.deployment import DeploymentDecision
from ml.features.build import scoring_frame
from ml.matching.bank_matches import BANK_MATCHES, MATCH_SCHEMA, with_bank_matches
from ml.registry import Registry
from ml.scoring import load_model, risk, score_frame

RAW_INPUTS = ("content", "users", "reports", "decisions", "appeals")


def raw_inputs(lake) -> dict[str, pl.DataFrame]:
    """What a model's features are built from, as batch scoring reads it: every raw table a feature looks
    back over (whole, not the days scored) and the text read in images. Scoring, the launch backtest, the
    shadow and monitoring all read this, so they score an item with the same features; with them, the stored
    text signatures the campaigns asset keeps, so none of them signs the history's texts again."""
    return {
        **{t: lake.read_table(t).drop("date") for t in RAW_INPUTS},
        IMAGE_TEXT: image_text_table(lake),
        SIGNATURES: stored_signatures(lake),
    }


def scored_frame(raw: dict[str, pl.DataFrame], content: pl.DataFrame) -> pl.DataFrame:
    """`content` (any subset of raw["content"]) with every feature a model reads (`scoring_frame`)."""
    return scoring_frame(
        content,
        raw["users"],
        raw["reports"],
        raw["decisions"],
        raw["appeals"],
        raw[IMAGE_TEXT],
        raw["content"],
        raw[SIGNATURES],
    )


def days_bank_matches(lake, days: list) -> pl.DataFrame:
    """The hash-bank matches of the items of `days` (bank_matches, built with the ingest). A day never
    matched, or matched by code older than the table's schema, fails with what to run: every reader (the
    training set, scoring, the shadow, the backtest, monitoring) needs the same matches."""
    missing = [d for d in days if not lake.partition_dir(BANK_MATCHES, d, lake.scores).is_dir()]
    if missing:
        shown = ", ".join(str(d) for d in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise dg.Failure(f"no bank_matches for {shown}: materialize bank_matches for those days (ingest_job) first")
    parts = [lake.read_partition(BANK_MATCHES, day, root=lake.scores) for day in days]
    stale = {d: sorted(set(MATCH_SCHEMA) - set(p.columns)) for d, p in zip(days, parts)}
    stale = {d: lacking for d, lacking in stale.items() if lacking}
    if stale:
        first = min(stale)
        raise dg.Failure(
            f"bank_matches of {len(stale)} day(s) from {first} lack {', '.join(stale[first])} (matched by older "
            "code): materialize bank_matches for those days again (ingest_job)"
        )
    return pl.concat([part.select(list(MATCH_SCHEMA)) for part in parts])


def campaign_members(lake) -> pl.DataFrame:
    """The campaigns asset's members (campaign_id, content_id, ...); fails with what to run when never built."""
    path = lake.features / CAMPAIGN_MEMBERS / "part-0.parquet"
    if not path.exists():
        raise dg.Failure(f"no {CAMPAIGN_MEMBERS} table at {path}: materialize campaigns (ingest_job) first")
    return pl.read_parquet(path)


def with_enforcement_context(lake, raw: dict[str, pl.DataFrame], frame: pl.DataFrame, days: list) -> pl.DataFrame:
    """`frame` with what the enforcement policy reads beside the scores, as every path that acts on a day
    reads it (the champion's scoring, the shadow, the launch backtest, monitoring's reference): each item's
    closest hash-bank match on its day (the `bank_match` rule; also the risk model's bank features,
    ml.matching.bank_matches.with_bank_matches) and its campaign with the removals it had before the item
    was posted (the campaign rule, ml/campaigns/context.py)."""
    frame = with_bank_matches(frame, days_bank_matches(lake, days))
    removals = confirmed_removals(raw["decisions"], raw["appeals"])
    return with_campaign_context(frame, campaign_members(lake), removals)


def content_scores(context: dg.AssetExecutionContext, deployed: DeploymentDecision, lakehouse: LakehouseResource):
    """Each day's content scored by the champion recorded in `deployed_model`: per-policy
    probabilities, the enforcement policy's action and the model version. Features are built
    point-in-time from the raw lake, so a new day needs no retraining run first. Rules of the
    enforcement policy in shadow mode decide nothing: what each would have changed is logged per day. An item
    matched to a hash bank (bank_matches) is decided by the policy's `bank_match` rule, which says which bank
    entry and where it came from (`decided_by`, `bank_match`); an item of a campaign (the campaigns asset) with
    enough confirmed removals before it was posted, by the policy's campaign rule, capped per hour."""
    if not deployed.champion:
        raise dg.Failure("no champion is deployed yet: materialize deployed_model first")
    # Resolved through the registry, so a moved or copied home scores with its own files.
    registry = Registry(lakehouse.lake.models)
    champion = load_model(registry.artifact_dir(registry.get(deployed.champion)))
    lake = lakehouse.lake
    days = partition_days(context)
    raw = raw_inputs(lake)
    todays = raw["content"].filter(pl.col("created_at").dt.date().is_between(days[0], days[-1]))
    # An image post is scored on its caption and the text read in its image (image_text, built before).
    frame = scored_frame(raw, todays)
    frame = with_enforcement_context(lake, raw, frame, days)
    scores = pl.concat(
        [frame.select("content_id", "created_at", "surface"), score_frame(champion, frame)], how="horizontal"
    ).with_columns(scored_at=pl.lit(datetime.now(UTC).replace(tzinfo=None)))
    for day in days:
        on_day = scores["created_at"].dt.date() == day
        todays_scores = scores.filter(on_day)
        lake.write_partition("content_scores", day, todays_scores, root=lake.scores)
        shadow_rules = champion.policy.shadow_effects(todays_scores, champion.thresholds, frame.filter(on_day))
        for rule, changed in shadow_rules.items():
            context.log.info(
                f"{day}: shadow rule {rule} would have changed {changed or 'no'} action(s); it acted on none"
            )
        # This day's own numbers on this day's materialization, so per-partition plots mean something.
        add_partition_metadata(
            context,
            day,
            {
                "dagster/row_count": todays_scores.height,
                "mean_risk": rounded(float(risk(todays_scores).mean())) if todays_scores.height else None,
                "actions": dg.MetadataValue.md(
                    markdown_table(todays_scores.group_by("action").len().sort("action").rename({"len": "items"}))
                ),
                **{f"shadow_rule/{rule}": str(changed or "no change") for rule, changed in shadow_rules.items()},
            },
        )
    return dg.MaterializeResult(
        metadata={
            "model_version": champion.version,
            "days_in_run": len(days),
            "path": dg.MetadataValue.path(str(lake.scores / "content_scores")),
        }
    )


def scoring_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [
        dg.asset(
            group_name="scoring",
            kinds={"polars", "parquet"},
            partitions_def=partitions,
            backfill_policy=dg.BackfillPolicy.single_run(),
            ins={"deployed": dg.AssetIn("deployed_model")},
            deps=["content", "users", "reports", "decisions", "appeals", IMAGE_TEXT, BANK_MATCHES, CAMPAIGN_MEMBERS],
        )(content_scores)
    ]
