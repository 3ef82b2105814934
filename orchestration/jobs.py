"""Jobs: what a scheduled or manual run materializes."""

import dagster as dg

from ml.simulator import RAW_TABLES
from orchestration.partitions import daily_partitions

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("raw", "warehouse"),
    partitions_def=daily_partitions,
    description="Land the selected days in the raw lake, build the dbt warehouse, publish the marts.",
)

train_job = dg.define_asset_job(
    "train_job",
    selection=dg.AssetSelection.groups("features", "training", "evaluation"),
    description="Build features and the training set, train LightGBM, the text model and the baseline "
    "on Ray, and evaluate them behind blocking quality gates.",
)

# Deployment runs on its own, after training: a candidate failing its (blocking) gates must
# not stop the promotion of another candidate that passed, so deployed_model reads every
# candidate's latest evaluation and promotes the best one whose gates all passed.
deploy_job = dg.define_asset_job(
    "deploy_job",
    selection=dg.AssetSelection.groups("deployment"),
    description="Promote the best candidate whose quality gates all passed; otherwise keep the champion.",
)

score_job = dg.define_asset_job(
    "score_job",
    selection=dg.AssetSelection.groups("scoring"),
    partitions_def=daily_partitions,
    description="Score the selected days' content with the champion and rebuild the review queue mart.",
)

# One landed external file per run (landing_sensor, `trustlake land`): its raw table from the
# file, then the warehouse models downstream of that table, for the days the file touches. Each
# run request selects one raw table; the selection here is what such a request may choose from.
land_job = dg.define_asset_job(
    "land_job",
    selection=dg.AssetSelection.assets(*RAW_TABLES) | dg.AssetSelection.groups("warehouse"),
    partitions_def=daily_partitions,
    description="Land one checked external file from <home>/lake/landing/ in its raw table's daily partitions, "
    "then rebuild the warehouse models downstream of that table and publish the marts.",
)
