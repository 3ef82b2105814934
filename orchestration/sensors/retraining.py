"""The retraining sensor: requests `retrain_job` when the champion has drifted or enough new labels arrived.

Evidence, in order:
- drift: a `model_drift` day scored by the current champion with a PSI past the fail threshold
  (TRUSTLAKE_DRIFT_PSI_FAIL), read from the materializations after the cursor;
- new labels: at least TRUSTLAKE_RETRAIN_MIN_NEW_LABELS platform labels in `training_labels` (published
  marts) stamped after the newest label of the champion's training set (its monitoring reference).
The run key names the evidence (ml.monitoring.retrain_request), so the same evidence never requests a second
run, and nothing is requested while a retraining run is queued or in progress.
"""

from __future__ import annotations

import json
from datetime import date

import dagster as dg

from assets.resources import LakehouseResource, MonitoringResource
from ml import monitoring as mon
from ml.registry import Registry
from ml.warehouse import read_frame
from orchestration.jobs import retrain_job

WAITING = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _value(metadata: dict, key: str):
    item = metadata.get(key)
    return getattr(item, "value", item)


def drift_since(
    instance: dg.DagsterInstance, after_storage_id: int | None, champion: str
) -> tuple[dict | None, int | None]:
    """The largest judged PSI among the model_drift days materialized after `after_storage_id` (each day's
    latest materialization only) that `champion` scored, and the newest storage id seen."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("model_drift"), after_storage_id=after_storage_id),
        limit=10_000,
        ascending=True,
    ).records
    latest = {record.partition_key: record for record in records}  # ascending: the last one of a day wins
    worst = None
    for day, record in latest.items():
        meta = record.asset_materialization.metadata
        value = _value(meta, "max_psi")
        if value is None or _value(meta, "champion") != champion:
            continue
        if worst is None or value > worst["value"]:
            worst = {
                "value": float(value),
                "metric": _value(meta, "max_psi_metric"),
                "subject": _value(meta, "max_psi_column"),
                "date": date.fromisoformat(day) if day else None,
            }
    return worst, (records[-1].storage_id if records else after_storage_id)


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests retrain_job when a day monitored against the champion drifted past the PSI fail "
    "threshold, or when enough new labels (moderator decisions, appeal outcomes, QA audits) arrived since the "
    "champion's training set. Tags say why: trustlake/retrain_reason=drift|new_labels and the numbers.",
)
def retraining_sensor(
    context: dg.SensorEvaluationContext, lakehouse: LakehouseResource, monitoring: MonitoringResource
):
    lake, limits = lakehouse.lake, monitoring.thresholds()
    champion = Registry(lake.models).champion()
    if champion is None:
        return dg.SkipReason("no champion yet: the first training run (retrain_job) comes before any retraining")
    waiting = context.instance.get_runs(dg.RunsFilter(job_name=retrain_job.name, statuses=WAITING), limit=1)
    if waiting:
        return dg.SkipReason(
            f"retrain_job run {waiting[0].run_id} is {waiting[0].status.value.lower()}: "
            "waiting for it before judging new evidence"
        )
    directory = mon.reference_dir(lake.monitoring, champion.version, champion.dataset_version)
    if not mon.reference_complete(directory):
        return dg.SkipReason(
            f"champion {champion.version} has no monitoring reference yet: it is built with the "
            "first monitored day (score_job)"
        )
    reference = mon.read_reference(directory)
    cursor = json.loads(context.cursor) if context.cursor else {}
    drifted, last_seen = drift_since(context.instance, cursor.get("drift_storage_id"), champion.version)
    if not lake.marts_db.exists():
        return dg.SkipReason(f"{lake.marts_db} does not exist yet: nothing to count labels in")
    labels = read_frame(lake.marts_db, "select label_source, label_at from training_labels")
    new_labels = mon.new_labels_since(labels, reference.labels_until)
    request = mon.retrain_request(
        champion.version,
        champion.dataset_version,
        new_labels,
        limits.retrain_min_new_labels,
        drifted,
        limits.drift_psi_fail,
    )
    new_cursor = json.dumps({"drift_storage_id": last_seen})
    if request is None:
        worst = f"largest new PSI {drifted['value']:.3f}" if drifted else "no newly monitored days"
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"champion {champion.version}: {sum(new_labels.values())} new labels (< {limits.retrain_min_new_labels})"
                f", {worst} (<= {limits.drift_psi_fail:g})"
            ),
            cursor=new_cursor,
        )
    context.log.info(
        f"requesting retrain_job ({request.reason}): "
        + ", ".join(f"{k.removeprefix('trustlake/')}={v}" for k, v in request.tags.items())
    )
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=request.run_key, tags=request.tags)], cursor=new_cursor)
