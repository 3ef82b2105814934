"""landing_sensor: files dropped into `<home>/lake/landing/<table>/` become land_job runs or quarantine entries.

Each tick looks at every settled file in the six raw tables' landing folders, in table order
(users before the content that refers to them), and checks it (ml.raw.landing_check.check_landing):
- no row can land (unreadable, wrong columns, every row bad): the file moves to
  `lake/quarantine/<table>/` with a reason file, the raw asset gets an observation saying so, and
  no run is requested;
- some rows can land: the file moves to `lake/landing/_ingesting/<table>/<fingerprint>-<name>`
  and a land_job run is requested for it (run key: that name, so a file is ingested once), over
  the partitions of its rows' days; the run lands its good rows and quarantines the rest;
- its rows refer to rows another claimed file is still landing: it waits for a later tick.
One file's problem never stops the others. A claimed file without a run (a tick that failed
after claiming it) is requested again on the next tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import dagster as dg

from assets.raw import partition_bounds
from assets.resources import LakehouseResource
from ml.lake import Lake
from ml.raw.contracts import RAW_TABLES
from ml.raw.landing import Claim, claim_file, claims, dropped_files, quarantine_dropped
from ml.raw.landing_check import LandingCheck, check_landing
from orchestration.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from orchestration.jobs import land_job
from orchestration.partitions import daily_partitions
from orchestration.settings import Settings

CLAIM_TAG = "trustlake/landing_claim"
FILE_TAG = "trustlake/landed_file"
TABLE_TAG = "trustlake/landing_table"
FINGERPRINT_TAG = "trustlake/landed_fingerprint"


def land_selection(table: str, asset_graph) -> list[dg.AssetKey]:
    """The raw table and the warehouse assets downstream of it: what a land run of one file rebuilds."""
    raw = dg.AssetSelection.assets(table)
    return sorted((raw | (raw.downstream() & dg.AssetSelection.groups("warehouse"))).resolve(asset_graph))


def land_run_request(claim: Claim, days: Sequence[date], asset_graph) -> dg.RunRequest:
    """The land_job run for one claimed file, over the partitions of its rows' days."""
    return dg.RunRequest(
        run_key=claim.name,
        job_name=land_job.name,
        asset_selection=land_selection(claim.table, asset_graph),
        run_config={"ops": {"raw_platform_tables": {"config": {"landed_file": claim.name}}}},
        tags={
            CLAIM_TAG: claim.name,
            FILE_TAG: claim.original_name,
            TABLE_TAG: claim.table,
            FINGERPRINT_TAG: claim.fingerprint,
            ASSET_PARTITION_RANGE_START_TAG: min(days).isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: max(days).isoformat(),
        },
    )


def _has_run(instance: dg.DagsterInstance, claim: Claim) -> bool:
    return bool(instance.get_run_records(filters=dg.RunsFilter(tags={CLAIM_TAG: claim.name}), limit=1))


def _quarantined(context, lake: Lake, check: LandingCheck) -> dg.AssetObservation:
    moved = quarantine_dropped(lake, check)
    result = check.validation
    context.log.warning(
        f"{result.table}: {result.path.name} cannot land and was moved to {moved} "
        f"({'; '.join(p.describe(limit=5) for p in result.problems)}). The reason file beside it "
        "says what to do."
    )
    return dg.AssetObservation(
        asset_key=result.table,
        metadata={
            "landing": "quarantined",
            "landed_file": result.path.name,
            "quarantined_to": dg.MetadataValue.path(str(moved)),
            "reason_file": dg.MetadataValue.path(f"{moved}.reason.txt"),
            "problems": dg.MetadataValue.md("\n".join(f"- {p.describe(limit=5)}" for p in result.problems)),
        },
    )


def landing_sensor_every(seconds: int) -> dg.SensorDefinition:
    """landing_sensor, looking at the landing folders every `seconds` (orchestration/settings.py
    `landing_poll_seconds`: a deployment that wants files landed sooner polls more often)."""

    @dg.sensor(
        name="landing_sensor",
        job=land_job,
        minimum_interval_seconds=seconds,
        # Safe to run whenever the daemon does: it only acts on files someone put in a landing folder.
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Checks files dropped into <home>/lake/landing/<table>/ (Parquet or CSV, one folder per raw "
        "table) against the table's contract and the lake: requests a land_job run for each file with rows to "
        f"land, moves a file with none to lake/quarantine/ with a reason file, every {seconds} s "
        "(docs/operations.md, 'Landing external data').",
    )
    def landing_sensor(context: dg.SensorEvaluationContext, lakehouse: LakehouseResource) -> dg.SensorResult:
        return land_dropped_files(context, lakehouse.lake)

    return landing_sensor


# At the default interval; the code location builds it from the deployment's settings.
landing_sensor = landing_sensor_every(Settings.landing_poll_seconds)


def land_dropped_files(context: dg.SensorEvaluationContext, lake: Lake) -> dg.SensorResult:
    """One tick of landing_sensor (module docstring)."""
    window = partition_bounds(daily_partitions)
    graph = context.repository_def.asset_graph
    requests: list[dg.RunRequest] = []
    events: list[dg.AssetObservation] = []
    pending = claims(lake)
    for claim in list(pending):
        if _has_run(context.instance, claim):
            continue
        check = check_landing(lake, claim.table, claim.path, window, ignore_fingerprint=claim.fingerprint)
        if check.usable:
            context.log.info(f"{claim.name} was claimed without a run; requesting it again")
            requests.append(land_run_request(claim, check.days, graph))
        else:
            pending.remove(claim)
            events.append(_quarantined(context, lake, check))
    for table in RAW_TABLES:
        for file in dropped_files(lake, table):
            try:
                check = check_landing(lake, table, file, window, pending=pending)
                if check.waiting_for:
                    context.log.info(
                        f"{table}/{file.name} refers to rows that {', '.join(check.waiting_for)} is "
                        "still landing; it waits for that run (re-execute it if it failed)"
                    )
                elif not check.usable:
                    events.append(_quarantined(context, lake, check))
                else:
                    claim = claim_file(lake, table, file)
                    pending.append(claim)
                    requests.append(land_run_request(claim, check.days, graph))
                    context.log.info(
                        f"{table}/{file.name}: {check.validation.good.height:,} rows to land "
                        f"({check.days[0]} .. {check.days[-1]}); requesting a land_job run"
                    )
            except OSError as exc:  # a file that vanished or cannot be read must not stop the others
                context.log.error(f"{table}/{file.name} could not be handled ({exc}); the next tick tries again")
    if not requests and not events:
        return dg.SensorResult(skip_reason=f"no new files in {lake.landing}/<table>/", asset_events=[])
    return dg.SensorResult(run_requests=requests, asset_events=events)
