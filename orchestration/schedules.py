"""Schedules: the unattended cadence of the pipeline (docs/operations.md says why each exists)."""

import dagster as dg

from orchestration.jobs import daily_job, image_evaluation_job, retrain_job

# Stopped by default: the platform is simulated, so a fresh install should not start landing new
# days on its own. Turned on (UI, or `dagster schedule start daily_schedule`), its tick at 01:00
# UTC runs daily_job for the day that just ended, which is the next day past the window.
daily_schedule = dg.build_schedule_from_partitioned_job(
    daily_job,
    name="daily_schedule",
    hour_of_day=1,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="daily_job for each new day (the partition that just ended), at 01:00 UTC.",
)

# Running by default: a weekly retrain on whatever labels have accumulated is harmless (promotion is
# gated, a candidate no better than the champion never replaces it) and keeps an unattended
# install's models from ageing. Mondays 03:00 UTC, after the daily run.
weekly_retrain_schedule = dg.ScheduleDefinition(
    name="weekly_retrain_schedule",
    job=retrain_job,
    cron_schedule="0 3 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="retrain_job every Monday at 03:00 UTC.",
)

# Running by default, like the retrain: read-only, about two minutes of CPU a week. Mondays 05:00 UTC,
# after the retrain, so it measures the week's champion.
weekly_image_evaluation_schedule = dg.ScheduleDefinition(
    name="weekly_image_evaluation_schedule",
    job=image_evaluation_job,
    cron_schedule="0 5 * * 1",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="image_evaluation_job every Monday at 05:00 UTC.",
)

schedules = [daily_schedule, weekly_retrain_schedule, weekly_image_evaluation_schedule]
