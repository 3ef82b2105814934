"""Where trustlake's files live, and atomic, idempotent Parquet writes into them.

Every path under the home directory is built here, so swapping the local filesystem for
object storage touches one module. Writers put a file under a hidden temporary name in
the target directory and rename it into place: readers globbing `*.parquet` never see a
half-written file, and re-writing a partition replaces exactly that partition.

A writer holds an exclusive `flock` on its temporary file until the rename, so a process
that starts after a crash can tell a temp file a live writer still owns from one a killed
writer left behind (`abandoned_temp_files`). Nothing here deletes a data file: a file that
must leave the lake is moved to `lake/quarantine/<table>/` with a reason file beside it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import BinaryIO

import polars as pl

log = logging.getLogger(__name__)
# A temp file younger than this is never called abandoned, lock or not: it covers the instant
# between a writer creating the file and locking it, and writers that take no lock (DuckDB
# locks its own files; the registry writes in milliseconds).
TEMP_GRACE_SECONDS = 60.0


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
    def features(self) -> Path:
        return self.home / "lake" / "features"

    @property
    def scores(self) -> Path:
        return self.home / "lake" / "scores"

    @property
    def monitoring(self) -> Path:
        """Monitoring of the champion: daily drift, live precision and prevalence tables, references."""
        return self.home / "lake" / "monitoring"

    @property
    def ops(self) -> Path:
        """Operational records written outside any run (ops_alerts: one file per failed run)."""
        return self.home / "lake" / "ops"

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

    @property
    def fit_cache(self) -> Path:
        """Fitted text-classifier members and their held-out probabilities, by what decides them
        (ml/training/fit_cache.py): derived, never the only copy of anything, pruned as it goes."""
        return self.home / "cache" / "fits"

    @property
    def quarantine_dir(self) -> Path:
        """Files taken out of the lake, each with a `<name>.reason.txt` saying why and what to do."""
        return self.home / "lake" / "quarantine"

    @property
    def landing(self) -> Path:
        """External drops: `<table>/` folders the landing sensor scans, plus its own `_ingesting/`
        (files a land run is ingesting) and `_ingested/` (originals whose rows all landed)."""
        return self.home / "lake" / "landing"

    @property
    def raw_validation_manifest(self) -> Path:
        """Fingerprints of raw files that passed validation (ml.landing); `_` keeps it out of table globs."""
        return self.raw / "_validated.json"

    @property
    def temp_roots(self) -> tuple[Path, ...]:
        """Directories whose writers leave `.<name>.*.tmp` files when killed mid-write."""
        return (self.home / "lake", self.warehouse_dir, self.models, self.home / "cache")

    def partition_dir(self, table: str, day: date, root: Path | None = None) -> Path:
        return (root or self.raw) / table / f"date={day.isoformat()}"

    def table_glob(self, table: str, root: Path | None = None) -> str:
        return str((root or self.raw) / table / "date=*" / "*.parquet")

    def write_partition(self, table: str, day: date, frame: pl.DataFrame, root: Path | None = None) -> Path:
        """Replace the partition `table/date=day` with `frame`, atomically.

        A partition is one file written here plus the files external data landed in it
        (`landed-<fingerprint>.parquet`, ml.landing), which are kept: their rows exist nowhere
        else in the lake. Any other Parquet file found in it (an older layout, a file dropped in
        by hand) is moved to quarantine with a reason, never deleted: its rows may be the only
        copy of something.
        """
        target_dir = self.partition_dir(table, day, root)
        target = target_dir / "part-0.parquet"
        write_parquet_atomic(frame, target)
        for foreign in sorted(target_dir.glob("*.parquet")):
            if foreign != target and not foreign.name.startswith(LANDED_PREFIX):
                self.quarantine(
                    foreign,
                    table,
                    FOREIGN_FILE_REASON.format(partition=target_dir, target=target.name, day=day.isoformat()),
                )
        return target

    def quarantine(self, file: Path, table: str, reason: str, now: datetime | None = None, copy: bool = False) -> Path:
        """Move `file` to `quarantine_dir/<table>/<UTC timestamp>-<name>` beside `<that>.reason.txt`.

        `reason` is the human part (what is wrong, which rows, what to do); the reason file adds
        when and where from. The reason file is written first, so a file in quarantine never
        lacks one. `copy` leaves `file` where it is (a file that is not the lake's to move, such
        as the argument of `trustlake land`). Returns the quarantined file's new path.
        """
        now = now or datetime.now(UTC)
        file = Path(file)
        folder = self.quarantine_dir / table
        folder.mkdir(parents=True, exist_ok=True)
        # Raw partitions all hold part-0.parquet: keep the partition in the name.
        origin = f"{file.parent.name}-{file.name}" if "=" in file.parent.name else file.name
        stamp = now.strftime("%Y%m%dT%H%M%S%fZ")
        dest, n = folder / f"{stamp}-{origin}", 1
        while dest.exists() or dest.with_name(dest.name + ".reason.txt").exists():
            dest, n = folder / f"{stamp}-{n}-{origin}", n + 1
        note = dest.with_name(dest.name + ".reason.txt")
        note.write_text(
            f"trustlake quarantined this file at {now.isoformat(timespec='seconds')}.\n\n"
            f"table:      {table}\nfrom:       {file}\nnow here:   {dest}\n\n{reason.rstrip()}\n\n"
            "When it is handled, delete this file and its reason file; nothing reads the quarantine.\n"
        )
        try:
            if copy:
                replace_file_atomic(file, dest)
            else:
                shutil.move(file, dest)  # a rename on one filesystem; copy, then remove, across two
        except BaseException:
            note.unlink(missing_ok=True)
            raise
        log.warning("quarantined %s -> %s (why: %s)", file, dest, note)
        return dest

    def read_table(self, table: str, root: Path | None = None) -> pl.DataFrame:
        """Every partition of a lake table, with its `date` partition column."""
        pattern = self.table_glob(table, root)
        return pl.read_parquet(pattern, hive_partitioning=True)

    def partitions(self, table: str, root: Path | None = None) -> list[date]:
        base = (root or self.raw) / table
        if not base.is_dir():
            return []
        return sorted(
            date.fromisoformat(p.name.split("=", 1)[1]) for p in base.glob("date=*") if any(p.glob("*.parquet"))
        )


# The name prefix of partition files holding landed external rows (ml.landing): re-landing the day
# keeps them, and the fingerprint after the prefix names the file they came from.
LANDED_PREFIX = "landed-"

FOREIGN_FILE_REASON = """\
why:        a foreign file in a re-landed partition. {partition} is exactly one file
            ({target}) written by trustlake; this file was also there (an older layout, or a file
            put there by hand), so it was moved here when the day {day} was landed again.
