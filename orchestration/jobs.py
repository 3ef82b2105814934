"""Jobs: what a scheduled, sensor-triggered or `trustlake run` run materializes.

Assets are selected by group, so assets another module adds to a group (the monitoring assets)
join the jobs that select it without an edit here.

Only the retraining runs its steps in processes of their own (the multiprocess executor, with the
forkserver that preloads the definitions once): its steps train models side by side for minutes.
The daily jobs' steps take seconds each and mostly wait for one another (dbt holds the DuckDB pool),
so they run in the run's own process: starting the forkserver and a process per step cost more
than the little they could overlap (measured with `trustlake run`: see docs/operations.md).
"""

import dagster as dg

from ml.raw.contracts import RAW_TABLES
from orchestration.partitions import daily_partitions

# The asset groups each pipeline job builds (also what `trustlake run` checks for staleness).
JOB_GROUPS: dict[str, tuple[str, ...]] = {
    "ingest_job": ("raw", "campaigns", "warehouse", "images"),
    "retrain_job": ("features", "training", "evaluation", "deployment"),
    "score_job": ("scoring", "monitoring"),
}

ingest_job = dg.define_asset_job(
    "ingest_job",
    executor_def=dg.in_process_executor,
    selection=dg.AssetSelection.groups(*JOB_GROUPS["ingest_job"]),
    partitions_def=daily_partitions,
    description="Land the selected days in the raw lake (and the labelled reference sets), find the campaigns "
    "across the lake, build the dbt warehouse for them, publish the marts, and read the text in their new images "
    "(OCR, once per image ever).",
)

# Features are whole-lake rebuilds (unpartitioned) read only by training, so they are rebuilt here,
# right before the training set, rather than every day.
retrain_job = dg.define_asset_job(
    "retrain_job",
    selection=dg.AssetSelection.groups(*JOB_GROUPS["retrain_job"]),
    description="Rebuild the features and the training set, find label issues, train the content classifier, "
    "the text model and the risk model (Ray) and the baseline, evaluate them behind quality gates, and promote "
    "the pair when every gate passed (otherwise the champion stays).",
)

score_job = dg.define_asset_job(
    "score_job",
    executor_def=dg.in_process_executor,
    selection=dg.AssetSelection.groups(*JOB_GROUPS["score_job"]),
    partitions_def=daily_partitions,
    description="Score the selected days' content with the champion, rebuild the review queue, and monitor the "
    "champion on those days (drift, live precision, prevalence) against its reference.",
)

daily_job = dg.define_asset_job(
    "daily_job",
    executor_def=dg.in_process_executor,
    selection=dg.AssetSelection.groups("raw", "campaigns", "warehouse", "images", "scoring", "monitoring"),
    partitions_def=daily_partitions,
    description="One day end to end: land it, build the warehouse, score its content with the champion, "
    "rebuild the review queue and monitor the champion. What `daily_schedule` runs for each new day.",
)

# One landed external file per run (landing_sensor, `trustlake land`): its raw table from the
# file, then the warehouse models downstream of that table, for the days the file touches. Each
# run request selects one raw table; the selection here is what such a request may choose from.
land_job = dg.define_asset_job(
    "land_job",
    executor_def=dg.in_process_executor,
    selection=dg.AssetSelection.assets(*RAW_TABLES) | dg.AssetSelection.groups("warehouse"),
    partitions_def=daily_partitions,
    description="Land one checked external file from <home>/lake/landing/ in its raw table's daily partitions, "
    "then rebuild the warehouse models downstream of that table and publish the marts.",
)

# Not part of `trustlake run` (assets/image_evaluation.py says why): weekly, or when asked.
image_evaluation_job = dg.define_asset_job(
    "image_evaluation_job",
    executor_def=dg.in_process_executor,
    selection=dg.AssetSelection.groups("image_evaluation"),
    description="Measure the image and known-bad paths on the lake's images and texts: OCR error by perturbation, "
    "what OCR costs the champion classifier, PDQ recall per evasion and benign false matches, text near-duplicates.",
)

jobs = [ingest_job, retrain_job, score_job, daily_job, land_job, image_evaluation_job]
