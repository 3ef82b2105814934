"""The landing zone: external files dropped into `lake/landing/<table>/` land in the raw lake, or
go to quarantine with a reason.

Life of a file: `landing/<table>/<name>` (dropped) -> `landing/_ingesting/<table>/<fp>-<name>`
(claimed by the landing sensor or `trustlake land` once `ml.raw.landing_check` found rows that
can land; a land run ingests it) -> its good rows in `raw/<table>/date=<day>/landed-<fp>.parquet`
and the original in `landing/_ingested/<table>/` or `quarantine/<table>/`. `<fp>` is a hash of
the file's bytes.

A file with some bad rows is split: its good rows land, and the original file (every row, so
the row numbers in the reason match) goes to quarantine with a reason naming the bad rows and
saying where the good ones went. A file with no good row goes to quarantine whole.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import polars as pl
from filelock import FileLock

from ml.lake import LANDED_PREFIX, Lake, replace_file_atomic, write_parquet_atomic
from ml.raw.contracts import CONTRACTS, RAW_TABLES
from ml.raw.landing_check import LandingCheck, check_landing, landing_day
from ml.raw.validation import Validation

log = logging.getLogger(__name__)

INGESTING = "_ingesting"
INGESTED = "_ingested"
# A file modified this recently may still be being copied in; it is picked up on a later look.
SETTLE_SECONDS = 5.0


class LandingError(Exception):
    """A land run cannot go on: the message says what to do."""


@dataclass(frozen=True)
class Claim:
    """A dropped file that passed the landing check, waiting in `_ingesting/` for its land run."""

    table: str
    path: Path  # landing/_ingesting/<table>/<fingerprint>-<original name>

    @property
    def fingerprint(self) -> str:
        return self.path.name.split("-", 1)[0]

    @property
    def original_name(self) -> str:
        return self.path.name.split("-", 1)[1]

    @property
    def name(self) -> str:
        """`<table>/<fingerprint>-<original name>`: unique per file content and name, the run key."""
        return f"{self.table}/{self.path.name}"

    @classmethod
    def from_name(cls, lake: Lake, name: str) -> Claim:
        table, _, file = name.partition("/")
        if table not in CONTRACTS or not file or "/" in file or "-" not in file:
            raise LandingError(
                f"{name!r} is not a landing claim (<table>/<fingerprint>-<file name>, "
                f"table one of {', '.join(CONTRACTS)})"
            )
        return cls(table, lake.landing / INGESTING / table / file)


@dataclass(frozen=True)
class LandedFile:
    """What a land run did with one claim."""

    claim: Claim
    validation: Validation | None  # None: an earlier run had already handled this claim
    rows_per_day: dict[date, int]
    written: tuple[Path, ...]  # raw partition files holding the landed rows
    quarantined: Path | None  # the original file, when it had problems
    ingested: Path | None  # the original file, when every row landed

    @property
    def rows(self) -> int:
        return sum(self.rows_per_day.values())


def file_fingerprint(file: Path) -> str:
    """16 hex digits of SHA-256 over the file's bytes: the same content always has the same one."""
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def dropped_files(
    lake: Lake, table: str, now: float | None = None, settle_seconds: float = SETTLE_SECONDS
) -> list[Path]:
    """Files in `landing/<table>/` to look at: not hidden, not a folder, untouched for `settle_seconds`."""
    folder = lake.landing / table
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    found = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith((".", "_")) or not path.is_file():
            continue  # writers' temp files, and folders
        try:
            if now - path.stat().st_mtime < settle_seconds:
                continue
        except FileNotFoundError:
            continue
        found.append(path)
    return found


def claims(lake: Lake, tables: Iterable[str] = RAW_TABLES) -> list[Claim]:
    """Files waiting in `_ingesting/` for their land run, in table order (users before content ...)."""
    out = []
    for table in tables:
        folder = lake.landing / INGESTING / table
        if folder.is_dir():
            out += [
                Claim(table, p)
                for p in sorted(folder.iterdir())
                if p.is_file() and not p.name.startswith(".") and "-" in p.name
            ]
    return out


def _landing_lock(lake: Lake, table: str) -> FileLock:
    """One land run at a time per table: its lake check and its writes are one step."""
    lake.landing.mkdir(parents=True, exist_ok=True)
    return FileLock(lake.landing / f".{table}.lock")


def claim_file(lake: Lake, table: str, file: Path, copy: bool = False) -> Claim:
    """Move (or copy, atomically) a checked file to `_ingesting/<table>/<fingerprint>-<name>`."""
    file = Path(file)
    claim = Claim(table, lake.landing / INGESTING / table / f"{file_fingerprint(file)}-{file.name}")
    claim.path.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        replace_file_atomic(file, claim.path)
    else:
        # A move, not a write: one rename of a whole file within the lake (not atomic_write's temp
        # copy); a file already there has the same content and name, so nothing is lost.
        os.replace(file, claim.path)
    return claim


def quarantine_dropped(lake: Lake, check: LandingCheck, copy: bool = False) -> Path:
    """Put a file that lands nothing in quarantine with its reason: moved, or copied (`trustlake land`,
    which refuses a file with any problem whole, so its good rows did not land either)."""
    return lake.quarantine(
        check.validation.path,
        check.validation.table,
        landing_reason(lake, check.validation, {}, (), refused_whole=copy),
        copy=copy,
    )


