"""Raw platform tables: the simulator's output landed as daily Parquet partitions."""

import dagster as dg

from assets.metadata import add_partition_metadata, partition_days, preview, table_schema
from ml.landing import check_raw_lake
from ml.simulator import EVENT_TIME, GROUND_TRUTH_TABLES, RAW_TABLES, partition_date, simulate_days
from orchestration.partitions import daily_partitions
from orchestration.resources import LakehouseResource

DESCRIPTIONS = {
    "users": "Accounts by signup day (the first day also holds every older account): country, "
    "language, hashed device and IP fingerprints, verified flag, follower count.",
    "content": "Posts, comments, video comments and direct messages by creation day, with the "
    "real corpus text, surface, language and link/phone flags.",
    "reports": "User reports by report time: reporter, reason (a policy) and time. Includes false "
    "reports and brigades.",
    "decisions": "Human moderator decisions by decision time: policy, action (remove, restrict, "
    "no_action), moderator, and whether the review came from a report or a proactive sample.",
    "appeals": "Appeals of enforcements by resolution time, with outcome (upheld or overturned).",
    "qa_audits": "A uniform random sample of all content with gold policy labels from QA "
    "auditors: the unbiased ground for prevalence and model evaluation.",
}

RAW_SPECS = [
    dg.AssetSpec(
        key=table,
        group_name="raw",
        description=DESCRIPTIONS[table],
        kinds={"parquet", "polars"},
        partitions_def=daily_partitions,
        metadata={"event_time_column": EVENT_TIME[table]},
    )
    for table in RAW_TABLES
]


@dg.multi_asset(
    specs=RAW_SPECS,
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=False,
)
def raw_platform_tables(context: dg.AssetExecutionContext, lakehouse: LakehouseResource):
    """Simulate the selected days once and land every raw table, one file per day; then check every
    raw file changed since it last passed the raw data rules, and quarantine any that breaks them."""
    days = partition_days(context)
    config = lakehouse.sim_config
    pool, source = lakehouse.text_pool()
    if source == "builtin":
        context.log.warning("No corpora directory: the platform posts built-in template texts.")
    tables = simulate_days(config, pool, days[0], days[-1])
    lake = lakehouse.lake
    for table in (*RAW_TABLES, *GROUND_TRUTH_TABLES):
        frame = tables[table]
        part = partition_date(table, frame, config)
        root = lake.ground_truth if table in GROUND_TRUTH_TABLES else lake.raw
        for day in days:
            lake.write_partition(table, day, frame.filter(part == day), root=root)
    # Every raw file changed since it last passed, old partitions included: a bad file anywhere
    # fails dbt's source tests on every later run, so it leaves the lake before dbt reads it.
    checked = check_raw_lake(lake)
    for q in checked.quarantined:
        context.log.warning(
            f"{q.table}: {q.source} broke the raw data rules and was moved to {q.quarantined} "
            f"({'; '.join(p.describe(limit=5) for p in q.validation.problems)}); "
            f"{q.rows_kept:,} good rows kept in the lake. The reason file beside it says what to do.")
    for table in RAW_TABLES:
        frame = tables[table]
        part = partition_date(table, frame, config)
        # Each day's materialization carries that day's rows; what the whole run shares (schema,
        # where it lives, files quarantined anywhere in the lake by this run) is on every day.
        for day in days:
            landed = frame.filter(part == day)
            add_partition_metadata(context, day, {"dagster/row_count": landed.height, "preview": preview(landed)},
                                   asset_key=table)
        quarantined = checked.for_table(table)
        yield dg.MaterializeResult(
            asset_key=table,
            metadata={
                "dagster/column_schema": table_schema(frame),
                "days_in_run": len(days),
                "text_source": source,
                "path": dg.MetadataValue.path(str(lake.raw / table)),
                "quarantined_files": len(quarantined),
                **({"quarantine": dg.MetadataValue.md("\n".join(
                    f"- `{q.source}` -> `{q.quarantined}`: {', '.join(p.rule for p in q.validation.problems)}"
                    for q in quarantined))} if quarantined else {}),
            },
        )
