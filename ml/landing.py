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
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl

from ml.lake import LANDED_PREFIX, Lake, replace_file_atomic, write_parquet_atomic
from ml.simulator import EVENT_TIME, RAW_TABLES, REPORT_REASONS
from ml.taxonomy import DECISION_ACTIONS, POLICIES
from ml.text import normalise, text_hash

log = logging.getLogger(__name__)

# Event times may run ahead of the lake's clock by this much (clock skew, time zones); beyond
# it a row is a future timestamp. dbt's `not_in_future` source tests use the same tolerance.
FUTURE_TOLERANCE = timedelta(hours=24)
MAX_TEXT_CHARS = 10_000  # a post or message body
MAX_STRING_CHARS = 256  # identifiers, codes, fingerprints, enum values
ROWS_SHOWN = 20  # bad row numbers listed per problem in a reason file

SURFACES = ("post", "comment", "video_comment", "direct_message")
REVIEW_REASONS = ("user_report", "proactive")
ENFORCEMENTS = ("remove", "restrict")  # the actions an appeal can contest
APPEAL_OUTCOMES = ("upheld", "overturned")
TIMESTAMP = pl.Datetime("us")


@dataclass(frozen=True)
class Reference:
    """`column` holds the key of a row of `table`, which must be in the lake; the referring row's
    event time is never before that row's; `allowed` limits the referenced rows' values."""

    column: str
    table: str
    allowed: tuple[str, tuple[str, ...]] | None = None  # (column of `table`, values it may have)


@dataclass(frozen=True)
class TableContract:
    """The shape and rules of one raw table."""

    table: str
    columns: dict[str, pl.DataType]  # every column, in order, with its type
    key: str  # never null, unique within a file (and, for landed files, across the lake)
    required: tuple[str, ...]  # never null (the key and event time included)
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)
    max_chars: dict[str, int] = field(default_factory=dict)  # String columns not named: MAX_STRING_CHARS
    min_values: dict[str, int] = field(default_factory=dict)
    ordered: tuple[tuple[str, str], ...] = ()  # (later, earlier): on one row, `later` never precedes `earlier`
    text_hash: tuple[str, str] | None = None  # (text, hash): hash == ml.text.text_hash(normalise(text))
    unique: tuple[str, ...] = ()  # columns besides the key that are unique across the table
    references: tuple[Reference, ...] = ()  # checked against the lake when a file lands

    @property
    def event_time(self) -> str:
        return EVENT_TIME[self.table]


def _contract(table: str, columns: dict, required: tuple[str, ...], **rules) -> TableContract:
    return TableContract(table, columns, key=next(iter(columns)), required=required, **rules)


