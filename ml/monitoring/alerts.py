"""Operational alerts: an append-only Parquet log, one file per failed run."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl

from ml.lake import write_parquet_atomic

OPS_ALERT_SCHEMA = {
    "alert_id": pl.String,
    "run_id": pl.String,
    "job_name": pl.String,
    "failed_steps": pl.String,
    "failed_assets": pl.String,
    "error": pl.String,
    "failed_at": pl.Datetime("us"),
    "partition_range": pl.String,
}
ERROR_LINES = 5


def first_lines(text: str | None, lines: int = ERROR_LINES, width: int = 2000) -> str:
    """The first non-empty lines of an error message, at most `width` characters."""
    kept = [line.rstrip() for line in (text or "").splitlines() if line.strip()][:lines]
    return "\n".join(kept)[:width]


def write_ops_alert(
    ops_dir: Path,
    run_id: str,
    job_name: str,
    failed_steps: list[str],
    failed_assets: list[str],
    error: str,
    failed_at: datetime,
    partition_range: str | None = None,
) -> Path:
    """Record one failed run as `<ops_dir>/ops_alerts/run-<run_id>.parquet`, written atomically.

    The file is named by the run, so recording the same failure twice (a sensor tick retried after a
    crash) rewrites the same row instead of adding a second one.
    """
    row = {
        "alert_id": f"run-{run_id}",
        "run_id": run_id,
        "job_name": job_name,
        "failed_steps": ", ".join(failed_steps),
        "failed_assets": ", ".join(failed_assets),
        "error": first_lines(error),
        "failed_at": failed_at.replace(tzinfo=None),
        "partition_range": partition_range,
    }
    target = Path(ops_dir) / "ops_alerts" / f"run-{run_id}.parquet"
    return write_parquet_atomic(pl.DataFrame([row], schema=OPS_ALERT_SCHEMA), target)


def read_ops_alerts(ops_dir: Path) -> pl.DataFrame:
    files = sorted((Path(ops_dir) / "ops_alerts").glob("run-*.parquet"))
    if not files:
        return pl.DataFrame(schema=OPS_ALERT_SCHEMA)
    return pl.read_parquet(files).sort("failed_at")
