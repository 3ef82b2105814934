"""Atomic, idempotent partition writes in the raw lake."""

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from ml.lake import Lake

DAY = date(2026, 10, 3)


def frame(n: int, offset: int = 0) -> pl.DataFrame:
    return pl.DataFrame({"id": list(range(offset, offset + n)), "v": ["x"] * n})


def test_rewriting_a_partition_replaces_exactly_that_day(tmp_path):
    lake = Lake(tmp_path)
    lake.write_partition("t", DAY, frame(10))
    lake.write_partition("t", date(2026, 10, 4), frame(5, 100))
    lake.write_partition("t", DAY, frame(10))
    table = lake.read_table("t")
    assert table.height == 15
    assert table["id"].n_unique() == 15
    lake.write_partition("t", DAY, frame(3))
    assert lake.read_table("t").height == 8
    assert len(list(lake.partition_dir("t", DAY).iterdir())) == 1


def test_crash_mid_write_leaves_the_old_partition_and_no_partial_file(tmp_path, monkeypatch):
    lake = Lake(tmp_path)
    lake.write_partition("t", DAY, frame(10))
    original = pl.DataFrame.write_parquet

    def crash(self, file, *args, **kwargs):
        Path(file).write_bytes(b"PAR1 half a file")  # bytes reach disk, then the process dies
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", crash)
    with pytest.raises(KeyboardInterrupt):
        lake.write_partition("t", DAY, frame(99))
    monkeypatch.setattr(pl.DataFrame, "write_parquet", original)

    files = list(lake.partition_dir("t", DAY).iterdir())
    assert [f.name for f in files] == ["part-0.parquet"]
    assert lake.read_table("t")["id"].to_list() == list(range(10))


def test_crash_on_a_first_write_leaves_nothing_readers_can_see(tmp_path, monkeypatch):
    lake = Lake(tmp_path)

    def crash(self, file, *args, **kwargs):
        Path(file).write_bytes(b"PAR1")
        raise OSError("disk full")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", crash)
    with pytest.raises(OSError):
        lake.write_partition("t", DAY, frame(5))
    assert list(lake.partition_dir("t", DAY).glob("*")) == []
    assert lake.partitions("t") == []