CONTRACTS: dict[str, TableContract] = {
    "users": _contract(
        "users",
        {
            "user_id": pl.Int64,
            "signup_at": TIMESTAMP,
            "country": pl.String,
            "language": pl.String,
            "device_fingerprint": pl.String,
            "ip_fingerprint": pl.String,
            "verified": pl.Boolean,
            "follower_count": pl.Int64,
        },
        required=("user_id", "signup_at"),
        min_values={"follower_count": 0},
    ),
    "content": _contract(
        "content",
        {
            "content_id": pl.Int64,
            "author_id": pl.Int64,
            "created_at": TIMESTAMP,
            "surface": pl.String,
            "language": pl.String,
            "text": pl.String,
            "text_hash": pl.String,
            "has_link": pl.Boolean,
            "has_phone": pl.Boolean,
        },
        required=("content_id", "author_id", "created_at", "text", "text_hash"),
        enums={"surface": SURFACES},
        max_chars={"text": MAX_TEXT_CHARS},
        text_hash=("text", "text_hash"),
        references=(Reference("author_id", "users"),),
    ),
    "reports": _contract(
        "reports",
        {
            "report_id": pl.Int64,
            "content_id": pl.Int64,
            "reporter_id": pl.Int64,
            "reason": pl.String,
            "reported_at": TIMESTAMP,
        },
        required=("report_id", "content_id", "reported_at"),
        enums={"reason": tuple(REPORT_REASONS)},
        references=(Reference("content_id", "content"),),
    ),
    "decisions": _contract(
        "decisions",
        {
            "decision_id": pl.Int64,
            "content_id": pl.Int64,
            "moderator_id": pl.Int64,
            "review_reason": pl.String,
            "policy": pl.String,
            "action": pl.String,
            "decided_at": TIMESTAMP,
        },
        required=("decision_id", "content_id", "moderator_id", "decided_at"),
        enums={"review_reason": REVIEW_REASONS, "policy": tuple(POLICIES), "action": DECISION_ACTIONS},
        unique=("content_id",),
        references=(Reference("content_id", "content"),),
    ),
    "appeals": _contract(
        "appeals",
        {
            "appeal_id": pl.Int64,
            "decision_id": pl.Int64,
            "content_id": pl.Int64,
            "appellant_id": pl.Int64,
            "appealed_at": TIMESTAMP,
            "resolved_at": TIMESTAMP,
            "outcome": pl.String,
        },
        required=("appeal_id", "decision_id", "resolved_at"),
        enums={"outcome": APPEAL_OUTCOMES},
        ordered=(("resolved_at", "appealed_at"),),
        references=(Reference("decision_id", "decisions", allowed=("action", ENFORCEMENTS)),),
    ),
    "qa_audits": _contract(
        "qa_audits",
        {
            "audit_id": pl.Int64,
            "content_id": pl.Int64,
            "auditor_id": pl.Int64,
            "gold_policy": pl.String,
            "audited_at": TIMESTAMP,
        },
        required=("audit_id", "content_id", "audited_at"),
        enums={"gold_policy": tuple(POLICIES)},
        references=(Reference("content_id", "content"),),
    ),
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
        head = (
            f"{len(self.problems)} problem{'s' if len(self.problems) != 1 else ''} in this {self.table} file "
            f"({self.rows_read:,} rows read, {self.bad_rows:,} bad):"
        )
        return "\n".join([head, *(f"  - {p.describe()}" for p in self.problems)])


def validate(
    table: str, file: Path, now: datetime | None = None, tolerance: timedelta = FUTURE_TOLERANCE
) -> Validation:
    """Check a Parquet or CSV file against `table`'s contract; never raises for bad content."""
    file = Path(file)
    try:
        frame = _read(file)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:  # damaged, not UTF-8, or not a data file
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        return Validation(table, file, 0, None, (Problem("unreadable", None, f"cannot read the file: {reason}"),))
    try:
        good, problems = validate_frame(table, frame, now=now, tolerance=tolerance)
    except pl.exceptions.PolarsError as exc:
        return Validation(table, file, frame.height, None, (_uncheckable(file, exc),))
    return Validation(table, file, frame.height, good, tuple(problems))


def _uncheckable(file: Path, exc: Exception) -> Problem:
    """A value the rules could not even be applied to: the file's problem, said with the error (and logged)."""
    log.exception("checking %s failed", file)
    detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    return Problem("unreadable", None, f"cannot check the file: {detail}")


def _read(file: Path) -> pl.DataFrame:
    if file.suffix.lower() == ".parquet":
        return pl.read_parquet(file)
    if file.suffix.lower() == ".csv":
        # Every column as text: the contract decides the types, row by row.
        return pl.read_csv(file, infer_schema=False, encoding="utf8")
    raise ValueError(f"unsupported file type {file.suffix!r}: land Parquet or CSV")


def validate_frame(
    table: str, frame: pl.DataFrame, now: datetime | None = None, tolerance: timedelta = FUTURE_TOLERANCE
) -> tuple[pl.DataFrame | None, list[Problem]]:
    """The rows of `frame` that pass every rule of `table`'s contract, and the problems found."""
    typed, bad, problems = _check_rows(table, frame, now, tolerance)
    return (None if typed is None else typed.filter(~bad)), problems


def _check_rows(
    table: str, frame: pl.DataFrame, now: datetime | None, tolerance: timedelta
) -> tuple[pl.DataFrame | None, pl.Series | None, list[Problem]]:
    """`frame` in the contract's columns and types, which rows break a rule, and the problems."""
    contract = CONTRACTS[table]
    expected = list(contract.columns)
    missing = [c for c in expected if c not in frame.columns]
    extra = [c for c in frame.columns if c not in contract.columns]
    problems: list[Problem] = []
    if extra:
        problems.append(
            Problem(
                "unexpected_columns",
                None,
                f"column(s) {extra} are not part of the {table} table ({', '.join(expected)})"
                + ("" if missing else "; the good rows keep only the table's columns"),
            )
        )
    if missing:
        problems.insert(
            0,
            Problem(
                "missing_columns", None, f"column(s) {missing} are missing; a {table} file has {', '.join(expected)}"
            ),
        )
        return None, None, problems

    n = frame.height
    bad = pl.Series("bad", [False] * n, dtype=pl.Boolean)
    failed: dict[str, pl.Series] = {}
    typed_columns = []
    for name, dtype in contract.columns.items():
        typed, not_typed = _coerce(frame[name], dtype)
        typed_columns.append(typed.alias(name))
        failed[name] = not_typed
        bad = _flag(
            problems, bad, not_typed, "bad_value", name, f"with a value that is not a valid {_type_name(dtype)}"
        )
    typed = pl.DataFrame(typed_columns)

    for name in contract.required:
        missing_value = typed[name].is_null() & ~failed[name]
        bad = _flag(problems, bad, missing_value, "null_value", name, "with no value, although the column is required")
    for name, allowed in contract.enums.items():
        unknown = typed[name].is_not_null() & ~typed[name].is_in(list(allowed))
        if unknown.any():
            values = sorted(typed[name].filter(unknown).unique().to_list())[:5]
            bad = _flag(problems, bad, unknown, "unknown_value", name, f"with {values}, not one of {list(allowed)}")
    horizon = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None) + tolerance
    future = (typed[contract.event_time] > horizon).fill_null(False)
    if future.any():
        latest = typed[contract.event_time].filter(future).max()
        bad = _flag(
            problems,
            bad,
            future,
            "future_time",
            contract.event_time,
            f"dated after {horizon:%Y-%m-%d %H:%M} UTC (now + {_hours(tolerance)} h), the latest {latest}",
        )
    for name, dtype in contract.columns.items():
        if dtype == pl.String:
            limit = contract.max_chars.get(name, MAX_STRING_CHARS)
            long = (typed[name].str.len_chars() > limit).fill_null(False)
            bad = _flag(problems, bad, long, "text_too_long", name, f"with a value longer than {limit:,} characters")
    for name, least in contract.min_values.items():
        bad = _flag(problems, bad, typed[name] < least, "below_minimum", name, f"below {least}")
    for later, earlier in contract.ordered:
        bad = _flag(problems, bad, typed[later] < typed[earlier], "time_order", later, f"earlier than {earlier}")
    if contract.text_hash:
        text, hashed = contract.text_hash
        expected_hash = typed[text].map_elements(lambda t: text_hash(normalise(t)), return_dtype=pl.String)
        bad = _flag(
            problems,
            bad,
            typed[hashed].is_not_null() & (typed[hashed] != expected_hash),
            "text_hash_mismatch",
            hashed,
            f"that is not ml.text.text_hash(ml.text.normalise({text})), the 16-hex-digit hash "
            "deduplication and evaluation splits rely on",
        )

    # A row equal to an earlier row in every column is a copy: dropping it loses nothing. Rows
    # that share a key but differ elsewhere conflict, and no rule says which one is right.
    copy = ~typed.select(pl.struct(pl.all()).is_first_distinct()).to_series()
    bad = _flag(
        problems, bad, copy, "duplicate_row", contract.key, "that copy an earlier row exactly (the copies are dropped)"
    )
    conflict = _conflicts(typed[contract.key], copy)
    bad = _flag(
        problems,
        bad,
        conflict,
        "conflicting_key",
        contract.key,
        "sharing their key with a different row (which one is right is unknown)",
    )
    for name in contract.unique:
        bad = _flag(
            problems,
            bad,
            _conflicts(typed[name], copy),
            "duplicate_value",
            name,
            f"sharing their {name} with another row (a {name} has at most one {table} row)",
        )
    return typed, bad, problems


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
            typed = _parse_timestamps(series)
        elif isinstance(series.dtype, pl.Datetime) and series.dtype.time_zone:
            typed = series.dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(TIMESTAMP)
        elif isinstance(series.dtype, pl.Datetime | pl.Date):
            typed = series.cast(TIMESTAMP)
        else:
            typed = pl.Series([None] * series.len(), dtype=TIMESTAMP)
    elif dtype == pl.Boolean and series.dtype == pl.String:
        typed = (
            series.str.strip_chars()
            .str.to_lowercase()
            .replace_strict(
                {"true": True, "false": False, "1": True, "0": False}, default=None, return_dtype=pl.Boolean
            )
        )
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


