"""The run-failure sensor: every failed run of this code location becomes an `ops_alerts` row and a log line.

The row is one Parquet file per run under `<home>/lake/ops/ops_alerts/` (ml.monitoring.write_ops_alert),
written atomically by the daemon outside any run: recording an alert never waits for, or blocks, the DuckDB
writer, and a run that failed because the warehouse was locked is still recorded. dbt publishes the log to
analysts as `ops_alerts` on the next monitoring build. docs/operations.md says where a team routes alerts.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import dagster as dg
from dagster import DagsterEventType

from assets.resources import LakehouseResource
from ml.monitoring import first_lines, write_ops_alert
from orchestration.dagster_internals import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)

log = logging.getLogger("trustlake.alerts")


def failed_assets(instance: dg.DagsterInstance, run_id: str, steps: set[str]) -> list[str]:
    """The assets the failed steps were to materialize (their planned materializations)."""
    planned = DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    records = instance.get_records_for_run(run_id=run_id, of_type=planned).records
    keys = {
        r.event_log_entry.dagster_event.asset_key.to_user_string()
        for r in records
        if r.event_log_entry.dagster_event.step_key in steps and r.event_log_entry.dagster_event.asset_key
    }
    return sorted(keys)


def error_text(error) -> str:
    """The root cause first (what a person acts on), then where it surfaced; a dg.Failure without its class."""
    chain = []
    while error is not None:
        chain.append(error)
        error = error.cause
    root = chain[-1]
    text = root.message.split(": ", 1)[1] if root.cls_name == "Failure" and ": " in root.message else root.message
    if len(chain) > 1:
        text = f"{text.rstrip()}\n(raised in: {chain[0].message.strip().splitlines()[0]})"
    return text


def partition_range(run: dg.DagsterRun) -> str | None:
    tags = run.tags
    if ASSET_PARTITION_RANGE_START_TAG in tags:
        return f"{tags[ASSET_PARTITION_RANGE_START_TAG]}..{tags.get(ASSET_PARTITION_RANGE_END_TAG, '')}"
    return tags.get(PARTITION_NAME_TAG)


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every failed run of any trustlake job becomes a row in ops_alerts (run id, job, failed steps and "
    "assets, the error's first lines, time) under <home>/lake/ops/ and an error log line from the daemon.",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext, lakehouse: LakehouseResource) -> None:
    run = context.dagster_run
    failures = context.get_step_failure_events()
    steps = [e.step_key for e in failures if e.step_key]
    if failures and failures[0].step_failure_data and failures[0].step_failure_data.error:
        message = error_text(failures[0].step_failure_data.error)
    else:  # the run failed outside any step (its worker died, a resource failed to start)
        message = context.failure_event.message or "the run failed before any step started"
    record = context.instance.get_run_record_by_id(run.run_id)
    failed_at = datetime.fromtimestamp(record.end_time, UTC) if record and record.end_time else datetime.now(UTC)
    assets = failed_assets(context.instance, run.run_id, set(steps))
    path = write_ops_alert(
        lakehouse.lake.ops, run.run_id, run.job_name, steps, assets, message, failed_at, partition_range(run)
    )
    line = (
        f"run {run.run_id} of {run.job_name} failed"
        + (f" in {', '.join(steps)}" if steps else "")
        + f": {first_lines(message, lines=1)} (ops_alerts row: {path})"
    )
    context.log.error(line)
    log.error(line)
    context.instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="ops_alert_log",
            description=line,
            metadata={
                "run_id": run.run_id,
                "job_name": run.job_name,
                "failed_steps": ", ".join(steps) or "none",
                "failed_assets": ", ".join(assets) or "none",
                "error": first_lines(message),
                "path": dg.MetadataValue.path(str(path)),
            },
        )
    )
