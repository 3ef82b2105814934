"""Labelled reference sets landed as their own raw asset (not through the simulator)."""

from pathlib import Path

import dagster as dg
import polars as pl

from assets.metadata import markdown_table
from assets.resources import LakehouseResource
from ml.reference import land_reference, reference_frame, reference_inputs_version


@dg.asset(
    group_name="raw",
    kinds={"parquet", "polars"},
    description="Human-labelled reference sets, one folder per source under `lake/reference/`: the public "
    "corpora (each YouTube video is its own source) plus any set a team brought with `trustlake labels import`. "
    "One row per labelled record with source, original label, policy, text hash and label confidence.",
)
def reference_labels(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.MaterializeResult:
    lake = lakehouse.lake
    records, origin = lakehouse.labelled_records()
    if origin == "builtin":
        context.log.warning("No corpora directory: the reference set is the built-in template texts.")
    land_reference(lake, reference_frame(records))
    # Imported sets live beside the corpora; everything under lake/reference/ is what dbt reads.
    landed = pl.read_parquet(str(lake.reference / "*" / "*.parquet"))
    summary = (
        landed.group_by("source", "policy")
        .len()
        .pivot(on="policy", index="source", values="len")
        .fill_null(0)
        .sort("source")
    )
    # Its data version fingerprints its inputs outside the lake, so `trustlake run` sees a new corpus or
    # an imported label set (orchestration/freshness.py).
    corpora = lakehouse.corpora_dir or None
    return dg.MaterializeResult(
        data_version=dg.DataVersion(reference_inputs_version(Path(corpora) if corpora else None, lake)),
        metadata={
            "dagster/row_count": landed.height,
            "sources": landed["source"].n_unique(),
            "distinct_texts": landed["text_hash"].n_unique(),
            "text_origin": origin,
            "rows_by_source_and_policy": dg.MetadataValue.md(markdown_table(summary)),
            "path": dg.MetadataValue.path(str(lake.reference)),
        },
    )