# Text timestamps a CSV may hold: ISO 8601 with a space or a T, to the day, minute or (fraction of
# a) second; naive ones are UTC. Listed rather than inferred: polars infers one format from the
# first value and raises when that value is not a timestamp, which would fail the whole file.
NAIVE_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d")
ZONED_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z")


def _parse_timestamps(text: pl.Series) -> pl.Series:
    text = text.str.strip_chars()
    naive = [text.str.to_datetime(f, time_unit="us", strict=False) for f in NAIVE_FORMATS]
    zoned = [
        text.str.to_datetime(f, time_unit="us", strict=False).dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        for f in ZONED_FORMATS
    ]
    return pl.select(pl.coalesce(*naive, *zoned).alias(text.name)).to_series()


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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": 1, "files": dict(sorted(files.items()))}, indent=0))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------
# Landing external files: `lake/landing/<table>/` -> checked -> raw partitions or quarantine.
#
# A file passes the file rules above, then the lake rules below, which need what the lake
# already holds: its day is one of the lake's daily partitions; its key (and any other unique
# column) is not in the lake yet; every reference points at a row of the lake that happened no
# later, and of an allowed kind; a decision comes no earlier than the first report on its
# content, and a report never becomes a content's first report after its decision. They mirror
# the dbt tests (sources, staging and fct_moderation_actions), so a landed row never fails the
# warehouse build of a later day.
#
# A file with some bad rows is split: its good rows land, and the original file (every row, so
# the row numbers in the reason match) goes to quarantine with a reason naming the bad rows and
# saying where the good ones went. A file with no good row goes to quarantine whole.
#
# Life of a file: `landing/<table>/<name>` (dropped) -> `landing/_ingesting/<table>/<fp>-<name>`
# (claimed by the landing sensor or `trustlake land`; a land run ingests it) -> its good rows in
# `raw/<table>/date=<day>/landed-<fp>.parquet` and the original in `landing/_ingested/<table>/`
# or `quarantine/<table>/`. `<fp>` is a hash of the file's bytes.
# ---------------------------------------------------------------------------------------
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
class LandingCheck:
    """A file checked against its table's contract and the lake."""

    validation: Validation
    days: tuple[date, ...]  # the partitions its good rows belong to
    waiting_for: tuple[str, ...] = ()  # claims holding rows its references need, not landed yet

    @property
    def usable(self) -> bool:
        return self.validation.good is not None and self.validation.good.height > 0


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


