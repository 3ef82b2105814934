"""The raw lake check: every raw partition file changed since it last passed is validated against
its contract, and a file that breaks it leaves the lake, so that one bad file never blocks every
later day.

A file with problems is moved to `lake/quarantine/<table>/` untouched, with a reason file; its
good rows, if any, are written back in its place in the same step, so the day keeps every row
that was right and dbt never sees the bad ones.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from ml.lake import Lake, write_parquet_atomic, write_text_atomic
from ml.raw.contracts import RAW_TABLES
from ml.raw.validation import Validation, validate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuarantinedFile:
    table: str
    source: Path  # where it was in the lake
    quarantined: Path  # where it is now (the reason file is beside it)
    validation: Validation
    rows_kept: int  # good rows written back to `source` (0: the file left the lake whole)


@dataclass(frozen=True)
class RawLakeCheck:
    validated: int  # files read and checked this time
    unchanged: int  # files skipped: same fingerprint as when they last passed
    quarantined: tuple[QuarantinedFile, ...]

    def for_table(self, table: str) -> list[QuarantinedFile]:
        return [q for q in self.quarantined if q.table == table]


def check_raw_lake(lake: Lake, tables: Iterable[str] = RAW_TABLES, now: datetime | None = None) -> RawLakeCheck:
    """Validate every raw partition file that changed since it last passed; quarantine bad ones.

    Cheap on a quiet lake: a manifest of (inode, size, mtime) fingerprints of files that passed
    means each file is read once per change. A file with problems moves to quarantine with its
    reason; its good rows, if any, are written back in its place in the same step, so the day
    keeps them and dbt never sees the bad ones. One checker at a time (a file lock).
    """
    now = now or datetime.now(UTC)
    manifest_path = lake.raw_validation_manifest
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(manifest_path.with_suffix(".lock")):
        passed = _load_manifest(manifest_path)
        still: dict[str, str] = {}
        validated = unchanged = 0
        quarantined: list[QuarantinedFile] = []
        for table in tables:
            for path in sorted((lake.raw / table).glob("date=*/*.parquet")):
                rel = path.relative_to(lake.raw).as_posix()
                fingerprint = _fingerprint(path)
                if fingerprint is None:
                    continue  # replaced or removed while we listed the folder
                if passed.get(rel) == fingerprint:
                    still[rel] = fingerprint
                    unchanged += 1
                    continue
                result = validate(table, path, now=now)
                validated += 1
                if result.ok:
                    still[rel] = fingerprint
                    continue
                if _fingerprint(path) != fingerprint:
                    continue  # rewritten while we read it: the next check reads the new file
                entry = _quarantine_raw_file(lake, table, path, result)
                quarantined.append(entry)
                if entry.rows_kept:
                    still[rel] = _fingerprint(path) or ""
        _save_manifest(manifest_path, still)
    return RawLakeCheck(validated, unchanged, tuple(quarantined))


def _quarantine_raw_file(lake: Lake, table: str, path: Path, result: Validation) -> QuarantinedFile:
    partition = path.parent.name
    day = partition.split("=", 1)[1] if "=" in partition else "?"
    keep = result.good is not None and result.good.height > 0
    rows = (
        f"rows:       the {result.good.height:,} good rows were written back to {path}; the "
        f"{result.bad_rows:,} rows listed above are not in the lake (this file keeps every row)."
        if keep
        else "rows:       none of this file's rows are in the lake any more (no row passed every rule)."
    )
    if keep and all(p.rule == "duplicate_row" for p in result.problems):
        todo = "what to do: nothing is missing from the lake (only exact copies were dropped); delete this file."
    else:
        todo = (
            f"what to do: fix the rows listed above and put the corrected file back at {path}\n"
            f"            (it is validated again on the next run), or re-land the day with\n"
            f"            `trustlake run --first {day} --days 1` if trustlake's simulator wrote it."
        )
    reason = f"why:        {result.describe()}\n{rows}\n{todo}"
    moved: list[Path] = []
    if keep:
        # The good rows replace the file in one rename right after it moves out.
        write_parquet_atomic(
            result.good, path, before_replace=lambda: moved.append(lake.quarantine(path, table, reason))
        )
    else:
        moved.append(lake.quarantine(path, table, reason))
    log.warning(
        "raw file %s broke the %s contract and was quarantined (%s); %s good rows kept",
        path,
        table,
        "; ".join(p.rule for p in result.problems),
        result.good.height if keep else 0,
    )
    return QuarantinedFile(table, path, moved[0], result, result.good.height if keep else 0)


def _fingerprint(path: Path) -> str | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _load_manifest(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        files = json.loads(path.read_text())["files"]
        return {str(k): str(v) for k, v in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        # Only a cache of past results: a damaged one means every file is validated again.
        log.warning("raw validation manifest %s is unreadable; validating every raw file again", path)
        return {}


def _save_manifest(path: Path, files: dict[str, str]) -> None:
    write_text_atomic(path, json.dumps({"version": 1, "files": dict(sorted(files.items()))}, indent=0))
