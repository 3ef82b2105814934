"""`trustlake sql` cannot write: not the marts, not the main warehouse, not the lake, not any file.

A small home is built here (a marts.duckdb, the main trustlake.duckdb and one raw partition), so
no pipeline run is needed. Every refused statement must give one line on stderr, exit code 2,
and leave every file of the home byte-for-byte as it was.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import date

import duckdb
import polars as pl
import pytest

from ml.lake import Lake
from ml.warehouse import analyst_connection
from orchestration.cli import main

ROWS = [
    ("hate_speech", date(2026, 10, 1), 3, 0.25, 'says "no", twice'),
    ("spam", date(2026, 10, 2), 7, None, "line\nbreak"),
    ("scam", date(2026, 10, 3), 0, float("nan"), ""),
]


@pytest.fixture
def home(tmp_path, monkeypatch):
    lake = Lake(tmp_path / "home")
    lake.marts_db.parent.mkdir(parents=True)
    with duckdb.connect(str(lake.marts_db)) as con:
        con.execute(
            "create table mart_policy (policy varchar, activity_date date, n integer, rate double, note varchar)"
        )
        con.executemany("insert into mart_policy values (?, ?, ?, ?, ?)", ROWS)
    with duckdb.connect(str(lake.warehouse_db)) as con:
        con.execute("create schema marts")
        con.execute("create table marts.fct_content as select range as content_id from range(10)")
    lake.write_partition("content", date(2026, 10, 1), pl.DataFrame({"content_id": [1, 2, 3]}))
    monkeypatch.setenv("TRUSTLAKE_HOME", str(lake.home))
    return lake


def snapshot(lake: Lake) -> dict[str, str]:
    """Every file of the home and its content hash."""
    return {
        str(p.relative_to(lake.home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(lake.home.rglob("*"))
        if p.is_file()
    }


def sql(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["sql", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def refusals(lake: Lake, tmp_path) -> dict[str, tuple[str, str]]:
    raw_part = next(lake.raw.rglob("*.parquet"))
    return {
        "attach_main_warehouse": (f"ATTACH '{lake.warehouse_db}' AS wh", "ATTACH statements are refused"),
        "attach_main_warehouse_then_drop": (
            f"ATTACH '{lake.warehouse_db}' AS wh; DROP TABLE wh.marts.fct_content",
            "one statement per call",
        ),
        "copy_over_a_raw_partition": (
            f"COPY (SELECT 1 AS x) TO '{raw_part}' (FORMAT parquet)",
            "COPY statements are refused",
        ),
        "copy_over_the_marts_file": (f"COPY mart_policy TO '{lake.marts_db}'", "COPY statements are refused"),
        "copy_to_a_new_file": (f"COPY mart_policy TO '{tmp_path / 'leak.csv'}'", "COPY statements are refused"),
        "export_database": (f"EXPORT DATABASE '{tmp_path / 'dump'}'", "EXPORT statements are refused"),
        "read_text_of_etc_passwd": ("SELECT * FROM read_text('/etc/passwd')", "other files, databases"),
        "read_csv_of_another_file": (f"SELECT * FROM read_parquet('{raw_part}')", "other files, databases"),
        "glob_of_the_filesystem": ("SELECT * FROM glob('/etc/*')", "other files, databases"),
        "set_external_access_back_on": ("SET enable_external_access = true", "SET statements are refused"),
        "two_statements": ("SELECT 1; SELECT 2", "one statement per call"),
        "create_table": ("CREATE TABLE x AS SELECT 1", "CREATE statements are refused"),
        "insert": ("INSERT INTO mart_policy VALUES ('x', NULL, 1, 1.0, 'x')", "INSERT statements are refused"),
        "install_extension": ("INSTALL httpfs", "LOAD statements are refused"),
        "no_statement": ("-- nothing", "no SQL statement"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "attach_main_warehouse",
        "attach_main_warehouse_then_drop",
        "copy_over_a_raw_partition",
        "copy_over_the_marts_file",
        "copy_to_a_new_file",
        "export_database",
        "read_text_of_etc_passwd",
        "read_csv_of_another_file",
        "glob_of_the_filesystem",
        "set_external_access_back_on",
        "two_statements",
        "create_table",
        "insert",
        "install_extension",
        "no_statement",
    ],
)
def test_sql_refuses_statements_that_write_or_reach_outside_the_marts(home, tmp_path, capsys, case):
    statement, message = refusals(home, tmp_path)[case]
    before = snapshot(home)
    code, out, err = sql(capsys, statement)
    assert code == 2
    assert out == ""
    assert err.startswith("trustlake sql: ") and err.count("\n") == 1 and message in err, err
    assert "passwd" not in out and "root:" not in err
    assert snapshot(home) == before
    assert not (tmp_path / "leak.csv").exists() and not (tmp_path / "dump").exists()
    with duckdb.connect(str(home.warehouse_db), read_only=True) as con:
        assert con.execute("select count(*) from marts.fct_content").fetchone()[0] == 10


@pytest.mark.parametrize(
    "statement",
    [
        "ATTACH '{wh}' AS wh",
        "COPY mart_policy TO '{out}'",
        "EXPORT DATABASE '{dump}'",
        "SELECT * FROM read_text('/etc/passwd')",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "RESET enable_external_access",
        "SET lock_configuration = false",
        "CREATE TABLE x AS SELECT 1",
    ],
)
def test_analyst_connection_blocks_writes_and_file_access_by_itself(home, tmp_path, statement):
    """The statement-kind check is a courtesy; these DuckDB locks hold even if it let one through."""
    statement = statement.format(wh=home.warehouse_db, out=tmp_path / "leak.csv", dump=tmp_path / "dump")
    before = snapshot(home)
    with analyst_connection(home.marts_db) as con:
        with pytest.raises(duckdb.Error):
            con.execute(statement)
        assert con.execute("select current_setting('enable_external_access')").fetchone()[0] is False
    assert snapshot(home) == before
    assert not (tmp_path / "leak.csv").exists()


def test_sql_csv_and_json_output_parse_back_to_the_rows(home, capsys):
    query = "SELECT policy, activity_date, n, rate, note FROM mart_policy ORDER BY activity_date"
    code, out, err = sql(capsys, query, "--format", "csv")
    assert code == 0 and err == ""
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert [r["policy"] for r in parsed] == ["hate_speech", "spam", "scam"]
    assert parsed[0]["note"] == 'says "no", twice' and parsed[1]["note"] == "line\nbreak"
    assert parsed[0]["activity_date"] == "2026-10-01" and float(parsed[0]["rate"]) == 0.25
    assert parsed[1]["rate"] == ""  # NULL is an empty field

    code, out, err = sql(capsys, query, "--format", "json")
    assert code == 0 and err == ""
    rows = json.loads(out)
    assert rows[0] == {
        "policy": "hate_speech",
        "activity_date": "2026-10-01",
        "n": 3,
        "rate": 0.25,
        "note": 'says "no", twice',
    }
    assert rows[1]["rate"] is None and rows[2]["rate"] is None  # NULL and NaN: valid JSON either way


def test_sql_limit_note_never_lands_inside_machine_output(home, capsys):
    code, out, err = sql(capsys, "SELECT * FROM range(5)", "--format", "json", "--limit", "2")
    assert code == 0 and len(json.loads(out)) == 2 and "3 more rows" in err
    code, out, err = sql(capsys, "SELECT * FROM range(80)", "--format", "csv")
    assert code == 0 and len(out.splitlines()) == 81 and err == ""  # csv: every row unless --limit
    code, out, _ = sql(capsys, "SELECT * FROM range(80)")
    assert code == 0 and "(30 more rows; use --limit)" in out  # table: 50 rows on screen


def test_sql_still_answers_reading_statements(home, capsys):
    """The guard against over-blocking: the allow-list and the locks leave every reading form working."""
    for statement in (
        "SELECT count(*) AS n FROM mart_policy",
        "FROM mart_policy",
        "DESCRIBE mart_policy",
        "PRAGMA table_info('mart_policy')",
        "EXPLAIN SELECT * FROM mart_policy",
        "WITH t AS (SELECT 1 AS a) SELECT * FROM t",
    ):
        code, out, err = sql(capsys, statement)
        assert code == 0 and err == "", (statement, err)
        assert out.strip()
