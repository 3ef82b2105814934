"""The dbt warehouse as Dagster assets, and the read-only marts copy analysts use.

`warehouse_assets` makes them over the platform's days, which the deployment decides (its first day is
pinned per home): orchestration/definitions.py passes them in.
"""

import json
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
import polars as pl
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from assets.automation import automation_condition_for
from assets.metadata import markdown_table, partition_days
from assets.ownership import owners_for
from assets.resources import LakehouseResource
from assets.warehouse_project import dbt_project
from ml.taxonomy import VOCABULARIES
from ml.warehouse import (
    LOCK_WAIT_SECONDS,
    MARTS_SCHEMA,
    describe_tables,
    is_lock_error,
    lock_holder,
    publish_marts,
    retry_while_locked,
    rows_by_day,
    wait_until_writable,
)

DUCKDB_POOL = "duckdb"
# Models built from the champion's scores and what the enforcement policy reads beside them (bank matches,
# campaigns); they run after scoring, not with the warehouse. mart_campaigns reads the campaigns asset,
# which waits for the warehouse build's source checks on the raw tables it reads, so a warehouse-time
# mart_campaigns would split that build into two dbt invocations.
SCORING_MODELS = ("mart_review_queue", "mart_shadow_comparison", "mart_bank_matches", "mart_campaigns")
# Models built from the training run's label-issue table; they run with training.
TRAINING_MODELS = ("mart_label_issues",)
# Models built from the monitoring tables, the ops alert log and the models' audit log; they run after monitoring.
MONITORING_MODELS = ("mart_model_monitoring", "ops_alerts", "mart_model_launches")


class TrustlakeDbtTranslator(DagsterDbtTranslator):
    """Keys, groups, owners, automation and check descriptions of every dbt node, in one place.

    Sources map onto the raw lake assets by name; models go to group `warehouse`, except the
    ones built from scores (`scoring`) or from training's label issues (`training`).
    """

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source":
            return spec.replace_attributes(key=dg.AssetKey(props["name"]))
        layer = props.get("fqn", ["", ""])[1] if len(props.get("fqn", [])) > 2 else "marts"
        group = (
            "scoring"
            if props["name"] in SCORING_MODELS
            else "training"
            if props["name"] in TRAINING_MODELS
            else "monitoring"
            if props["name"] in MONITORING_MODELS
            else "warehouse"
        )
        key = dg.AssetKey(props["name"])
        partition_column = _model_meta(props).get("partition_column")
        return spec.replace_attributes(
            key=key,
            group_name=group,
            owners=owners_for(group),
            automation_condition=automation_condition_for(key),
        ).merge_attributes(
            kinds={"dbt", "duckdb"},
            tags={"layer": layer},
            metadata={"partition_column": partition_column} if partition_column else {},
        )

    def get_asset_check_spec(
        self, asset_spec: dg.AssetSpec, manifest: Mapping[str, Any], unique_id: str, project
    ) -> dg.AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        return spec._replace(
            description=describe_dbt_test(manifest["nodes"][unique_id], spec.asset_key.to_user_string())
        )


def _model_meta(props: Mapping[str, Any]) -> Mapping[str, Any]:
    return {**(props.get("meta") or {}), **((props.get("config") or {}).get("meta") or {})}


def describe_dbt_test(test: Mapping[str, Any], tested: str) -> str:
    """A sentence saying what a dbt test asserts: its own description, a singular test's leading
    `--` comment, or one built from the generic test's name and arguments."""
    if test.get("description"):
        return test["description"]
    generic = test.get("test_metadata") or {}
    if not generic:
        comments = [
            line.strip()[2:].strip() for line in test.get("raw_code", "").splitlines() if line.strip().startswith("--")
        ]
        return " ".join(comments) or f"dbt test {test['name']}: fails when its query returns rows."
    args = generic.get("kwargs") or {}
    col = f"`{args.get('column_name')}`" if args.get("column_name") else "the row"
    name = generic.get("name")
    said = {
        "unique": f"{col} is unique",
        "not_null": f"{col} is never null",
        "accepted_values": f"{col} is one of {', '.join(map(str, _accepted_values(args.get('values'))))}",
        "accepted_range": f"{col} lies in [{args.get('min_value', '-inf')}, {args.get('max_value', 'inf')}]",
        "relationships": f"every {col} exists as `{args.get('field')}` in {str(args.get('to', '')).strip()}",
        "not_in_future": f"{col} is at most {args.get('tolerance_hours')} h in the future",
        "not_before": f"{col} is never before `{args.get('other_column')}`",
        "unique_combination": f"({', '.join(args.get('combination') or [])}) is unique",
        "expression_is_true": f"`{args.get('expression')}` holds on every row",
    }.get(name, f"dbt test `{name}` holds on {col}")
    return f"{said[0].upper()}{said[1:]} in `{tested}` (dbt test `{name}`; failing rows are counted in the check's metadata)."


def _accepted_values(values: Any) -> list:
    """The values an accepted_values test allows: a list, or a vocabulary dbt reads as a var
    (`"{{ var('policies') }}"`, assets/dbt_inputs.py), shown as the values in force."""
    if isinstance(values, str):
        found = re.fullmatch(r"\{\{\s*var\(['\"](\w+)['\"]\)\s*\}\}", values.strip())
        if found and found.group(1) in VOCABULARIES:
            return list(VOCABULARIES[found.group(1)])
        return [values]
    return list(values or [])


translator = TrustlakeDbtTranslator(
    settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_source_tests_as_checks=True)
)


