"""Reading the DuckDB warehouse safely, and publishing the analysts' read-only marts copy.

DuckDB allows one writing process or many readers, never both: these functions open the
warehouse only when no writer runs (after dbt exits, inside the Dagster `duckdb` pool), and
analysts only ever open the published copy, through `analyst_query`, which cannot write
anything anywhere (see its docstring for what DuckDB itself enforces). A process outside the
pipeline that opens `trustlake.duckdb` anyway (even read-only) makes a writer wait, up to
`LOCK_WAIT_SECONDS`, then fail naming that process (docs/operations.md, "Warehouse locks and recovery").
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb
import tenacity

from ml.lake import atomic_write

MARTS_SCHEMA = "marts"
# Statement kinds an analyst may run: they read, and DuckDB runs them on a read-only file with
# file access off anyway; the list only turns "you may not" into a clear message up front.
ANALYST_STATEMENTS = frozenset({"SELECT", "EXPLAIN", "PRAGMA", "CALL"})
# Locked for the connection's lifetime, so no statement can switch them back on.
ANALYST_CONFIG = {"enable_external_access": False, "lock_configuration": True}


class AnalystQueryError(ValueError):
    """An analyst's SQL was refused or failed; the message is one line that says why."""


# Long enough for a stray reader's query or an orphaned dbt of a killed run to end; short
# enough that a forgotten `duckdb trustlake.duckdb` session fails the run with its PID.
LOCK_WAIT_SECONDS = 60.0
LOCK_MESSAGE_EVERY_SECONDS = 15.0
T = TypeVar("T")


class WarehouseLockedError(RuntimeError):
    """Another process kept the warehouse file locked for longer than a writer waits."""


def is_lock_error(error: BaseException | str | None) -> bool:
    return error is not None and "Could not set lock on file" in str(error)


def lock_holder(error: BaseException | str) -> str:
    """`PID n (program)` from DuckDB's lock error, which names the process holding the file."""
    found = re.search(r"Conflicting lock is held in (.+?) \(PID (\d+)\)", str(error))
    return f"PID {found.group(2)} ({found.group(1)})" if found else "another process"


def retry_while_locked(
    action: Callable[[], T],
    db: Path,
    timeout_s: float = LOCK_WAIT_SECONDS,
    on_wait: Callable[[str], object] | None = None,
) -> T:
    """Run `action`; while it fails because another process holds `db`, wait and retry for up to
    `timeout_s` (backing off from 0.25 s to 2 s), telling `on_wait` who holds it (at once, then every
    LOCK_MESSAGE_EVERY_SECONDS). Raises WarehouseLockedError when the lock outlasts the wait."""
    db = Path(db)
    told: list[float] = []

    def tell(state: tenacity.RetryCallState) -> None:
        waited = state.seconds_since_start or 0.0
        if on_wait is not None and (not told or waited - told[-1] >= LOCK_MESSAGE_EVERY_SECONDS):
            on_wait(
                f"{db} is locked by {lock_holder(state.outcome.exception())}; waiting up to {timeout_s:.0f} s for it "
                f"to be closed ({waited:.0f} s so far). Only the pipeline opens {db.name}: analysts should query "
                f"{db.with_name('marts.duckdb')}, the read-only copy that never blocks the pipeline."
            )
            told.append(waited)

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, duckdb.IOException) and is_lock_error(exc)),
        stop=tenacity.stop_after_delay(timeout_s),
        wait=tenacity.wait_exponential(multiplier=0.25, max=2.0),
        before_sleep=tell,
    )
    try:
        return retrying(action)
    except tenacity.RetryError as exc:
        error = exc.last_attempt.exception()
        raise WarehouseLockedError(
            f"{db} is still locked by {lock_holder(error)} after {timeout_s:.0f} s. Close that process and "
            f"run again: only the pipeline opens {db.name}; analysts query {db.with_name('marts.duckdb')} "
            "(docs/operations.md, 'Warehouse locks and recovery')."
        ) from error


def wait_until_writable(
    db: Path, timeout_s: float = LOCK_WAIT_SECONDS, on_wait: Callable[[str], object] | None = None
) -> float:
    """Block until a writer could open `db` (a file that does not exist yet is writable); returns
    the seconds waited. Raises WarehouseLockedError when it stays locked past `timeout_s`."""
    start = time.monotonic()

    def probe() -> None:
        if Path(db).exists():
            duckdb.connect(str(db)).close()

    retry_while_locked(probe, db, timeout_s, on_wait)
    return time.monotonic() - start


def describe_tables(db_path: Path, names: list[str]) -> dict[str, tuple[int, list[tuple[str, str]]]]:
    """Row count and (column, type) pairs of each named table or view, whatever its schema."""
    if not names or not Path(db_path).exists():
        return {}
    out: dict[str, tuple[int, list[tuple[str, str]]]] = {}
    with duckdb.connect(str(db_path), read_only=True) as con:
        found = con.execute(
            "select table_schema, table_name from information_schema.tables where table_name in ?",
            [names],
        ).fetchall()
        for schema, name in found:
            rows = con.execute(f'select count(*) from "{schema}"."{name}"').fetchall()[0][0]
            cols = con.execute(
                "select column_name, data_type from information_schema.columns "
                "where table_schema = ? and table_name = ? order by ordinal_position",
                [schema, name],
            ).fetchall()
            out[name] = (int(rows), [(c, t) for c, t in cols])
    return out


