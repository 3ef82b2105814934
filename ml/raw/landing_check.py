"""The landing check: a dropped file checked against its table's contract (`ml.raw.validation`),
then against what the lake already holds.

The lake rules: a row's day is one of the lake's daily partitions; its key (and any other
unique column) is not in the lake yet; every reference points at a row of the lake that
happened no later, and of an allowed kind; a decision comes no earlier than the first report on
its content, and a report never becomes a content's first report after its decision. They
mirror the dbt tests (sources, staging and fct_moderation_actions), so a landed row never fails
the warehouse build of a later day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Protocol

import polars as pl

from ml.lake import LANDED_PREFIX, Lake
from ml.raw.contracts import CONTRACTS, FUTURE_TOLERANCE, TIMESTAMP
from ml.raw.validation import Problem, Validation, check_rows, flag_rows, read_rows, uncheckable, validate


class PendingFile(Protocol):
    """A checked file waiting to land (ml/raw/landing.py's Claim): its table, where it is, its name."""

    table: str
    path: Path

    @property
    def name(self) -> str: ...


@dataclass(frozen=True)
class LandingCheck:
    """A file checked against its table's contract and the lake."""

    validation: Validation
    days: tuple[date, ...]  # the partitions its good rows belong to
    waiting_for: tuple[str, ...] = ()  # claims holding rows its references need, not landed yet

    @property
    def usable(self) -> bool:
        return self.validation.good is not None and self.validation.good.height > 0


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
    pending: Iterable[PendingFile] = (),
) -> LandingCheck:
    """Check a dropped file against `table`'s contract (file rules, then lake rules on the rows passing them).

    `window` is the first and last day of the lake's daily partitions. `ignore_fingerprint` leaves
    out the lake files an earlier attempt to land this same file wrote (a re-run). A reference
    found only in a `pending` claim is not a problem yet: the file waits for that claim to land.
    """
    file = Path(file)
    frame, unreadable = read_rows(table, file)
    if frame is None:
        return LandingCheck(unreadable, ())
    try:
        typed, bad, problems = check_rows(table, frame, now, FUTURE_TOLERANCE)
    except pl.exceptions.PolarsError as exc:
        return LandingCheck(uncheckable(table, file, frame, exc), ())
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
    pending: list[PendingFile],
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
            bad = flag_rows(problems, bad, mask(hit), rule, column, what)
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


def _pending_keys(pending: list[PendingFile], table: str, key: str) -> list[tuple[PendingFile, pl.Series]]:
    out = []
    for claim in pending:
        if claim.table != table:
            continue
        result = validate(table, claim.path)
        if result.good is not None:
            out.append((claim, result.good[key]))
    return out