def dbt_asset_args(partitions: dg.PartitionsDefinition | None) -> dict:
    """What every dbt asset definition shares: the manifest, the translator, the DuckDB pool, and the
    daily partitions (with one run per backfill) unless it is built whole."""
    return dict(
        manifest=dbt_project.manifest_path,
        project=dbt_project,
        dagster_dbt_translator=translator,
        pool=DUCKDB_POOL,
        **({"partitions_def": partitions, "backfill_policy": dg.BackfillPolicy.single_run()} if partitions else {}),
    )


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
    lake.warehouse_dir.mkdir(parents=True, exist_ok=True)
    args = ["build"]
    days = partition_days(context)
    if days:
        args += ["--vars", json.dumps({"min_date": days[0].isoformat(), "max_date": days[-1].isoformat()})]
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
            raise dg.Failure(
                f"dbt could not lock {lake.warehouse_db}: {lock_holder(invocation.get_error())} kept it "
                f"open for {LOCK_WAIT_SECONDS:.0f} s. Close it and run again; analysts query "
                f"{lake.marts_db} (docs/operations.md, 'Warehouse locks and recovery')."
            )
        context.log.warning(
            f"dbt could not lock {lake.warehouse_db} ({lock_holder(invocation.get_error())} opened "
            "it first); building again once it is closed."
        )
    keys = {e.output_name: context.asset_key_for_output(e.output_name) for e in events if isinstance(e, dg.Output)}
    names = {output: key.path[-1] for output, key in keys.items()}
    tables = retry_while_locked(
        lambda: describe_tables(lake.warehouse_db, list(names.values())), lake.warehouse_db, on_wait=context.log.warning
    )
    # A model with a partition column (its YAML meta) reports each day's own rows on that day's
    # partition; any other model reports only the whole table, which no day owns.
    dated = {names[o]: context.assets_def.specs_by_key[k].metadata.get("partition_column") for o, k in keys.items()}
    dated = {name: column for name, column in dated.items() if column} if days else {}
    per_day = (
        retry_while_locked(
            lambda: rows_by_day(lake.warehouse_db, dated, days[0], days[-1]),
            lake.warehouse_db,
            on_wait=context.log.warning,
        )
        if dated
        else {}
    )
    for event in events:
        if isinstance(event, dg.Output) and names[event.output_name] in tables:
            name = names[event.output_name]
            rows, schema = tables[name]
            metadata = {
                **{k: round(v, 3) if isinstance(v, float) else v for k, v in event.metadata.items()},
                "table_row_count": rows,
                "dagster/column_schema": schema_metadata(schema),
            }
            if not days:
                metadata["dagster/row_count"] = rows
            for day in days if name in per_day else ():
                context.add_asset_metadata(
                    {"dagster/row_count": per_day[name].get(day, 0)},
                    asset_key=keys[event.output_name],
                    partition_key=day.isoformat(),
                )
            event = event.with_metadata(metadata)
        yield event
    if not invocation.is_successful():
        raise dg.Failure(f"dbt build failed; see the failed models and checks above. {invocation.get_error()}")


def review_queue_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseResource
) -> Iterator:
    """The review queue from the champion's scores and the shadow's comparison with them, then a fresh
    publication of marts.duckdb."""
    yield from run_dbt_build(context, dbt, lakehouse)
    lake = lakehouse.lake
    publish_marts(lake.warehouse_db, lake.marts_db, on_wait=context.log.warning)


@dbt_assets(select=" ".join(TRAINING_MODELS), name="label_quality_models", **dbt_asset_args(None))
def label_quality_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseResource
) -> Iterator:
    """mart_label_issues from the training run's label issues, then a fresh publication of marts.duckdb."""
    yield from run_dbt_build(context, dbt, lakehouse)
    lake = lakehouse.lake
    publish_marts(lake.warehouse_db, lake.marts_db, on_wait=context.log.warning)


def schema_metadata(schema: list[tuple[str, str]]) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(name, dtype) for name, dtype in schema])


def warehouse_marts(manifest: Mapping[str, Any]) -> list[str]:
    """The marts the warehouse build makes (dbt models in the `marts` schema outside the scoring,
    training and monitoring groups): what `published_marts` waits for. Read from the manifest, so
    a new mart is published without being listed again here."""
    later = {*SCORING_MODELS, *TRAINING_MODELS, *MONITORING_MODELS}
    return sorted(
        n["name"]
        for n in manifest["nodes"].values()
        if n["resource_type"] == "model" and n["config"].get("schema") == MARTS_SCHEMA and n["name"] not in later
    )


MART_KEYS = warehouse_marts(json.loads(dbt_project.manifest_path.read_text()))


def published_marts(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    """The analysts' read-only copy of every mart, `<home>/warehouse/marts.duckdb`, replaced
    atomically after a successful warehouse build so open readers never see half-built marts."""
    lake = lakehouse.lake
    counts = publish_marts(lake.warehouse_db, lake.marts_db, on_wait=context.log.warning)
    # The whole published file, which no single day owns: no per-partition row count.
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(lake.marts_db)),
            "tables": len(counts),
            "rows_by_table": dg.MetadataValue.md(
                markdown_table(pl.DataFrame({"table": list(counts), "rows": list(counts.values())}))
            ),
        }
    )


def warehouse_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    daily = dbt_asset_args(partitions)
    return [
        dbt_assets(exclude=" ".join(SCORING_MODELS + TRAINING_MODELS + MONITORING_MODELS), **daily)(warehouse_models),
        dg.asset(
            key="published_marts",
            deps=MART_KEYS,
            group_name="warehouse",
            kinds={"duckdb"},
            pool=DUCKDB_POOL,
            partitions_def=partitions,
            backfill_policy=dg.BackfillPolicy.single_run(),
        )(published_marts),
        label_quality_models,
        dbt_assets(select=" ".join(SCORING_MODELS), name="review_queue_models", **daily)(review_queue_models),
    ]