def rows_by_day(db_path: Path, columns: dict[str, str], first, last) -> dict[str, dict]:
    """Rows per day of each named table or view, by its date (or timestamp) column, for days
    first..last (dates, inclusive); a day with no rows is absent. `columns` maps table -> column."""
    if not columns or not Path(db_path).exists():
        return {}
    out: dict[str, dict] = {}
    with duckdb.connect(str(db_path), read_only=True) as con:
        found = dict(
            con.execute(
                "select table_name, table_schema from information_schema.tables where table_name in ?", [list(columns)]
            ).fetchall()
        )
        for name, column in columns.items():
            if name not in found:
                continue
            rows = con.execute(
                f'select cast("{column}" as date) as day, count(*) from "{found[name]}"."{name}" '
                f'where cast("{column}" as date) between ? and ? group by 1',
                [first, last],
            ).fetchall()
            out[name] = {day: int(n) for day, n in rows}
    return out


def publish_marts(
    warehouse_db: Path,
    marts_db: Path,
    on_wait: Callable[[str], object] | None = None,
    lock_timeout_s: float = LOCK_WAIT_SECONDS,
) -> dict[str, int]:
    """Copy every table of the `marts` schema into a new file and rename it over `marts_db`.

    Readers that have the old file open keep reading the old inode; new readers see the new
    file whole. The warehouse is attached read-only, which waits (telling `on_wait`) while another
    process holds it for writing. Returns the row count of each published table.
    """
    marts_db.parent.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    with atomic_write(marts_db, writer_creates=True) as tmp, duckdb.connect(str(tmp)) as con:
        retry_while_locked(
            lambda: con.execute(f"attach '{warehouse_db}' as wh (read_only)"), warehouse_db, lock_timeout_s, on_wait
        )
        tables = [
            r[0]
            for r in con.execute(
                "select table_name from information_schema.tables "
                "where table_catalog = 'wh' and table_schema = ? and table_type = 'BASE TABLE' order by 1",
                [MARTS_SCHEMA],
            ).fetchall()
        ]
        if not tables:
            raise RuntimeError(f"no tables in schema {MARTS_SCHEMA!r} of {warehouse_db}: build the warehouse first")
        for t in tables:
            con.execute(f'create table main."{t}" as select * from wh.{MARTS_SCHEMA}."{t}"')
            counts[t] = int(con.execute(f'select count(*) from main."{t}"').fetchall()[0][0])
        con.execute("detach wh")
        con.execute("checkpoint")
    return counts


def query(db_path: Path, sql: str) -> tuple[list[str], list[tuple]]:
    """Run a read-only query; returns column names and rows."""
    if not Path(db_path).exists():
        raise FileNotFoundError(f"{db_path} does not exist yet: run `trustlake run` (or `make run`) first")
    with duckdb.connect(str(db_path), read_only=True) as con:
        cur = con.execute(sql)
        columns = [d[0] for d in cur.description] if cur.description else []
        rows = cur.fetchall()
    return columns, rows


def analyst_connection(db_path: Path) -> duckdb.DuckDBPyConnection:
    """`db_path` opened read-only with file access off and the configuration locked."""
    return duckdb.connect(str(db_path), read_only=True, config=ANALYST_CONFIG)


def analyst_query(db_path: Path, sql: str) -> tuple[list[str], list[tuple]]:
    """One read-only statement from an analyst on `db_path`; returns column names and rows.

    Three locks, each enough for the attacks it names (checked by tests/test_sql_readonly.py):
    the file is opened read-only (no CREATE/INSERT/DROP on it); `enable_external_access=false`
    (no ATTACH of another database, no COPY ... TO / EXPORT, no read_text/read_csv/glob of other
    files, no INSTALL/LOAD of extensions); `lock_configuration=true` (no SET turns either back on).
    One statement per call, of a reading kind, so nothing rides along after a harmless SELECT.
    """
    if not Path(db_path).exists():
        raise FileNotFoundError(f"{db_path} does not exist yet: run `trustlake run` (or `make run`) first")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise AnalystQueryError(_one_line(exc)) from exc
    if not statements:
        raise AnalystQueryError("no SQL statement given")
    if len(statements) > 1:
        raise AnalystQueryError(f"one statement per call, got {len(statements)}; run them one at a time")
    kind = statements[0].type.name
    if kind not in ANALYST_STATEMENTS:
        raise AnalystQueryError(
            f"{kind} statements are refused: the marts are read-only (SELECT, EXPLAIN, PRAGMA and CALL are allowed)"
        )
    try:
        with analyst_connection(db_path) as con:
            cur = con.execute(statements[0])
            columns = [d[0] for d in cur.description] if cur.description else []
            rows = cur.fetchall()
    except duckdb.PermissionException as exc:
        raise AnalystQueryError(
            f"only the marts in {Path(db_path).name} can be read; other files, databases "
            f"and extensions are off ({_one_line(exc)})"
        ) from exc
    except duckdb.Error as exc:
        raise AnalystQueryError(_one_line(exc)) from exc
    return columns, rows


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def read_frame(db_path: Path, sql: str):
    """A read-only query as a Polars frame."""
    import polars as pl

    if not Path(db_path).exists():
        raise FileNotFoundError(f"{db_path} does not exist yet: build the warehouse first")
    with duckdb.connect(str(db_path), read_only=True) as con:
        return pl.from_arrow(con.sql(sql).to_arrow_table())
