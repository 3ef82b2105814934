"""Raw data rules: a contract per raw table, validation of a file against it, and a check of
the raw lake that quarantines bad files, so that one bad file never blocks every later day.

The contract is what `ml/simulator.py` writes and what dbt's source tests assert
(`dbt_project/models/staging/platform/_platform__sources.yml`; tests keep the enum lists and
the future-time tolerance equal on both sides). Validation never repairs a value: each row
passes every rule or is a bad row, reported by its 1-based row number. A file with problems is
moved to `lake/quarantine/<table>/` untouched, with a reason file; the good rows may be written
back in its place, so the day keeps every row that was right. One mechanism serves the raw lake
check here and the landing of external files (`validate` + `Lake.quarantine`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from ml.lake import Lake, write_parquet_atomic
from ml.simulator import EVENT_TIME, RAW_TABLES, REPORT_REASONS
from ml.taxonomy import POLICIES

log = logging.getLogger(__name__)

# Event times may run ahead of the lake's clock by this much (clock skew, time zones); beyond
# it a row is a future timestamp. dbt's `not_in_future` source tests use the same tolerance.
FUTURE_TOLERANCE = timedelta(hours=24)
MAX_TEXT_CHARS = 10_000  # a post or message body
MAX_STRING_CHARS = 256  # identifiers, codes, fingerprints, enum values
ROWS_SHOWN = 20  # bad row numbers listed per problem in a reason file

SURFACES = ("post", "comment", "video_comment", "direct_message")
REVIEW_REASONS = ("user_report", "proactive")
ACTIONS = ("remove", "restrict", "no_action")
APPEAL_OUTCOMES = ("upheld", "overturned")
TIMESTAMP = pl.Datetime("us")


@dataclass(frozen=True)
class TableContract:
    """The shape and rules of one raw table."""

    table: str
    columns: dict[str, pl.DataType]  # every column, in order, with its type
    key: str  # never null, unique within a file
    required: tuple[str, ...]  # never null (the key and event time included)
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    max_chars: dict[str, int] = field(default_factory=dict)  # String columns not named: MAX_STRING_CHARS

    @property
    def event_time(self) -> str:
        return EVENT_TIME[self.table]


def _contract(table: str, columns: dict, required: tuple[str, ...], **rules) -> TableContract:
    return TableContract(table, columns, key=next(iter(columns)), required=required, **rules)


CONTRACTS: dict[str, TableContract] = {
    "users": _contract("users", {
        "user_id": pl.Int64, "signup_at": TIMESTAMP, "country": pl.String, "language": pl.String,
        "device_fingerprint": pl.String, "ip_fingerprint": pl.String, "verified": pl.Boolean,
        "follower_count": pl.Int64,
    }, required=("user_id", "signup_at")),
    "content": _contract("content", {
        "content_id": pl.Int64, "author_id": pl.Int64, "created_at": TIMESTAMP, "surface": pl.String,
        "language": pl.String, "text": pl.String, "text_hash": pl.String, "has_link": pl.Boolean,
        "has_phone": pl.Boolean,
    }, required=("content_id", "author_id", "created_at", "text", "text_hash"),
        enums={"surface": SURFACES}, max_chars={"text": MAX_TEXT_CHARS}),
    "reports": _contract("reports", {
        "report_id": pl.Int64, "content_id": pl.Int64, "reporter_id": pl.Int64, "reason": pl.String,
        "reported_at": TIMESTAMP,
    }, required=("report_id", "content_id", "reported_at"), enums={"reason": tuple(REPORT_REASONS)}),
    "decisions": _contract("decisions", {
        "decision_id": pl.Int64, "content_id": pl.Int64, "moderator_id": pl.Int64, "review_reason": pl.String,
        "policy": pl.String, "action": pl.String, "decided_at": TIMESTAMP,
    }, required=("decision_id", "content_id", "moderator_id", "decided_at"),
        enums={"review_reason": REVIEW_REASONS, "policy": tuple(POLICIES), "action": ACTIONS}),
    "appeals": _contract("appeals", {
        "appeal_id": pl.Int64, "decision_id": pl.Int64, "content_id": pl.Int64, "appellant_id": pl.Int64,
        "appealed_at": TIMESTAMP, "resolved_at": TIMESTAMP, "outcome": pl.String,
    }, required=("appeal_id", "decision_id", "resolved_at"), enums={"outcome": APPEAL_OUTCOMES}),
    "qa_audits": _contract("qa_audits", {
        "audit_id": pl.Int64, "content_id": pl.Int64, "auditor_id": pl.Int64, "gold_policy": pl.String,
        "audited_at": TIMESTAMP,
    }, required=("audit_id", "content_id", "audited_at"), enums={"gold_policy": tuple(POLICIES)}),
}
assert tuple(CONTRACTS) == RAW_TABLES


@dataclass(frozen=True)
class Problem:
    """One broken rule: which, on what column, in words, and the 1-based rows (empty: the whole file)."""

    rule: str
    column: str | None
    detail: str
    rows: tuple[int, ...] = ()

    def describe(self, limit: int = ROWS_SHOWN) -> str:
        where = f" ({self.column})" if self.column else ""
        text = f"{self.rule}{where}: {self.detail}"
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows[:limit])
            more = f" and {len(self.rows) - limit} more" if len(self.rows) > limit else ""
            text += f"; row{'s' if len(self.rows) > 1 else ''} {shown}{more}"
        return text


@dataclass(frozen=True)
class Validation:
    """A file checked against its table's contract."""

    table: str
    path: Path
    rows_read: int
    good: pl.DataFrame | None  # rows passing every rule, contract columns and types; None: nothing usable
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def bad_rows(self) -> int:
        return self.rows_read - (self.good.height if self.good is not None else 0)

    def describe(self) -> str:
        head = (f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''} in this {self.table} file "
                f"({self.rows_read:,} rows read, {self.bad_rows:,} bad):")
        return "\n".join([head, *(f"  - {p.describe()}" for p in self.problems)])


