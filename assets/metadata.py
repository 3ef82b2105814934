"""Materialization metadata that every trustlake asset reports the same way."""

from __future__ import annotations

import math
from datetime import date, timedelta

import dagster as dg
import polars as pl

# The metadata key of the observation an asset records when it declines to build this run (text_model
# without a GPU): why. orchestration/freshness.py counts such an asset as up to date until its inputs change.
DECLINED = "trustlake/not_built"

_DAGSTER_TYPE = {
    pl.Int64: "BIGINT",
    pl.Int32: "INTEGER",
    pl.Int16: "SMALLINT",
    pl.UInt32: "UINTEGER",
    pl.Float64: "DOUBLE",
    pl.Float32: "FLOAT",
    pl.Boolean: "BOOLEAN",
    pl.String: "VARCHAR",
    pl.Date: "DATE",
}


def table_schema(frame: pl.DataFrame) -> dg.TableSchema:
    cols = []
    for name, dtype in frame.schema.items():
        type_name = (
            _DAGSTER_TYPE.get(dtype.base_type(), str(dtype)) if not isinstance(dtype, pl.Datetime) else "TIMESTAMP"
        )
        cols.append(dg.TableColumn(name, type_name))
    return dg.TableSchema(columns=cols)


def preview(frame: pl.DataFrame, rows: int = 5, width: int = 60) -> dg.MetadataValue:
    head = frame.head(rows).with_columns(
        pl.col(c).str.slice(0, width) for c, t in frame.schema.items() if t == pl.String
    )
    header = "| " + " | ".join(head.columns) + " |"
    rule = "|" + "---|" * len(head.columns)
    body = [
        "| " + " | ".join(str(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |" for row in head.iter_rows()
    ]
    return dg.MetadataValue.md("\n".join([header, rule, *body]))


def frame_metadata(frame: pl.DataFrame) -> dict:
    return {
        "dagster/row_count": frame.height,
        "dagster/column_schema": table_schema(frame),
        "preview": preview(frame),
    }


def markdown_table(frame: pl.DataFrame, digits: int = 3) -> str:
    """A small frame as a markdown table, floats rounded for people."""

    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.{digits}f}" if math.isfinite(v) else ""
        return "" if v is None else str(v)

    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns)
    return head + "".join("\n| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows())


def image_markdown(path: str, alt: str) -> dg.MetadataValue:
    """A PNG shown inline in the UI (a data URI in markdown), with the file's path under it."""
    import base64
    from pathlib import Path

    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{data})\n\n`{path}`")


def partition_days(context: dg.AssetExecutionContext) -> list[date]:
    """The days a run targets (one, or a range in a single-run backfill); [] when unpartitioned."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return []
    window = context.partition_time_window
    first = window.start.date()
    return [first + timedelta(days=i) for i in range((window.end.date() - first).days)]


def rounded(value: float | None, digits: int = 3) -> float | None:
    """A number for people: rounded, and None (left out) rather than NaN or infinity."""
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def add_partition_metadata(
    context: dg.AssetExecutionContext, day: date, metadata: dict, asset_key: str | None = None
) -> None:
    """Metadata that describes one day of a (possibly ranged) run, recorded on that day's
    materialization only; entries that are None are left out."""
    context.add_asset_metadata(
        {k: v for k, v in metadata.items() if v is not None}, asset_key=asset_key, partition_key=day.isoformat()
    )
