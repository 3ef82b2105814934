"""Where trustlake's files live, and atomic, idempotent Parquet writes into them.

Every path under the home directory is built here, so swapping the local filesystem for
object storage touches one module. Writers put a file under a hidden temporary name in
the target directory and rename it into place: readers globbing `*.parquet` never see a
half-written file, and re-writing a partition replaces exactly that partition.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl


@dataclass(frozen=True)
class Lake:
    home: Path

    @property
    def raw(self) -> Path:
        return self.home / "lake" / "raw"

    @property
    def ground_truth(self) -> Path:
        return self.home / "lake" / "ground_truth"

    @property
    def reference(self) -> Path:
        """Labelled reference sets, one folder per source (ml/reference.py)."""
        return self.home / "lake" / "reference"

    @property
    def quarantine(self) -> Path:
        """Rejected files and rows, each with the reason a person can act on."""
        return self.home / "lake" / "quarantine"

    @property
    def features(self) -> Path:
        return self.home / "lake" / "features"

    @property
    def scores(self) -> Path:
        return self.home / "lake" / "scores"

    @property
    def warehouse_dir(self) -> Path:
        return self.home / "warehouse"

    @property
    def warehouse_db(self) -> Path:
        return self.warehouse_dir / "trustlake.duckdb"

    @property
    def marts_db(self) -> Path:
        return self.warehouse_dir / "marts.duckdb"

    @property
    def models(self) -> Path:
        return self.home / "models"

    def partition_dir(self, table: str, day: date, root: Path | None = None) -> Path:
        return (root or self.raw) / table / f"date={day.isoformat()}"

    def table_glob(self, table: str, root: Path | None = None) -> str:
        return str((root or self.raw) / table / "date=*" / "*.parquet")

    def write_partition(self, table: str, day: date, frame: pl.DataFrame, root: Path | None = None) -> Path:
        """Replace the partition `table/date=day` with `frame`, atomically."""
        target_dir = self.partition_dir(table, day, root)
        target = target_dir / "part-0.parquet"
        write_parquet_atomic(frame, target)
        # A partition is exactly one file: remove files an older layout may have left.
        for stale in target_dir.glob("*.parquet"):
            if stale != target:
                stale.unlink()
        return target

    def read_table(self, table: str, root: Path | None = None) -> pl.DataFrame:
        """Every partition of a lake table, with its `date` partition column."""
        pattern = self.table_glob(table, root)
        return pl.read_parquet(pattern, hive_partitioning=True)

    def partitions(self, table: str, root: Path | None = None) -> list[date]:
        base = (root or self.raw) / table
        if not base.is_dir():
            return []
        return sorted(date.fromisoformat(p.name.split("=", 1)[1]) for p in base.glob("date=*") if any(p.glob("*.parquet")))


def write_parquet_atomic(frame: pl.DataFrame, target: Path) -> Path:
    """Write `frame` to `target` through a hidden temporary file in the same directory."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        frame.write_parquet(tmp, compression="zstd", statistics=True)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def replace_file_atomic(source: Path, target: Path) -> None:
    """Copy `source` over `target` so that readers see either the old or the new file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
