"""The dbt warehouse as Dagster assets, and the read-only marts copy analysts use."""

import json
import time
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from ml.warehouse import (
    LOCK_WAIT_SECONDS,
    describe_tables,
    is_lock_error,
    lock_holder,
    publish_marts,
    retry_while_locked,
    wait_until_writable,
)
from orchestration.partitions import daily_partitions
from orchestration.resources import LakehouseResource
from orchestration.warehouse_project import dbt_project, export_dbt_environment

DUCKDB_POOL = "duckdb"
# Models built from the champion's scores; they run after scoring, not with the warehouse.
SCORING_MODELS = ("mart_review_queue",)
# Models built from the training run's label-issue table; they run with training.
TRAINING_MODELS = ("mart_label_issues",)
# Models built from the monitoring tables and the ops alert log; they run after monitoring.
MONITORING_MODELS = ("mart_model_monitoring", "ops_alerts")

class TrustlakeDbtTranslator(DagsterDbtTranslator):
    """Every dbt node in group `warehouse`; sources map onto the raw lake assets by name."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source":
            return spec.replace_attributes(key=dg.AssetKey(props["name"]))
        layer = props.get("fqn", ["", ""])[1] if len(props.get("fqn", [])) > 2 else "marts"
        group = ("scoring" if props["name"] in SCORING_MODELS else
                 "training" if props["name"] in TRAINING_MODELS else
                 "monitoring" if props["name"] in MONITORING_MODELS else "warehouse")
        return spec.replace_attributes(
            key=dg.AssetKey(props["name"]), group_name=group
        ).merge_attributes(kinds={"dbt", "duckdb"}, tags={"layer": layer})

translator = TrustlakeDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_source_tests_as_checks=True)
)

# Both dbt asset definitions: same manifest, translator, daily partitions and DuckDB pool.
DBT_ASSET_ARGS = dict(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=translator,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DUCKDB_POOL,
)


@dbt_assets(exclude=" ".join(SCORING_MODELS + TRAINING_MODELS + MONITORING_MODELS), **DBT_ASSET_ARGS)
def warehouse_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseResource) -> Iterator:
    """dbt build of the selected days: staging views, intermediate tables, incremental facts, marts."""
    yield from run_dbt_build(context, dbt, lakehouse)


def run_dbt_build(context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseResource) -> Iterator:
    """`dbt build` of this asset's selection for the partition window, with row counts and schemas.

    A process outside the pipeline holding trustlake.duckdb (an analyst's session, the orphaned
    dbt of a killed run) makes the build wait for it, bounded by LOCK_WAIT_SECONDS, then fail
    naming it; a build that lost the race for the lock to such a process is run again.
    """
    lake = lakehouse.lake
    export_dbt_environment(lake)
    args = ["build"]
    if context.has_partition_key_range or context.has_partition_key:
        window = context.partition_time_window
        args += ["--vars", json.dumps({"min_date": window.start.date().isoformat(),
                                       "max_date": (window.end.date() - timedelta(days=1)).isoformat()})]
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        wait_until_writable(lake.warehouse_db, max(0.0, deadline - time.monotonic()), on_wait=context.log.warning)
        invocation = dbt.cli(args, context=context, raise_on_error=False)
        # Collect first: row counts are read after dbt has released the DuckDB file lock, and a
        # build that could not lock the file yields nothing.
        events = list(invocation.stream())
        if invocation.is_successful() or not is_lock_error(invocation.get_error()):
            break
        if time.monotonic() >= deadline:
            raise dg.Failure(f"dbt could not lock {lake.warehouse_db}: {lock_holder(invocation.get_error())} kept it "
                             f"open for {LOCK_WAIT_SECONDS:.0f} s. Close it and run again; analysts query "
                             f"{lake.marts_db} (docs/operations.md, 'Warehouse locks and recovery').")
        context.log.warning(f"dbt could not lock {lake.warehouse_db} ({lock_holder(invocation.get_error())} opened "
                            "it first); building again once it is closed.")
    names = {e.output_name: context.asset_key_for_output(e.output_name).path[-1]
             for e in events if isinstance(e, dg.Output)}
    tables = retry_while_locked(lambda: describe_tables(lake.warehouse_db, list(names.values())),
                                lake.warehouse_db, on_wait=context.log.warning)
    for event in events:
        if isinstance(event, dg.Output) and names[event.output_name] in tables:
            rows, schema = tables[names[event.output_name]]
            event = event.with_metadata({**event.metadata, "dagster/row_count": rows,
                                         "dagster/column_schema": schema_metadata(schema)})
        yield event
    if not invocation.is_successful():
        raise dg.Failure(f"dbt build failed; see the failed models and checks above. {invocation.get_error()}")

@dbt_assets(select=" ".join(SCORING_MODELS), name="review_queue_models", **DBT_ASSET_ARGS)
def review_queue_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseResource) -> Iterator:
    """The review queue from the champion's scores, then a fresh publication of marts.duckdb."""
    yield from run_dbt_build(context, dbt, lakehouse)
    lake = lakehouse.lake
    publish_marts(lake.warehouse_db, lake.marts_db, on_wait=context.log.warning)


@dbt_assets(select=" ".join(TRAINING_MODELS), name="label_quality_models", manifest=dbt_project.manifest_path,
            project=dbt_project, dagster_dbt_translator=translator, pool=DUCKDB_POOL)
def label_quality_models(context: dg.AssetExecutionContext, dbt: DbtCliResource,
                         lakehouse: LakehouseResource) -> Iterator:
    """mart_label_issues from the training run's label issues, then a fresh publication of marts.duckdb."""
    yield from run_dbt_build(context, dbt, lakehouse)
    lake = lakehouse.lake
    publish_marts(lake.warehouse_db, lake.marts_db, on_wait=context.log.warning)


def schema_metadata(schema: list[tuple[str, str]]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, dtype) for name, dtype in schema])

MART_KEYS = [
    "fct_content", "fct_moderation_actions", "dim_users", "mart_policy_daily", "mart_prevalence_daily",
    "mart_appeals", "mart_moderator_quality", "mart_review_sla", "mart_reporter_quality", "training_labels",
]

@dg.asset(
    key="published_marts",
    deps=MART_KEYS,
    group_name="warehouse",
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def published_marts(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    """The analysts' read-only copy of every mart, `<home>/warehouse/marts.duckdb`, replaced
    atomically after a successful warehouse build so open readers never see half-built marts."""
    lake = lakehouse.lake
    counts = publish_marts(lake.warehouse_db, lake.marts_db, on_wait=context.log.warning)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(lake.marts_db)),
            "tables": len(counts),
            "rows": dg.MetadataValue.json(counts),
            "dagster/row_count": sum(counts.values()),
        }
    )