rows:       none of this file's rows are in the lake any more.
what to do: if its rows belong in the lake, drop it into the landing folder of its table
            (lake/landing/<table>/; docs/operations.md, "Landing external data"): its rows are
            checked and the good ones kept; otherwise delete it.
"""


def _owned_temp(target: Path) -> tuple[int, str]:
    """A new hidden temp file beside `target`, flock-ed by this process until the fd is closed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd, tmp


def write_parquet_atomic(frame: pl.DataFrame, target: Path, before_replace: Callable[[], object] | None = None) -> Path:
    """Write `frame` to `target` through a hidden temporary file in the same directory.

    `before_replace` runs once the new file is complete, just before it is renamed over
    `target` (to move the old file elsewhere first); if it raises, `target` is left as it was.
    """
    fd, tmp = _owned_temp(target)
    try:
        frame.write_parquet(tmp, compression="zstd", statistics=True)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return target


def write_file_atomic(target: Path, write: Callable[[BinaryIO], object]) -> Path:
    """Write a file with `write(fh)` through a hidden temporary file beside `target`, fsync it and
    rename it over `target`: readers see the old file or the new one, never half of one."""
    fd, tmp = _owned_temp(target)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)
    return target


def replace_file_atomic(source: Path, target: Path) -> None:
    """Copy `source` over `target` so that readers see either the old or the new file."""
    fd, tmp = _owned_temp(target)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def temp_file_in_use(path: Path) -> bool:
    """Whether a live process holds a lock on `path`: our writers' flock or DuckDB's POSIX lock."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    except PermissionError:
        return True  # not ours to judge
    try:
        for lock in (fcntl.flock, fcntl.lockf):
            try:
                lock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    return True
                raise
        return False
    finally:
        os.close(fd)  # releases whatever this probe took


@dataclass(frozen=True)
class AbandonedTemp:
    path: Path
    size: int
    age_seconds: float


def abandoned_temp_files(
    roots: tuple[Path, ...], grace_seconds: float = TEMP_GRACE_SECONDS, now: float | None = None
) -> list[AbandonedTemp]:
    """Hidden `.<name>.*.tmp` files (and DuckDB's `.tmp.wal`) under `roots` that no live writer owns.

    A temp file is abandoned when it is older than `grace_seconds` and nobody holds a lock on
    it; a DuckDB write-ahead log when its database temp file is gone or abandoned too.
    """
    now = time.time() if now is None else now
    found: list[AbandonedTemp] = []
    for root in roots:
        if not root.is_dir():
            continue
        temps = sorted(p for p in root.rglob(".*.tmp") if p.is_file())
        wals = sorted(p for p in root.rglob(".*.tmp.wal") if p.is_file())
        abandoned: set[Path] = set()
        for path in temps + wals:
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # its writer renamed it into place meanwhile
            age = now - stat.st_mtime
            if age < grace_seconds:
                continue
            if path.suffix == ".wal":
                db = path.with_suffix("")
                if db.exists() and db not in abandoned:
                    continue
            elif temp_file_in_use(path):
                continue
            abandoned.add(path)
            found.append(AbandonedTemp(path, stat.st_size, age))
    return found