def validate(table: str, file: Path, now: datetime | None = None,
             tolerance: timedelta = FUTURE_TOLERANCE) -> Validation:
    """Check a Parquet or CSV file against `table`'s contract; never raises for bad content."""
    file = Path(file)
    try:
        frame = _read(file)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:  # damaged, not UTF-8, or not a data file
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return Validation(table, file, 0, None, (Problem("unreadable", None, f"cannot read the file: {reason}"),))
    good, problems = validate_frame(table, frame, now=now, tolerance=tolerance)
    return Validation(table, file, frame.height, good, tuple(problems))


def _read(file: Path) -> pl.DataFrame:
    if file.suffix == ".parquet":
        return pl.read_parquet(file)
    if file.suffix == ".csv":
        # Every column as text: the contract decides the types, row by row.
        return pl.read_csv(file, infer_schema=False, encoding="utf8")
    raise ValueError(f"unsupported file type {file.suffix!r}: land Parquet or CSV")


def validate_frame(table: str, frame: pl.DataFrame, now: datetime | None = None,
                   tolerance: timedelta = FUTURE_TOLERANCE) -> tuple[pl.DataFrame | None, list[Problem]]:
    """The rows of `frame` that pass every rule of `table`'s contract, and the problems found."""
    contract = CONTRACTS[table]
    expected = list(contract.columns)
    missing = [c for c in expected if c not in frame.columns]
    extra = [c for c in frame.columns if c not in contract.columns]
    problems: list[Problem] = []
    if extra:
        problems.append(Problem("unexpected_columns", None,
                                f"column(s) {extra} are not part of the {table} table ({', '.join(expected)})"
                                + ("" if missing else "; the good rows keep only the table's columns")))
    if missing:
        problems.insert(0, Problem("missing_columns", None,
                                   f"column(s) {missing} are missing; a {table} file has {', '.join(expected)}"))
        return None, problems

    n = frame.height
    bad = pl.Series("bad", [False] * n, dtype=pl.Boolean)
    failed: dict[str, pl.Series] = {}
    typed_columns = []
    for name, dtype in contract.columns.items():
        typed, not_typed = _coerce(frame[name], dtype)
        typed_columns.append(typed.alias(name))
        failed[name] = not_typed
        bad = _flag(problems, bad, not_typed, "bad_value", name, f"with a value that is not a valid {_type_name(dtype)}")
    typed = pl.DataFrame(typed_columns)

    for name in contract.required:
        missing_value = typed[name].is_null() & ~failed[name]
        bad = _flag(problems, bad, missing_value, "null_value", name, "with no value, although the column is required")
    for name, allowed in contract.enums.items():
        unknown = typed[name].is_not_null() & ~typed[name].is_in(list(allowed))
        if unknown.any():
            values = sorted(typed[name].filter(unknown).unique().to_list())[:5]
            bad = _flag(problems, bad, unknown, "unknown_value", name,
                        f"with {values}, not one of {list(allowed)}")
    horizon = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None) + tolerance
    future = (typed[contract.event_time] > horizon).fill_null(False)
    if future.any():
        latest = typed[contract.event_time].filter(future).max()
        bad = _flag(problems, bad, future, "future_time", contract.event_time,
                    f"dated after {horizon:%Y-%m-%d %H:%M} UTC (now + {_hours(tolerance)} h), the latest {latest}")
    for name, dtype in contract.columns.items():
        if dtype == pl.String:
            limit = contract.max_chars.get(name, MAX_STRING_CHARS)
            long = (typed[name].str.len_chars() > limit).fill_null(False)
            bad = _flag(problems, bad, long, "text_too_long", name, f"with a value longer than {limit:,} characters")

    # A row equal to an earlier row in every column is a copy: dropping it loses nothing. Rows
    # that share a key but differ elsewhere conflict, and no rule says which one is right.
    copy = ~typed.select(pl.struct(pl.all()).is_first_distinct()).to_series()
    bad = _flag(problems, bad, copy, "duplicate_row", contract.key, "that copy an earlier row exactly (the copies are dropped)")
    conflict = _conflicts(typed[contract.key], copy)
    bad = _flag(problems, bad, conflict, "conflicting_key", contract.key,
                "sharing their key with a different row (which one is right is unknown)")
    return typed.filter(~bad), problems


