"""Jobs: what a scheduled, sensor-triggered or `trustlake run` run materializes.

Assets are selected by group, so assets another module adds to a group (the monitoring assets)
join the jobs that select it without an edit here.
"""

import dagster as dg

from orchestration.partitions import daily_partitions

ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("raw", "warehouse"),
    partitions_def=daily_partitions,
    description="Land the selected days in the raw lake (and the labelled reference sets), build the dbt "
    "warehouse for them, publish the marts.",
)

# Features are whole-lake rebuilds (unpartitioned) read only by training, so they are rebuilt here,
# right before the training set, rather than every day.
retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.groups("features", "training", "evaluation", "deployment"),
    description="Rebuild the features and the training set, find label issues, train the content classifier, "
    "the text model and the risk model (Ray) and the baseline, evaluate them behind quality gates, and promote "
    "the pair when every gate passed (otherwise the champion stays).",
)

score_job = dg.define_asset_job(
    "score_job",
    selection=dg.AssetSelection.groups("scoring", "monitoring"),
    partitions_def=daily_partitions,
    description="Score the selected days' content with the champion, rebuild the review queue mart, and "
    "monitor the champion on those days.",
)

daily_job = dg.define_asset_job(
    "daily_job",
    selection=dg.AssetSelection.groups("raw", "warehouse", "scoring", "monitoring"),
    partitions_def=daily_partitions,
    description="One day end to end: land it, build the warehouse, score its content with the champion, "
    "rebuild the review queue and monitor the champion. What `daily_schedule` runs for each new day.",
)

jobs = [ingest_job, retrain_job, score_job, daily_job]