def landing_day(table: str, frame: pl.DataFrame, first_day: date) -> pl.Series:
    """The raw partition of each row: its event day; accounts older than the lake land on its first day."""
    day = frame[CONTRACTS[table].event_time].dt.date()
    return day.clip(lower_bound=first_day) if table == "users" else day


def check_landing(
    lake: Lake,
    table: str,
    file: Path,
    window: tuple[date, date],
    now: datetime | None = None,
    ignore_fingerprint: str | None = None,
    pending: Iterable[Claim] = (),
) -> LandingCheck:
    """Check a dropped file against `table`'s contract (file rules, then lake rules on the rows passing them).

    `window` is the first and last day of the lake's daily partitions. `ignore_fingerprint` leaves
    out the lake files an earlier attempt to land this same file wrote (a re-run). A reference
    found only in a `pending` claim is not a problem yet: the file waits for that claim to land.
    """
    file = Path(file)
    try:
        frame = _read(file)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        problem = Problem("unreadable", None, f"cannot read the file: {reason}")
        return LandingCheck(Validation(table, file, 0, None, (problem,)), ())
    try:
        typed, bad, problems = _check_rows(table, frame, now, FUTURE_TOLERANCE)
    except pl.exceptions.PolarsError as exc:
        return LandingCheck(Validation(table, file, frame.height, None, (_uncheckable(file, exc),)), ())
    if typed is None:
        return LandingCheck(Validation(table, file, frame.height, None, tuple(problems)), ())
    if frame.height == 0:
        problems.append(Problem("empty", None, "the file has no rows"))
    waiting: set[str] = set()
    if (~bad).any():
        bad = _check_against_lake(lake, table, typed, bad, window, problems, ignore_fingerprint, list(pending), waiting)
    good = typed.filter(~bad)
    days = tuple(sorted(set(landing_day(table, good, window[0]).to_list())))
    return LandingCheck(Validation(table, file, frame.height, good, tuple(problems)), days, tuple(sorted(waiting)))


