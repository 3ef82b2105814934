"""Schedules: the unattended cadence of the pipeline."""

import dagster as dg

from orchestration.jobs import ingest_job

# Stopped by default: the platform is simulated, so a fresh install should not start
# landing "today" on its own. Turn it on in the UI for a live-like deployment.
daily_ingest_schedule = dg.build_schedule_from_partitioned_job(
    ingest_job, hour_of_day=1, default_status=dg.DefaultScheduleStatus.STOPPED
)
