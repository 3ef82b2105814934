"""Where trustlake's files live, and the one way any file of trustlake is written: atomically.

Every path under the home directory is built here, so swapping the local filesystem for
object storage touches one module. Every writer in trustlake (lake partitions, the registry,
the marts copy, scored files, settings files) goes through `atomic_write`: the file is written
under a hidden temporary name in the target directory, fsynced and renamed into place, so
readers (globbing `*.parquet` or opening the file) never see a half-written file, and
re-writing a partition replaces exactly that partition. The one file that is appended to instead,
the models' audit log, goes through `append_line`: an append-only record cannot be rewritten by
a rename without ceasing to be append-only.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl

log = logging.getLogger(__name__)
# A temp file younger than this is never called abandoned, lock or not: it covers the instant
# between a writer creating the file and locking it (atomic_write), and between DuckDB being
# handed a free temp path and creating and locking the file there.
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
    def media(self) -> Path:
        """Image files, one per distinct image: media/<2 hex>/<sha256>.<ext> (ml.images.decode.media_path)."""
        return self.home / "lake" / "media"

    def media_file(self, media_path: str) -> Path:
        """The file a content row's `media_path` names (relative to lake/, as ml.images.decode.media_path gives it)."""
        parts = Path(media_path).parts
        if len(parts) != 3 or parts[0] != "media" or ".." in parts:
            raise ValueError(f"media path {media_path!r} is not media/<2 hex>/<sha256>.<ext>")
        return self.home / "lake" / media_path

    def write_media(self, media_path: str, data: bytes) -> bool:
        """Store an image file once, atomically; False when it is already there (the name is its content's
        hash, so a file of that name holds these very bytes)."""
        target = self.media_file(media_path)
        if target.exists():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, data)
        return True

    @property
    def banks(self) -> Path:
        """Hash banks: `imported/<bank>/<file sha256>.parquet` (entries `trustlake bank import` took) and
        `hash_banks/` (every bank's entries, the hash_banks asset; ml/matching/bank_sources.py)."""
        return self.home / "lake" / "banks"

    @property
    def hash_banks(self) -> Path:
        """The `hash_banks` table (one file, replaced atomically): what batch matching and serving read."""
        return self.banks / "hash_banks"

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
    def evaluations(self) -> Path:
        """Evaluations that are not of one model (the image and matching paths): figures and plots."""
        return self.home / "evaluations"

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
        """Fingerprints of raw files that passed validation (ml.raw.lake_check); `_` keeps it out of table globs."""
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
        (`landed-<fingerprint>.parquet`, ml.raw.landing), which are kept: their rows exist nowhere
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
        write_text_atomic(
            note,
            f"trustlake quarantined this file at {now.isoformat(timespec='seconds')}.\n\n"
            f"table:      {table}\nfrom:       {file}\nnow here:   {dest}\n\n{reason.rstrip()}\n\n"
            "When it is handled, delete this file and its reason file; nothing reads the quarantine.\n",
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

    def read_partition(self, table: str, day: date, root: Path | None = None) -> pl.DataFrame:
        """One day's partition of a lake table (without the `date` column)."""
        return pl.read_parquet(self.partition_dir(table, day, root) / "*.parquet")

    def partitions(self, table: str, root: Path | None = None) -> list[date]:
        base = (root or self.raw) / table
        if not base.is_dir():
            return []
        return sorted(
            date.fromisoformat(p.name.split("=", 1)[1]) for p in base.glob("date=*") if any(p.glob("*.parquet"))
        )


# The name prefix of partition files holding landed external rows (ml.raw.landing): re-landing the day
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


@contextmanager
def atomic_write(
    target: Path,
    *,
    mode: int | None = None,
    sync_dir: bool = False,
    before_replace: Callable[[], object] | None = None,
    writer_creates: bool = False,
) -> Iterator[Path]:
    """Replace `target` whole or not at all: yields a hidden temp path beside it for the caller to write.

    When the block ends cleanly the temp file is flushed to disk (fsync), given `mode` if set,
    `before_replace` runs (to move the old file elsewhere first; if it raises, `target` is left
    as it was), and the temp file is renamed over `target`; `sync_dir` then fsyncs the directory,
    so the rename itself survives a power cut. On any exception, KeyboardInterrupt included, the
    temp file is removed. Until the rename this process holds a flock on the temp file, which
    tells `abandoned_temp_files` a live writer's temp file from a killed one's. `writer_creates`:
    the writer must create the file itself (DuckDB), so the path is free when yielded; DuckDB's own
    lock on it then marks it live, and its write-ahead log is removed with it on failure.
    """
    target = Path(target)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    tmp = Path(name)
    try:
        # fcntl, not filelock: the lock must be on the temp file itself, the file
        # abandoned_temp_files probes; filelock locks a separate lock file.
        fcntl.flock(fd, fcntl.LOCK_EX)
        if writer_creates:
            tmp.unlink()
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, target)  # the one rename-over-target in trustlake: every writer comes through here
        if sync_dir:
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException:
        tmp.unlink(missing_ok=True)
        if writer_creates:
            Path(f"{tmp}.wal").unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def write_parquet_atomic(frame: pl.DataFrame, target: Path, before_replace: Callable[[], object] | None = None) -> Path:
    """Write `frame` to `target` (its folder created if need be) as zstd Parquet through `atomic_write`
    (`before_replace` as there)."""
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target, before_replace=before_replace) as tmp:
        frame.write_parquet(tmp, compression="zstd", statistics=True)
    return target


def write_bytes_atomic(target: Path, data: bytes, sync_dir: bool = False) -> Path:
    """Write `data` to `target` through `atomic_write`."""
    with atomic_write(target, sync_dir=sync_dir) as tmp:
        tmp.write_bytes(data)
    return target


def write_text_atomic(target: Path, text: str, sync_dir: bool = False) -> Path:
    """Write `text` (UTF-8) to `target` through `atomic_write`."""
    return write_bytes_atomic(target, text.encode(), sync_dir=sync_dir)


def append_line(path: Path, line: bytes) -> None:
    """Append `line` and an end of line to the append-only file `path`, durably: fsynced before this
    returns (and the directory too when the file is new), so a record that was appended survives a
    crash or a power cut.

    Appending is not atomic: a writer killed mid-append leaves a torn last line. If the file does not
    end with an end of line, one is written first, so the torn fragment stays in the file as a line
    of its own (readers report it; nothing is ever cut from an append-only file) and this record
    starts a clean line. Callers serialise appends (the registry appends under its lock).
    """
    if b"\n" in line or b"\r" in line:
        raise ValueError("an appended record must be one line: it contains an end of line")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        torn = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        data = memoryview((b"\n" if torn else b"") + line + b"\n")
        while data:  # a write may be partial; O_APPEND puts every piece at the end
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    if new:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def replace_file_atomic(source: Path, target: Path) -> Path:
    """Copy `source` over `target` so that readers see either the old or the new file."""
    with atomic_write(target) as tmp:
        shutil.copyfile(source, tmp)
    return target


def temp_file_in_use(path: Path) -> bool:
    """Whether a live process holds a lock on `path`: our writers' flock or DuckDB's POSIX lock."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    except PermissionError:
        return True  # not ours to judge
    try:
        # fcntl, not filelock: this probes locks other programs hold on the file itself, and
        # DuckDB's is a POSIX record lock (lockf), which filelock neither takes nor tests.
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
