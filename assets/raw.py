"""Raw platform tables: the simulator's output, or a landed external file, as daily Parquet partitions.

`raw_assets` makes the asset over the platform's days, which the deployment decides (its first day is
pinned per home): orchestration/definitions.py passes them in.
"""

from datetime import date

import dagster as dg
from pydantic import Field

from assets.metadata import add_partition_metadata, partition_days, preview, table_schema
from assets.resources import LakehouseResource
from ml.raw.contracts import CONTRACTS, RAW_TABLES
from ml.raw.lake_check import check_raw_lake
from ml.raw.landing import Claim, LandedFile, LandingError, ingest_claim
from ml.simulator import GROUND_TRUTH_TABLES, partition_date, simulate_days

DESCRIPTIONS = {
    "users": "Accounts by signup day (the first day also holds every older account): country, "
    "language, hashed device and IP fingerprints, verified flag, follower count.",
    "content": "Posts, comments, video comments and direct messages by creation day, with the "
    "real corpus text, surface, language and link/phone flags. Image posts (media_type image) carry their "
    "caption as text and reference their file, stored once per distinct image under lake/media/.",
    "reports": "User reports by report time: reporter, reason (a policy) and time. Includes false "
    "reports and brigades.",
    "decisions": "Human moderator decisions by decision time: policy, action (remove, restrict, "
    "no_action), moderator, and whether the review came from a report or a proactive sample.",
    "appeals": "Appeals of enforcements by resolution time, with outcome (upheld or overturned).",
    "qa_audits": "A uniform random sample of all content with gold policy labels from QA "
    "auditors: the unbiased ground for prevalence and model evaluation.",
}


def partition_bounds(partitions_def: dg.TimeWindowPartitionsDefinition) -> tuple[date, date]:
    """The first and last day of the lake's daily partitions now: the days a landed row may have."""
    return (
        date.fromisoformat(partitions_def.get_first_partition_key()),
        date.fromisoformat(partitions_def.get_last_partition_key()),
    )


class RawTablesConfig(dg.Config):
    """Where a run's raw rows come from: the simulator (the default) or one landed file."""

    landed_file: str = Field(
        default="",
        description="Land this file instead of simulating: a claim `<table>/<fingerprint>-<file name>` under "
        "<home>/lake/landing/_ingesting/, set by landing_sensor and `trustlake land`. Its checked rows go to "
        "the raw partitions of their days as landed-<fingerprint>.parquet; the run selects only that table.",
    )


def raw_platform_tables(context: dg.AssetExecutionContext, config: RawTablesConfig, lakehouse: LakehouseResource):
    """Simulate the selected days once and land every selected raw table, one file per day; then check every
    raw file changed since it last passed the raw data rules, and quarantine any that breaks them. With
    `landed_file` set, land that checked external file instead (docs/operations.md, "Landing external data")."""
    if config.landed_file:
        yield _land_file(context, lakehouse, config.landed_file)
        return
    selected = [t for t in RAW_TABLES if dg.AssetKey(t) in context.selected_asset_keys]
    days = partition_days(context)
    sim_config = lakehouse.sim_config
    pool, source = lakehouse.text_pool()
    if source == "builtin":
        context.log.warning("No corpora directory: the platform posts built-in template texts.")
    tables = simulate_days(sim_config, pool, days[0], days[-1])
    lake = lakehouse.lake
    # Image files before the rows that reference them, so no reader meets a post whose file is missing.
    images_written = (
        sum(lake.write_media(path, data) for path, data in tables["media"].select("media_path", "data").iter_rows())
        if "content" in selected
        else 0
    )
    for table in (*selected, *GROUND_TRUTH_TABLES):
        frame = tables[table]
        part = partition_date(table, frame, sim_config)
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
            f"{q.rows_kept:,} good rows kept in the lake. The reason file beside it says what to do."
        )
    for table in selected:
        frame = tables[table]
        part = partition_date(table, frame, sim_config)
        # Each day's materialization carries that day's rows; what the whole run shares (schema,
        # where it lives, files quarantined anywhere in the lake by this run) is on every day.
        for day in days:
            landed = frame.filter(part == day)
            add_partition_metadata(
                context, day, {"dagster/row_count": landed.height, "preview": preview(landed)}, asset_key=table
            )
        quarantined = checked.for_table(table)
        yield dg.MaterializeResult(
            asset_key=table,
            metadata={
                "dagster/column_schema": table_schema(frame),
                "days_in_run": len(days),
                "text_source": source,
                "path": dg.MetadataValue.path(str(lake.raw / table)),
                "quarantined_files": len(quarantined),
                **(
                    {
                        "image_files": tables["media"].height,
                        "image_files_written": images_written,
                        "media": dg.MetadataValue.path(str(lake.media)),
                    }
                    if table == "content"
                    else {}
                ),
                **(
                    {
                        "quarantine": dg.MetadataValue.md(
                            "\n".join(
                                f"- `{q.source}` -> `{q.quarantined}`: {', '.join(p.rule for p in q.validation.problems)}"
                                for q in quarantined
                            )
                        )
                    }
                    if quarantined
                    else {}
                ),
            },
        )