def ingest_claim(
    lake: Lake, claim: Claim, window: tuple[date, date], run_days: tuple[date, date], now: datetime | None = None
) -> LandedFile:
    """Land a claim's good rows in the raw partitions of their days; quarantine or keep the original.

    Idempotent: a re-run rewrites the same `landed-<fingerprint>.parquet` files (the check leaves
    out what an earlier attempt wrote), and a claim already handled is reported, not landed twice.
    `run_days` are the run's partitions: every good row must fall in them.
    """
    table = claim.table
    with _landing_lock(lake, table):
        if not claim.path.exists():
            return _already_handled(lake, claim)
        check = check_landing(lake, table, claim.path, window, now=now, ignore_fingerprint=claim.fingerprint)
        result = check.validation
        outside = [d for d in check.days if not run_days[0] <= d <= run_days[1]]
        if outside:
            raise LandingError(
                f"{claim.name} has rows for {outside[0]} .. {outside[-1]}, outside this run's "
                f"partitions {run_days[0]} .. {run_days[1]}: launch it for {check.days[0]} .. "
                f"{check.days[-1]} (the landing sensor does)"
            )
        good = result.good if result.good is not None else CONTRACTS[table].empty()
        day_of = landing_day(table, good, window[0])
        name = f"{LANDED_PREFIX}{claim.fingerprint}.parquet"
        written, per_day = [], {}
        for day in check.days:
            part = good.filter(day_of == day)
            written.append(write_parquet_atomic(part, lake.partition_dir(table, day) / name))
            per_day[day] = part.height
        for stale in sorted((lake.raw / table).glob(f"date=*/{name}")):
            if stale not in written:  # an earlier attempt put rows on a day this one does not
                lake.quarantine(stale, table, STALE_LANDED_REASON.format(claim=claim.name))
        if result.ok:
            ingested = lake.landing / INGESTED / table / f"{_stamp(now)}-{claim.path.name}"
            ingested.parent.mkdir(parents=True, exist_ok=True)
            os.replace(claim.path, ingested)  # a move of the whole original, not a write
            quarantined = None
        else:
            ingested = None
            quarantined = lake.quarantine(claim.path, table, landing_reason(lake, result, per_day, written), now=now)
        log.info(
            "landed %s: %s rows in %s day(s)%s",
            claim.name,
            good.height,
            len(per_day),
            f"; {result.bad_rows} bad rows quarantined in {quarantined}" if quarantined else "",
        )
        return LandedFile(claim, result, per_day, tuple(written), quarantined, ingested)


def _already_handled(lake: Lake, claim: Claim) -> LandedFile:
    written = tuple(sorted((lake.raw / claim.table).glob(f"date=*/{LANDED_PREFIX}{claim.fingerprint}.parquet")))
    ingested = sorted((lake.landing / INGESTED / claim.table).glob(f"*-{claim.path.name}"))
    quarantined = sorted((lake.quarantine_dir / claim.table).glob(f"*-{claim.path.name}"))
    if not (written or ingested or quarantined):
        raise LandingError(
            f"no file is waiting at {claim.path} and nothing in the lake came from it: "
            f"drop the file into {lake.landing / claim.table} again"
        )
    per_day = {
        date.fromisoformat(p.parent.name.split("=", 1)[1]): pl.scan_parquet(p).select(pl.len()).collect().item()
        for p in written
    }
    return LandedFile(
        claim, None, per_day, written, quarantined[-1] if quarantined else None, ingested[-1] if ingested else None
    )


def landing_reason(
    lake: Lake, result: Validation, rows_per_day: dict[date, int], written: Iterable[Path], refused_whole: bool = False
) -> str:
    """The human part of a quarantined landed file's reason file: what is wrong, where rows went, what to do."""
    landed = sum(rows_per_day.values())
    folder = lake.landing / result.table
    rules = {p.rule for p in result.problems}
    good = result.good.height if result.good is not None else 0
    if landed:
        days = sorted(rows_per_day)
        rows = (
            f"rows:       the {landed:,} good rows were landed in the raw lake "
            f"({', '.join(str(p) for p in written)}, days {days[0]} .. {days[-1]});\n"
            f"            the {result.bad_rows:,} rows listed above are not in the lake."
        )
    elif refused_whole and good:
        rows = (
            f"rows:       nothing from this file was landed: `trustlake land` lands a file whole or not at all,\n"
            f"            so its {good:,} good rows wait for the rows listed above to be fixed."
        )
    else:
        rows = "rows:       none of this file's rows were landed (no row passed every rule)."
    if rules <= {"duplicate_row", "already_landed"}:
        todo = (
            "what to do: nothing is missing from the lake (only copies of rows it holds were refused); "
            "delete this file."
        )
    elif rules & {"unreadable", "missing_columns", "empty"}:
        columns = ", ".join(CONTRACTS[result.table].columns)
        todo = (
            f"what to do: write the file again as Parquet or UTF-8 CSV with the columns {columns}\n"
            f"            and drop it into {folder}/ (docs/operations.md, 'Landing external data')."
        )
    elif refused_whole:
        todo = (
            f"what to do: fix the rows listed above and run `trustlake land FILE --table {result.table}` again,\n"
            f"            or drop the file into {folder}/ to land its good rows now and quarantine the rest."
        )
    else:
        todo = (
            f"what to do: fix the rows listed above and drop a file with them into {folder}/;\n"
            "            rows that already landed are recognised and refused as already_landed, so\n"
            "            dropping the whole corrected file is safe too."
        )
    if "unknown_reference" in rules:
        todo += "\n            Rows referring to rows not in the lake yet: land those first (users, content, ...)."
    return f"why:        {result.describe()}\n{rows}\n{todo}"


def _stamp(now: datetime | None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")


STALE_LANDED_REASON = """\
why:        rows an earlier attempt to land {claim} put on this day; landing it again put none
            here (the lake's rules or partitions changed meanwhile).
rows:       none of this file's rows are counted in the lake any more.
what to do: check them; if they belong in the lake, drop them into the landing folder again.
"""
