"""Known-bad matching (ml/matching/): `hash_banks`, every bank's entries with provenance, and `bank_matches`
(assets/bank_matches.py), each day's content matched against them; both in group `images`, built with the
ingest, so everything that acts on a day reads its matches: `content_scores` (the enforcement policy's
`bank_match` rule in batch), the shadow, and the launch backtest (a launch's predicted removals include the
bank rule's).

`banks_assets` makes them over the platform's days, which the deployment decides:
orchestration/definitions.py passes them in.
"""

import dagster as dg
import polars as pl

from assets.bank_matches import bank_matches
from assets.metadata import markdown_table, table_schema
from assets.resources import LakehouseResource
from ml.campaigns.features import confirmed_removals
from ml.features.images import IMAGE_TEXT, bank_codes, codes_of, image_text_table
from ml.matching.bank_matches import BANK_MATCHES
from ml.matching.bank_sources import (
    HASH_BANKS,
    bank_table,
    imported_entries,
    imports_version,
    removal_entries,
    upheld_removals,
    write_bank_table,
)
from ml.matching.pdq import codes_to_hex


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
            group_name="images",
            kinds={"faiss", "parquet"},
            partitions_def=partitions,
            backfill_policy=dg.BackfillPolicy.single_run(),
            deps=["content", IMAGE_TEXT, HASH_BANKS],
        )(bank_matches),
    ]
