"""The validation engine: a file or frame checked against its raw table's contract, row by row.

Validation never repairs a value: each row passes every rule or is a bad row, reported by its
1-based row number with the rule it broke (`Problem`). Text columns of a CSV are coerced to the
contract's types row by row, so one bad value makes one bad row, not an unreadable file. The
rules here need only the file; the rules that need the lake's rows are `ml.raw.landing_check`'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from ml.raw.contracts import CONTRACTS, FUTURE_TOLERANCE, MAX_STRING_CHARS, TIMESTAMP
from ml.text import normalise, text_hash

log = logging.getLogger(__name__)

ROWS_SHOWN = 20  # bad row numbers listed per problem in a reason file


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
    frame, unreadable = read_rows(table, file)
    if frame is None:
        return unreadable
    try:
        good, problems = validate_frame(table, frame, now=now, tolerance=tolerance)
    except pl.exceptions.PolarsError as exc:
        return uncheckable(table, file, frame, exc)
    return Validation(table, file, frame.height, good, tuple(problems))


def read_rows(table: str, file: Path) -> tuple[pl.DataFrame | None, Validation | None]:
    """The rows of a Parquet or CSV file (CSV columns as text: the contract decides the types, row
    by row), or None and the Validation of a file that cannot be read."""
    try:
        if file.suffix.lower() == ".parquet":
            return pl.read_parquet(file), None
        if file.suffix.lower() == ".csv":
            return pl.read_csv(file, infer_schema=False, encoding="utf8"), None
        raise ValueError(f"unsupported file type {file.suffix!r}: land Parquet or CSV")
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:  # damaged, not UTF-8, or not a data file
        reason = _first_line(exc)
        return None, Validation(table, file, 0, None, (Problem("unreadable", None, f"cannot read the file: {reason}"),))


def uncheckable(table: str, file: Path, frame: pl.DataFrame, exc: Exception) -> Validation:
    """A value the rules could not even be applied to: the file's problem, said with the error (and logged)."""
    log.exception("checking %s failed", file)
    problem = Problem("unreadable", None, f"cannot check the file: {_first_line(exc)}")
    return Validation(table, file, frame.height, None, (problem,))


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def validate_frame(
    table: str, frame: pl.DataFrame, now: datetime | None = None, tolerance: timedelta = FUTURE_TOLERANCE
) -> tuple[pl.DataFrame | None, list[Problem]]:
    """The rows of `frame` that pass every rule of `table`'s contract, and the problems found."""
    typed, bad, problems = check_rows(table, frame, now, tolerance)
    return (None if typed is None else typed.filter(~bad)), problems


def check_rows(
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
        bad = flag_rows(
            problems, bad, not_typed, "bad_value", name, f"with a value that is not a valid {_type_name(dtype)}"
        )
    typed = pl.DataFrame(typed_columns)

    for name in contract.required:
        missing_value = typed[name].is_null() & ~failed[name]
        bad = flag_rows(
            problems, bad, missing_value, "null_value", name, "with no value, although the column is required"
        )
    for name, allowed in contract.enums.items():
        unknown = typed[name].is_not_null() & ~typed[name].is_in(list(allowed))
        if unknown.any():
            values = sorted(typed[name].filter(unknown).unique().to_list())[:5]
            bad = flag_rows(problems, bad, unknown, "unknown_value", name, f"with {values}, not one of {list(allowed)}")
    horizon = (now or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None) + tolerance
    future = (typed[contract.event_time] > horizon).fill_null(False)
    if future.any():
        latest = typed[contract.event_time].filter(future).max()
        bad = flag_rows(
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
            bad = flag_rows(
                problems, bad, long, "text_too_long", name, f"with a value longer than {limit:,} characters"
            )
    for name, least in contract.min_values.items():
        bad = flag_rows(problems, bad, typed[name] < least, "below_minimum", name, f"below {least}")
    for later, earlier in contract.ordered:
        bad = flag_rows(problems, bad, typed[later] < typed[earlier], "time_order", later, f"earlier than {earlier}")
    if contract.text_hash:
        text, hashed = contract.text_hash
        expected_hash = typed[text].map_elements(lambda t: text_hash(normalise(t)), return_dtype=pl.String)
        bad = flag_rows(
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
    bad = flag_rows(
        problems, bad, copy, "duplicate_row", contract.key, "that copy an earlier row exactly (the copies are dropped)"
    )
    conflict = _conflicts(typed[contract.key], copy)
    bad = flag_rows(
        problems,
        bad,
        conflict,
        "conflicting_key",
        contract.key,
        "sharing their key with a different row (which one is right is unknown)",
    )
    for name in contract.unique:
        bad = flag_rows(
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


def flag_rows(problems: list[Problem], bad: pl.Series, mask: pl.Series, rule: str, column: str, what: str) -> pl.Series:
    """`bad` with `mask`'s rows added; when there are any, a Problem naming `rule` and those rows."""
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