def raw_assets(partitions: dg.TimeWindowPartitionsDefinition) -> list[dg.AssetsDefinition]:
    specs = [
        dg.AssetSpec(
            key=table,
            group_name="raw",
            description=DESCRIPTIONS[table],
            kinds={"parquet", "polars"},
            partitions_def=partitions,
            metadata={"event_time_column": CONTRACTS[table].event_time},
        )
        for table in RAW_TABLES
    ]
    return [
        dg.multi_asset(
            specs=specs, partitions_def=partitions, backfill_policy=dg.BackfillPolicy.single_run(), can_subset=True
        )(raw_platform_tables)
    ]


def _land_file(context: dg.AssetExecutionContext, lakehouse: LakehouseResource, name: str) -> dg.MaterializeResult:
    """Land one claimed external file (ml.raw.landing.ingest_claim) in the run's partitions."""
    lake = lakehouse.lake
    try:
        claim = Claim.from_name(lake, name)
        if set(context.selected_asset_keys) != {dg.AssetKey(claim.table)}:
            raise LandingError(
                f"a land run of {name} materializes the raw table {claim.table} alone, not "
                f"{sorted(k.to_user_string() for k in context.selected_asset_keys)}"
            )
        days = partition_days(context)
        landed = ingest_claim(lake, claim, partition_bounds(context.assets_def.partitions_def), (days[0], days[-1]))
    except LandingError as exc:
        raise dg.Failure(str(exc)) from None
    if landed.validation is None:
        context.log.info(f"{name} was handled by an earlier run; its {landed.rows:,} rows are in the lake.")
    elif landed.quarantined:
        context.log.warning(
            f"{claim.table}: {claim.original_name} broke the raw data rules "
            f"({'; '.join(p.describe(limit=5) for p in landed.validation.problems)}); its {landed.rows:,} good rows "
            f"landed and the file was moved to {landed.quarantined}. The reason file beside it says what to do."
        )
    return dg.MaterializeResult(asset_key=claim.table, metadata=landed_metadata(landed))


def landed_metadata(landed: LandedFile) -> dict:
    problems = landed.validation.problems if landed.validation else ()
    return {
        "dagster/row_count": landed.rows,
        "dagster/column_schema": table_schema(CONTRACTS[landed.claim.table].empty()),
        "source": "landing",
        "landed_file": landed.claim.original_name,
        "fingerprint": landed.claim.fingerprint,
        "rows_per_day": dg.MetadataValue.json({d.isoformat(): n for d, n in sorted(landed.rows_per_day.items())}),
        "bad_rows": landed.validation.bad_rows if landed.validation else 0,
        "quarantined_files": int(landed.quarantined is not None),
        **(
            {
                "quarantine": dg.MetadataValue.md(
                    f"`{landed.quarantined}`:\n" + "\n".join(f"- {p.describe(limit=5)}" for p in problems)
                )
            }
            if landed.quarantined and problems
            else {}
        ),
        **({"path": dg.MetadataValue.path(str(landed.written[0].parent.parent))} if landed.written else {}),
    }
