"""Batch scoring of each day's content by the deployed champion (group `scoring`)."""

from datetime import datetime, timezone

import dagster as dg
import polars as pl

from assets.raw import _days
from ml.deployment import DeploymentDecision
from ml.features.build import scoring_frame
from ml.registry import Registry
from ml.scoring import load_model, risk, score_frame
from orchestration.partitions import daily_partitions
from orchestration.resources import LakehouseResource


@dg.asset(
    group_name="scoring",
    kinds={"polars", "parquet"},
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    ins={"deployed": dg.AssetIn("deployed_model")},
    deps=["content", "users", "reports", "decisions", "appeals"],
)
def content_scores(context: dg.AssetExecutionContext, deployed: DeploymentDecision, lakehouse: LakehouseResource):
    """Each day's content scored by the champion recorded in `deployed_model`: per-policy
    probabilities, the enforcement policy's action and the model version. Features are built
    point-in-time from the raw lake, so a new day needs no retraining run first."""
    if not deployed.champion:
        raise dg.Failure("no champion is deployed yet: materialize deployed_model first")
    # Resolved through the registry, so a moved or copied home scores with its own files.
    registry = Registry(lakehouse.lake.models)
    champion = load_model(registry.artifact_dir(registry.get(deployed.champion)))
    lake = lakehouse.lake
    days = _days(context.partition_time_window)
    raw = {t: lake.read_table(t).drop("date") for t in ("content", "users", "reports", "decisions", "appeals")}
    content = raw["content"]
    todays = content.filter(pl.col("created_at").dt.date().is_between(days[0], days[-1]))
    frame = scoring_frame(todays, raw["users"], raw["reports"], raw["decisions"], raw["appeals"])
    scores = pl.concat([frame.select("content_id", "created_at", "surface"), score_frame(champion, frame)],
                       how="horizontal").with_columns(scored_at=pl.lit(datetime.now(timezone.utc).replace(tzinfo=None)))
    for day in days:
        lake.write_partition("content_scores", day, scores.filter(pl.col("created_at").dt.date() == day),
                             root=lake.scores)
    actions = dict(scores.group_by("action").len().iter_rows())
    return dg.MaterializeResult(metadata={
        "dagster/row_count": scores.height, "model_version": champion.version,
        "actions": dg.MetadataValue.json(actions),
        "mean_risk": float(risk(scores).mean()) if scores.height else 0.0,
        "path": dg.MetadataValue.path(str(lake.scores / "content_scores")),
    })
