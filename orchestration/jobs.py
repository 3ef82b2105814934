"""Jobs: what a scheduled or manual run materializes."""

import dagster as dg

from orchestration.partitions import daily_partitions

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("raw", "warehouse"),
    partitions_def=daily_partitions,
    description="Land the selected days in the raw lake, build the dbt warehouse, publish the marts.",
)

train_job = dg.define_asset_job(
    "train_job",
    selection=dg.AssetSelection.groups("features", "training", "evaluation", "deployment"),
    description="Build features and the training set, train LightGBM, the text model and the baseline "
    "on Ray, evaluate them behind quality gates and promote the best passing candidate.",
)

score_job = dg.define_asset_job(
    "score_job",
    selection=dg.AssetSelection.groups("scoring"),
    partitions_def=daily_partitions,
    description="Score the selected days' content with the champion and rebuild the review queue mart.",
)