def _lake_rows(lake: Lake, table: str, ignore_fingerprint: str | None = None) -> pl.LazyFrame | None:
    """Every row of a raw table in the lake (the contract's columns), or None when it has none."""
    skip = f"{LANDED_PREFIX}{ignore_fingerprint}.parquet" if ignore_fingerprint else None
    files = [p for p in sorted((lake.raw / table).glob("date=*/*.parquet")) if p.name != skip]
    if not files:
        return None
    return pl.scan_parquet(files, hive_partitioning=False, missing_columns="insert", extra_columns="ignore").select(
        list(CONTRACTS[table].columns)
    )


def _check_against_lake(
    lake: Lake,
    table: str,
    typed: pl.DataFrame,
    bad: pl.Series,
    window: tuple[date, date],
    problems: list[Problem],
    ignore_fingerprint: str | None,
    pending: list[Claim],
    waiting: set[str],
) -> pl.Series:
    contract = CONTRACTS[table]
    first, last = window
    rows = typed.with_columns(
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"),
        landing_day(table, typed, first).alias("_day"),
        bad.alias("_bad"),
    )
    n = typed.height

    def mask(frame: pl.DataFrame) -> pl.Series:
        """Rows of `typed` named by frame["_row"]."""
        return pl.int_range(n, eager=True).is_in(frame["_row"].implode())

    def flag(hit: pl.DataFrame, rule: str, column: str | None, what: str) -> None:
        nonlocal bad, rows
        if hit.height:
            bad = _flag(problems, bad, mask(hit), rule, column, what)
            rows = rows.with_columns(bad.alias("_bad"))

    def alive() -> pl.DataFrame:
        return rows.filter(~pl.col("_bad"))

    flag(
        alive().filter((pl.col("_day") < first) | (pl.col("_day") > last)),
        "outside_window",
        contract.event_time,
        f"dated outside the lake's daily partitions ({first} .. {last})",
    )

    # Keys: a row equal to a lake row in every column is already there; a different row with the
    # same key would replace it silently, so it is a duplicate, not an update.
    own = _lake_rows(lake, table, ignore_fingerprint)
    columns = list(contract.columns)
    if own is not None:
        keys = alive()[contract.key].unique().implode()
        existing = own.filter(pl.col(contract.key).is_in(keys)).collect().unique(subset=contract.key, keep="first")
        joined = alive().join(existing, on=contract.key, how="inner", suffix="_lake")
        same = pl.all_horizontal(pl.col(c).eq_missing(pl.col(f"{c}_lake")) for c in columns if c != contract.key)
        flag(
            joined.filter(same),
            "already_landed",
            contract.key,
            "identical to rows already in the lake (nothing is missing; they were not landed twice)",
        )
        flag(
            joined.filter(~same),
            "duplicate_key",
            contract.key,
            f"whose {contract.key} is already in the lake with different values (a key is never overwritten)",
        )
        for name in contract.unique:
            taken = own.filter(pl.col(name).is_in(alive()[name].drop_nulls().unique().implode())).select(name)
            flag(
                alive().join(taken.collect().unique(), on=name, how="semi"),
                "duplicate_value",
                name,
                f"whose {name} already has a {table} row in the lake (a {name} has at most one)",
            )

    for ref in contract.references:
        target = CONTRACTS[ref.table]
        wanted = alive()[ref.column].drop_nulls().unique().implode()
        theirs = _lake_rows(lake, ref.table)
        found = (
            (
                theirs.filter(pl.col(target.key).is_in(wanted))
                .select(
                    pl.col(target.key).alias(ref.column),
                    pl.col(target.event_time).alias("_ref_time"),
                    *([pl.col(ref.allowed[0]).alias("_ref_kind")] if ref.allowed else []),
                )
                .collect()
                .unique(subset=ref.column, keep="first")
            )
            if theirs is not None
            else None
        )
        joined = (
            alive().join(found, on=ref.column, how="left")
            if found is not None
            else alive().with_columns(pl.lit(None, dtype=TIMESTAMP).alias("_ref_time"))
        )
        unknown = joined.filter(pl.col(ref.column).is_not_null() & pl.col("_ref_time").is_null())
        if unknown.height and pending:
            held = _pending_keys(pending, ref.table, target.key)
            for claim, keys in held:
                if unknown[ref.column].is_in(keys.implode()).any():
                    waiting.add(claim.name)
        flag(
            unknown,
            "unknown_reference",
            ref.column,
            f"whose {ref.column} is not a {target.key} of any {ref.table} row in the lake (land those first)",
        )
        known = joined.filter(pl.col("_ref_time").is_not_null() & ~pl.col("_bad"))
        flag(
            known.filter(pl.col(contract.event_time) < pl.col("_ref_time")),
            "before_reference",
            contract.event_time,
            f"earlier than the {ref.table} row their {ref.column} points at ({target.event_time})",
        )
        if ref.allowed:
            column, values = ref.allowed
            flag(
                known.filter(~pl.col("_ref_kind").is_in(list(values)).fill_null(False)),
                "reference_not_allowed",
                ref.column,
                f"pointing at {ref.table} rows whose {column} is not one of {list(values)}",
            )

    if table in ("decisions", "reports"):
        _check_review_order(lake, table, alive(), flag)
    return bad


