"""Warehouse writers wait, bounded, for another process holding trustlake.duckdb, say who holds
it and point analysts at marts.duckdb; past the wait they fail naming that process."""

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from ml.warehouse import WarehouseLockedError, publish_marts, wait_until_writable

HOLD = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
print("open", flush=True)
time.sleep(float(sys.argv[3]))
con.close()
"""


def warehouse(tmp_path: Path) -> Path:
    db = tmp_path / "warehouse" / "trustlake.duckdb"
    db.parent.mkdir()
    with duckdb.connect(str(db)) as con:
        con.execute("create schema marts")
        con.execute("create table marts.mart_appeals as select * from range(5) t(n)")
    return db


def hold(db: Path, mode: str, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db), mode, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "open"
    return proc


def test_publishing_waits_for_a_process_writing_the_warehouse_then_succeeds(tmp_path):
    db = warehouse(tmp_path)
    holder = hold(db, "rw", 3)
    said: list[str] = []
    counts = publish_marts(db, db.with_name("marts.duckdb"), on_wait=said.append)
    assert holder.wait(timeout=30) == 0
    assert counts == {"mart_appeals": 5}
    assert said and f"is locked by PID {holder.pid}" in said[0] and "marts.duckdb" in said[0]


def test_a_writer_gives_up_after_the_bounded_wait_naming_the_holder(tmp_path):
    db = warehouse(tmp_path)
    holder = hold(db, "rw", 30)
    try:
        with pytest.raises(WarehouseLockedError, match=rf"still locked by PID {holder.pid} .*marts\.duckdb"):
            publish_marts(db, db.with_name("marts.duckdb"), lock_timeout_s=1.5)
    finally:
        holder.kill()
        holder.wait()
    assert sorted(p.name for p in db.parent.iterdir()) == ["trustlake.duckdb"]  # no temp copy left behind


def test_a_read_only_reader_makes_a_writer_wait_not_fail(tmp_path):
    db = warehouse(tmp_path)
    reader = hold(db, "ro", 3)
    said: list[str] = []
    wait_until_writable(db, on_wait=said.append)
    with duckdb.connect(str(db)) as con:  # returned only once a writer can open the file
        con.execute("create table marts.after as select 1")
    assert reader.wait(timeout=30) == 0
    assert len(said) == 1 and f"PID {reader.pid}" in said[0] and "analysts should query" in said[0]
