"""`trustlake sql`: one read-only query on the published marts, as a table, CSV or JSON."""

from __future__ import annotations

import os
import sys

import click

from orchestration.cli.group import cli, with_settings
from orchestration.settings import Settings


class StatementCommand(click.Command):
    """Takes an argument that starts with "-" and holds a space (`trustlake sql "-- why\nselect 1"`) as
    the statement, not as an unknown option, as argparse did: no option name holds a space."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" not in args:
            statements = [a for a in args if a.startswith("-") and any(c.isspace() for c in a)]
            if statements:
                args = [a for a in args if a not in statements] + ["--", *statements]
        return super().parse_args(ctx, args)


@cli.command(
    "sql",
    cls=StatementCommand,
    help="one read-only query on the published marts (marts.duckdb): QUERY is one SELECT "
    "(or EXPLAIN, PRAGMA, CALL) statement",
    short_help="one read-only query on the published marts (marts.duckdb)",
)
@click.argument("query")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    help="table for people (default), csv or json for programs",
)
@click.option("--limit", type=int, default=None, help="rows to print (default: 50 for table, all for csv and json)")
@with_settings
def cmd_sql(settings: Settings, query: str, fmt: str, limit: int | None) -> int:
    """One read-only statement on marts.duckdb; errors are one line on stderr and exit code 2."""
    from ml.lake import Lake
    from ml.warehouse import AnalystQueryError, analyst_query

    try:
        columns, rows = analyst_query(Lake(settings.home).marts_db, query)
    except (FileNotFoundError, AnalystQueryError) as exc:
        print(f"trustlake sql: {exc}", file=sys.stderr)
        return 2
    # A table is for reading on screen, so it stops at 50 rows unless told; csv and json are for
    # other programs, so they get every row unless --limit says otherwise.
    limit = limit if limit is not None else (50 if fmt == "table" else None)
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if fmt == "json" and repeated:
        print(
            f"trustlake sql: column name(s) {', '.join(repeated)} repeat; a JSON object keeps only one: "
            "give each column its own alias",
            file=sys.stderr,
        )
        return 2
    shown = rows if limit is None else rows[:limit]
    try:
        if fmt == "csv":
            format_csv(columns, shown, sys.stdout)
        elif fmt == "json":
            print(format_json(columns, shown))
        else:
            print(format_table(columns, shown))
        sys.stdout.flush()
    except BrokenPipeError:  # `trustlake sql ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if len(rows) > len(shown):
        # stderr for machine formats, so a note never ends up inside the CSV or JSON
        print(f"({len(rows) - len(shown)} more rows; use --limit)", file=sys.stdout if fmt == "table" else sys.stderr)
    return 0


def format_table(columns: list[str], rows: list[tuple]) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    body = [[cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line, rule] + ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in body])


def format_csv(columns: list[str], rows: list[tuple], out) -> None:
    """RFC 4180 CSV with a header; NULL is an empty field, values at full precision."""
    import csv

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(["" if v is None else v for v in r] for r in rows)


def format_json(columns: list[str], rows: list[tuple]) -> str:
    """A JSON array with one object per row; dates as ISO strings, NaN and infinity as null."""
    import json
    import math
    from datetime import date, datetime
    from datetime import time as clock
    from decimal import Decimal

    def value(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, (datetime, date, clock)):
            return v.isoformat()
        if isinstance(v, Decimal):
            return float(v)
        if isinstance(v, (list, tuple)):
            return [value(x) for x in v]
        if isinstance(v, dict):
            return {str(k): value(x) for k, x in v.items()}
        if isinstance(v, bytes):
            return v.hex()
        return v

    return json.dumps([{c: value(v) for c, v in zip(columns, r)} for r in rows], default=str, allow_nan=False)
