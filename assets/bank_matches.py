"""`bank_matches` (group `images`, with the ingest): each day's content matched against the hash banks, read
by `training_set` (the risk model's bank features), `content_scores`, the shadow, the launch backtest and the
monitoring reference. In a module of its own, apart from `hash_banks`
(assets/banks.py, which declares both), so its code version follows only the matching code it runs, not
how banks are built from removals.
"""

from datetime import datetime, time, timedelta

import dagster as dg
import polars as pl

from assets.metadata import add_partition_metadata, markdown_table, partition_days
from assets.resources import LakehouseResource
from ml.features.images import codes_of, image_text_table
from ml.matching.bank_matches import BANK_MATCHES, match_items
from ml.matching.bank_sources import applicable, read_bank_table
from ml.matching.threshold import DEFAULT_RADIUS


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
