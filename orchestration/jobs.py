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
    selection=dg.AssetSelection.groups("scoring", "monitoring"),
    partitions_def=daily_partitions,
    description="Score the selected days' content with the champion, rebuild the review queue, and monitor the "
    "champion on those days (drift, live precision, prevalence) against its reference.",
)

# What the retraining sensor requests (issue9-core defines the same job; the two are reconciled at merge).
retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.groups("features", "training", "evaluation", "deployment"),
    description="Rebuild features and the training set, train and evaluate every candidate behind blocking gates, "
    "and promote the best one that passed; otherwise the champion stays.",
)
