"""Known-bad matching (ml/matching/): `hash_banks`, every bank's entries with provenance (group `images`,
built with the ingest), and `bank_matches`, each day's content matched against them (group `scoring`,
read by `content_scores`, so the enforcement policy's `bank_match` rule acts in batch).

`banks_assets` makes them over the platform's days, which the deployment decides:
orchestration/definitions.py passes them in.
"""

from datetime import datetime, time, timedelta

import dagster as dg
import polars as pl

from assets.metadata import add_partition_metadata, markdown_table, partition_days, table_schema
from assets.resources import LakehouseResource
from ml.campaigns.features import confirmed_removals
from ml.features.images import IMAGE_TEXT, bank_codes, codes_of, image_text_table
from ml.matching.bank_matches import BANK_MATCHES, match_items
from ml.matching.bank_sources import (
    HASH_BANKS,
    applicable,
    bank_table,
    imported_entries,
    imports_version,
    read_bank_table,
    removal_entries,
    upheld_removals,
    write_bank_table,
)
from ml.matching.pdq import codes_to_hex
from ml.matching.threshold import DEFAULT_RADIUS


def banked_images(image_text: pl.DataFrame) -> pl.DataFrame:
    """media_sha256, ocr_text, pdq, robust, pdq_quality of every image read (what a bank keeps of it)."""
    codes, quality = codes_of(image_text)
    kept = bank_codes(codes)
    return pl.DataFrame(
        {
            "media_sha256": image_text["media_sha256"],
            "ocr_text": image_text["text"],
            "pdq": image_text["pdq"],
            "robust": codes_to_hex(kept[:, 1]) if len(kept) else [],
            "pdq_quality": quality,
        },
        schema_overrides={"pdq": pl.String, "robust": pl.String, "ocr_text": pl.String},
    ).with_columns(pl.when(pl.col("pdq") == "").then(None).otherwise(pl.col("robust")).alias("robust"))


def hash_banks(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    """Every hash bank's known-bad entries with where each came from: the confirmed removals (removals an
    appeal upheld or QA found violating, never overturned: PDQ codes of removed images from image_text,
    the text OCR read in them, removed texts), and every bank imported with `trustlake bank import`.
    One table, replaced atomically; serving and bank_matches read it. Its data version fingerprints the
    imports: a removal's entry is dated, so a new day's removals change no day already matched."""
    lake = lakehouse.lake
    raw = {t: lake.read_table(t).drop("date") for t in ("content", "decisions", "appeals", "qa_audits")}
    upheld = upheld_removals(
        confirmed_removals(raw["decisions"], raw["appeals"]), raw["decisions"], raw["appeals"], raw["qa_audits"]
    )
    removals, skipped = removal_entries(upheld, raw["content"], banked_images(image_text_table(lake)))
    imported = imported_entries(lake)
    table = bank_table(removals, imported)
    write_bank_table(lake, table)
    summary = table.group_by("bank", "source", "kind", "policy").len().sort("bank", "kind", "policy")
    context.log.info(
        f"hash_banks: {table.height} entries ({len(removals)} from {upheld.height} confirmed removals, "
        f"{imported.height} imported); not banked: {skipped}"
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(imports_version(lake)),
        metadata={
            "dagster/row_count": table.height,
            "dagster/column_schema": table_schema(table),
            "confirmed_removals": upheld.height,
            "removal_entries": len(removals),
            "imported_entries": imported.height,
            **{f"not_banked/{reason}": n for reason, n in skipped.items()},
            "entries": dg.MetadataValue.md(markdown_table(summary.rename({"len": "entries"}))),
            "path": dg.MetadataValue.path(str(lake.hash_banks)),
        },
    )


def bank_matches(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    """Each day's posts matched against every hash bank as it stood at the end of that day (imported banks
    whenever imported): image posts by PDQ within radius DEFAULT_RADIUS (ml/matching/threshold.py: chosen
    from data; ThreatExchange's 31 is the reference) and by the text OCR read in them, text posts by
    near-duplicate text (Jaccard >= 0.5). One row per match with the entry's provenance; the closest per
    item is what content_scores hands the enforcement policy. A removed post never matches its own entry."""
    lake = lakehouse.lake
    days = partition_days(context)
    table = read_bank_table(lake)
    if table is None:
        raise dg.Failure("no hash_banks table yet: materialize hash_banks (ingest_job) first")
    content = lake.read_table("content").drop("date")
    todays = content.filter(pl.col("created_at").dt.date().is_between(days[0], days[-1])).sort("content_id")
    read = image_text_table(lake).select("media_sha256", "text", "pdq_codes", "pdq_quality")
    items = todays.join(read.rename({"text": "ocr_text"}), on="media_sha256", how="left", maintain_order="left")
    total = 0
    for day in days:
        of_day = items.filter(pl.col("created_at").dt.date() == day)
        codes, quality = codes_of(of_day.select(pl.col("pdq_codes").fill_null(b""), "pdq_quality"))
        texts = of_day.select(
            pl.when(pl.col("media_type") == "image").then(pl.col("ocr_text")).otherwise(pl.col("text")).fill_null("")
        ).to_series()
        entries = applicable(table, datetime.combine(day + timedelta(days=1), time()))
        matches = match_items(entries, of_day["content_id"].to_numpy(), codes, quality, texts.to_list(), DEFAULT_RADIUS)
        lake.write_partition(BANK_MATCHES, day, matches, root=lake.scores)
        total += matches.height
        by_bank = matches.filter("closest").group_by("bank", "kind").len().sort("bank", "kind")
        add_partition_metadata(
            context,
            day,
            {
                "dagster/row_count": matches.height,
                "items": of_day.height,
                "items_matched": matches["content_id"].n_unique(),
                "bank_entries": entries.height,
                "closest_by_bank": dg.MetadataValue.md(markdown_table(by_bank.rename({"len": "items"}))),
            },
        )
    return dg.MaterializeResult(
        metadata={
            "radius": DEFAULT_RADIUS,
            "days_in_run": len(days),
            "matches_in_run": total,
            "path": dg.MetadataValue.path(str(lake.scores / BANK_MATCHES)),
        }
    )


def banks_assets(partitions: dg.TimeWindowPartitionsDefinition) -> list[dg.AssetsDefinition]:
    return [
        dg.asset(
            name=HASH_BANKS,
            group_name="images",
            kinds={"polars", "parquet"},
            deps=["content", "decisions", "appeals", "qa_audits", IMAGE_TEXT],
        )(hash_banks),
        dg.asset(
            name=BANK_MATCHES,
            group_name="scoring",
            kinds={"faiss", "parquet"},
            partitions_def=partitions,
            backfill_policy=dg.BackfillPolicy.single_run(),
            deps=["content", IMAGE_TEXT, HASH_BANKS],
        )(bank_matches),
    ]