def _conflicts(key: pl.Series, copy: pl.Series) -> pl.Series:
    """Rows, copies aside, whose key is also on another row that is not a copy of it."""
    kept = key.filter(~copy)
    shared = kept.filter(kept.is_duplicated() & kept.is_not_null()).unique()
    return key.is_in(shared.implode()) & ~copy


def _flag(problems: list[Problem], bad: pl.Series, mask: pl.Series, rule: str, column: str, what: str) -> pl.Series:
    mask = mask.fill_null(False)
    count = int(mask.sum())
    if count:
        rows = tuple(int(i) + 1 for i in mask.arg_true().to_list())
        problems.append(Problem(rule, column, f"{count:,} row{'s' if count > 1 else ''} {what}", rows))
    return bad | mask


def _coerce(series: pl.Series, dtype: pl.DataType) -> tuple[pl.Series, pl.Series]:
    """`series` in `dtype`, and where a present value could not be represented in it."""
    if series.dtype == dtype:
        return series, pl.Series([False] * series.len(), dtype=pl.Boolean)
    if dtype == TIMESTAMP:
        if series.dtype == pl.String:
            typed = series.str.strip_chars().str.to_datetime(time_unit="us", strict=False)
        elif isinstance(series.dtype, pl.Datetime) and series.dtype.time_zone:
            typed = series.dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(TIMESTAMP)
        elif isinstance(series.dtype, pl.Datetime | pl.Date):
            typed = series.cast(TIMESTAMP)
        else:
            typed = pl.Series([None] * series.len(), dtype=TIMESTAMP)
    elif dtype == pl.Boolean and series.dtype == pl.String:
        typed = series.str.strip_chars().str.to_lowercase().replace_strict(
            {"true": True, "false": False, "1": True, "0": False}, default=None, return_dtype=pl.Boolean)
    elif dtype == pl.Int64 and series.dtype.is_float():
        whole = (series.is_finite() & (series.round(0) == series)).fill_null(False)
        typed = series.cast(pl.Int64, strict=False).zip_with(whole, pl.Series([None] * series.len(), dtype=pl.Int64))
    else:
        src = series.str.strip_chars() if series.dtype == pl.String and dtype != pl.String else series
        try:
            typed = src.cast(dtype, strict=False)
        except pl.exceptions.InvalidOperationError:
            typed = pl.Series([None] * series.len(), dtype=dtype)
    return typed, series.is_not_null() & typed.is_null()


def _type_name(dtype: pl.DataType) -> str:
    return {pl.Int64: "integer", pl.String: "text", pl.Boolean: "true/false"}.get(dtype, "timestamp")


def _hours(delta: timedelta) -> int:
    return int(delta.total_seconds() // 3600)


# ---------------------------------------------------------------------------------------
# The raw lake check: validate files changed since their last validation, quarantine bad ones.
# ---------------------------------------------------------------------------------------
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
    keeps them and dbt never sees the bad ones. One checker at a time (an flock).
    """
    now = now or datetime.now(UTC)
    manifest_path = lake.raw_validation_manifest
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    with open(manifest_path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
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
    rows = (f"rows:       the {result.good.height:,} good rows were written back to {path}; the "
            f"{result.bad_rows:,} rows listed above are not in the lake (this file keeps every row)." if keep else
            "rows:       none of this file's rows are in the lake any more (no row passed every rule).")
    if keep and all(p.rule == "duplicate_row" for p in result.problems):
        todo = "what to do: nothing is missing from the lake (only exact copies were dropped); delete this file."
    else:
        todo = (f"what to do: fix the rows listed above and put the corrected file back at {path}\n"
                f"            (it is validated again on the next run), or re-land the day with\n"
                f"            `trustlake run --first {day} --days 1` if trustlake's simulator wrote it.")
    reason = f"why:        {result.describe()}\n{rows}\n{todo}"
    moved: list[Path] = []
    if keep:
        # The good rows replace the file in one rename right after it moves out.
        write_parquet_atomic(result.good, path,
                             before_replace=lambda: moved.append(lake.quarantine(path, table, reason)))
    else:
        moved.append(lake.quarantine(path, table, reason))
    log.warning("raw file %s broke the %s contract and was quarantined (%s); %s good rows kept",
                path, table, "; ".join(p.rule for p in result.problems), result.good.height if keep else 0)
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": 1, "files": dict(sorted(files.items()))}, indent=0))
    os.replace(tmp, path)
