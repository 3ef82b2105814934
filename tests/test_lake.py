"""Atomic, idempotent partition writes in the raw lake, through the one atomic writer every module uses."""

from datetime import date
from pathlib import Path

import duckdb
import polars as pl
import pytest

from ml.lake import Lake, atomic_write

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


def test_an_atomic_write_gets_the_mode_asked_for_and_leaves_nothing_when_interrupted(tmp_path):
    target = tmp_path / "scored.csv"
    with atomic_write(target, mode=0o644, sync_dir=True) as tmp:
        tmp.write_text("a\n")
    assert target.read_text() == "a\n" and target.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    with pytest.raises(KeyboardInterrupt), atomic_write(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "a\n" and [p.name for p in tmp_path.iterdir()] == ["scored.csv"]


def test_a_writer_creating_its_own_file_gets_a_free_path_and_leaves_no_wal_when_it_fails(tmp_path):
    target = tmp_path / "marts.duckdb"
    with pytest.raises(RuntimeError), atomic_write(target, writer_creates=True) as tmp:
        assert not tmp.exists()
        duckdb.connect(str(tmp)).close()
        Path(f"{tmp}.wal").write_bytes(b"")
        raise RuntimeError("the copy failed")
    assert list(tmp_path.iterdir()) == []