def _check_review_order(lake: Lake, table: str, alive: pl.DataFrame, flag) -> None:
    """A decision's review latency (from its content's first report) is never negative (fct_moderation_actions)."""
    reports, decisions = _lake_rows(lake, "reports"), _lake_rows(lake, "decisions")
    content_ids = alive["content_id"].drop_nulls().unique().implode()
    first_reports = (
        None
        if reports is None
        else (
            reports.filter(pl.col("content_id").is_in(content_ids))
            .group_by("content_id")
            .agg(pl.col("reported_at").min().alias("_first_report"))
            .collect()
        )
    )
    if table == "decisions":
        if first_reports is not None:
            early = alive.join(first_reports, on="content_id").filter(pl.col("decided_at") < pl.col("_first_report"))
            flag(
                early,
                "decided_before_report",
                "decided_at",
                "earlier than the first report on their content (the review latency would be negative)",
            )
        return
    if decisions is None:
        return
    decided = (
        decisions.filter(pl.col("content_id").is_in(content_ids))
        .select("content_id", pl.col("decided_at").alias("_decided_at"))
        .collect()
    )
    joined = alive.join(decided, on="content_id")
    if first_reports is not None:
        joined = joined.join(first_reports, on="content_id", how="left")
    else:
        joined = joined.with_columns(pl.lit(None, dtype=TIMESTAMP).alias("_first_report"))
    # The content's first report after this file lands: the earlier of the lake's and the file's.
    joined = joined.with_columns(
        pl.min_horizontal(pl.col("_first_report"), pl.col("reported_at").min().over("content_id")).alias("_new_first")
    )
    late = joined.filter(pl.col("_new_first") > pl.col("_decided_at"))
    flag(
        late,
        "report_after_decision",
        "reported_at",
        "that would be the first report on content decided before it (the review latency would be negative)",
    )


def _pending_keys(pending: list[Claim], table: str, key: str) -> list[tuple[Claim, pl.Series]]:
    out = []
    for claim in pending:
        if claim.table != table:
            continue
        result = validate(table, claim.path)
        if result.good is not None:
            out.append((claim, result.good[key]))
    return out


@contextmanager
def _landing_lock(lake: Lake, table: str):
    """One land run at a time per table: its lake check and its writes are one step."""
    lake.landing.mkdir(parents=True, exist_ok=True)
    with open(lake.landing / f".{table}.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        yield


def claim_file(lake: Lake, table: str, file: Path, copy: bool = False) -> Claim:
    """Move (or copy, atomically) a checked file to `_ingesting/<table>/<fingerprint>-<name>`."""
    file = Path(file)
    claim = Claim(table, lake.landing / INGESTING / table / f"{file_fingerprint(file)}-{file.name}")
    claim.path.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        replace_file_atomic(file, claim.path)
    else:
        os.replace(file, claim.path)  # same content and name as any file already there: nothing is lost
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
        good = result.good if result.good is not None else pl.DataFrame(schema=CONTRACTS[table].columns)
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
            os.replace(claim.path, ingested)
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
