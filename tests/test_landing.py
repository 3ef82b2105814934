"""Raw data rules and quarantine: every simulated row passes its table's contract, each rule
catches its defect row by row, a bad file leaves the lake with a reason instead of blocking
later days, and nothing leaves the lake without a log line."""

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from ml.lake import Lake
from ml.raw.contracts import CONTRACTS, FUTURE_TOLERANCE, RAW_TABLES
from ml.raw.lake_check import check_raw_lake
from ml.raw.validation import validate, validate_frame
from ml.simulator import partition_date, simulate_days
from ml.world import SimConfig

START = datetime(2026, 10, 1).date()
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def raw(pool):
    config = SimConfig(seed=11, users=300, content_per_day=200)
    return config, simulate_days(config, pool, START, START + timedelta(days=3))


def land(lake: Lake, raw) -> None:
    config, tables = raw
    for table in RAW_TABLES:
        part = partition_date(table, tables[table], config)
        for i in range(4):
            day = START + timedelta(days=i)
            lake.write_partition(table, day, tables[table].filter(part == day))


def test_every_simulated_row_passes_its_tables_contract(raw):
    _, tables = raw
    for table in RAW_TABLES:
        frame = tables[table]
        good, problems = validate_frame(table, frame, now=NOW)
        assert problems == [], (table, [p.describe() for p in problems])
        assert good.equals(frame)


def rows_of(problems, rule):
    return [p.rows for p in problems if p.rule == rule]


def test_each_rule_flags_exactly_the_rows_that_break_it(raw):
    _, tables = raw
    decisions = tables["decisions"].head(20)
    bad = pl.concat([decisions, decisions.slice(3, 1)]).with_columns(  # row 21 copies row 4 exactly
        action=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("ban")).otherwise("action"),
        decision_id=pl.when(pl.int_range(pl.len()) == 1).then(None).otherwise("decision_id"),
        decided_at=pl.when(pl.int_range(pl.len()) == 2)
        .then(pl.lit(NOW.replace(tzinfo=None) + timedelta(days=5 * 365)))
        .otherwise("decided_at"),
    )
    conflicting = decisions.slice(5, 1).with_columns(pl.lit("restrict").alias("action"), pl.lit("spam").alias("policy"))
    bad = pl.concat([bad, conflicting])  # row 22 shares row 6's key with different values
    good, problems = validate_frame("decisions", bad, now=NOW)
    assert rows_of(problems, "unknown_value") == [(1,)]
    assert rows_of(problems, "null_value") == [(2,)]
    assert rows_of(problems, "future_time") == [(3,)]
    assert rows_of(problems, "duplicate_row") == [(21,)]
    assert rows_of(problems, "conflicting_key") == [(6, 22)]
    # The copy is dropped, its original kept: nothing that was right is lost.
    assert good.height == 20 - 4
    assert good["decision_id"].n_unique() == good.height

    content = (
        tables["content"]
        .head(5)
        .with_columns(text=pl.when(pl.int_range(pl.len()) == 4).then(pl.lit("x" * 10_001)).otherwise("text"))
    )
    good, problems = validate_frame("content", content, now=NOW)
    assert rows_of(problems, "text_too_long") == [(5,)] and good.height == 4


def test_whole_file_problems_leave_no_good_rows(tmp_path, raw):
    _, tables = raw
    truncated = tmp_path / "part-0.parquet"
    tables["content"].write_parquet(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    result = validate("content", truncated, now=NOW)
    assert result.good is None and [p.rule for p in result.problems] == ["unreadable"]

    wrong_table = tmp_path / "reports.parquet"
    tables["reports"].write_parquet(wrong_table)
    result = validate("content", wrong_table, now=NOW)
    assert result.good is None
    assert [p.rule for p in result.problems] == ["missing_columns", "unexpected_columns"]

    latin1 = tmp_path / "content.csv"
    latin1.write_bytes(b"content_id,text\n1,caf\xe9\n")
    assert [p.rule for p in validate("content", latin1, now=NOW).problems] == ["unreadable"]


def test_a_csv_is_typed_by_the_contract_and_bad_values_are_named_by_row(tmp_path, raw):
    _, tables = raw
    reports = tables["reports"].head(3).with_columns(pl.col("reported_at").dt.strftime("%Y-%m-%dT%H:%M:%S"))
    path = tmp_path / "reports.csv"
    reports.with_columns(pl.col("report_id").cast(pl.String)).with_columns(
        report_id=pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("12x")).otherwise("report_id")
    ).write_csv(path)
    result = validate("reports", path, now=NOW)
    assert rows_of(result.problems, "bad_value") == [(2,)]
    assert result.good.schema == pl.Schema(CONTRACTS["reports"].columns)
    assert result.good["report_id"].to_list() == tables["reports"].head(3)["report_id"].to_list()[::2]


def test_a_bad_file_in_an_old_partition_is_quarantined_with_a_reason_and_its_good_rows_stay(tmp_path, raw):
    lake = Lake(tmp_path)
    land(lake, raw)
    assert check_raw_lake(lake, now=NOW).quarantined == ()
    old = lake.partition_dir("content", START + timedelta(days=1))
    original = pl.read_parquet(old / "part-0.parquet")
    pl.concat([original, original.head(2)]).write_parquet(old / "part-0.parquet")  # copies from a double write
    garbage = lake.partition_dir("reports", START + timedelta(days=2)) / "part-1.parquet"
    garbage.write_bytes(b"PAR1 not really")

    check = check_raw_lake(lake, now=NOW)
    assert check.unchanged == 6 * 4 - 1 and check.validated == 2
    by_table = {q.table: q for q in check.quarantined}
    assert set(by_table) == {"content", "reports"}
    # The copies left the lake; every original row is still there.
    assert pl.read_parquet(old / "part-0.parquet").equals(original)
    assert by_table["content"].rows_kept == original.height
    assert not garbage.exists() and by_table["reports"].rows_kept == 0
    for q in check.quarantined:
        assert q.quarantined.exists() and q.quarantined.parent == lake.quarantine_dir / q.table
        reason = Path(str(q.quarantined) + ".reason.txt").read_text()
        assert str(q.source) in reason and "what to do:" in reason
    content_reason = Path(str(by_table["content"].quarantined) + ".reason.txt").read_text()
    assert "duplicate_row" in content_reason and re.search(r"rows \d+, \d+", content_reason)
    assert "unreadable" in Path(str(by_table["reports"].quarantined) + ".reason.txt").read_text()
    # Quarantined rows are only in quarantine: the original file is kept there byte for byte.
    assert pl.read_parquet(by_table["content"].quarantined).height == original.height + 2

    again = check_raw_lake(lake, now=NOW)
    assert again.validated == 0 and again.quarantined == ()


def test_a_foreign_file_in_a_relanded_day_is_quarantined_with_a_log_line_not_deleted(tmp_path, raw, caplog):
    lake = Lake(tmp_path)
    _, tables = raw
    day = START + timedelta(days=2)
    lake.write_partition("appeals", day, tables["appeals"].head(3))
    foreign = lake.partition_dir("appeals", day) / "backfill-2026.parquet"
    tables["appeals"].tail(2).write_parquet(foreign)
    with caplog.at_level(logging.WARNING, logger="ml.lake"):
        lake.write_partition("appeals", day, tables["appeals"].head(3))
    assert [p.name for p in lake.partition_dir("appeals", day).iterdir()] == ["part-0.parquet"]
    [moved] = [p for p in (lake.quarantine_dir / "appeals").iterdir() if p.suffix == ".parquet"]
    assert pl.read_parquet(moved).equals(tables["appeals"].tail(2))
    assert "foreign file" in Path(str(moved) + ".reason.txt").read_text()
    assert any(str(foreign) in r.getMessage() and str(moved) in r.getMessage() for r in caplog.records)


def test_a_future_row_is_caught_against_the_clock_not_the_partition(raw):
    _, tables = raw
    content = tables["content"].head(3)
    ahead = NOW.replace(tzinfo=None) + FUTURE_TOLERANCE - timedelta(minutes=1)
    within = content.with_columns(created_at=pl.lit(ahead))
    assert validate_frame("content", within, now=NOW)[1] == []
    beyond = content.with_columns(created_at=pl.lit(ahead + timedelta(minutes=2)))
    assert rows_of(validate_frame("content", beyond, now=NOW)[1], "future_time") == [(1, 2, 3)]


def test_the_row_rules_of_dbts_staging_tests_are_checked_before_dbt_reads_the_file(raw):
    _, tables = raw
    users = (
        tables["users"]
        .head(3)
        .with_columns(follower_count=pl.when(pl.int_range(pl.len()) == 1).then(-5).otherwise("follower_count"))
    )
    assert rows_of(validate_frame("users", users, now=NOW)[1], "below_minimum") == [(2,)]
    appeals = (
        tables["appeals"]
        .head(3)
        .with_columns(
            resolved_at=pl.when(pl.int_range(pl.len()) == 0)
            .then(pl.col("appealed_at") - timedelta(hours=1))
            .otherwise("resolved_at")
        )
    )
    assert rows_of(validate_frame("appeals", appeals, now=NOW)[1], "time_order") == [(1,)]
    content = (
        tables["content"]
        .head(3)
        .with_columns(text_hash=pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("not-a-hash")).otherwise("text_hash"))
    )
    assert rows_of(validate_frame("content", content, now=NOW)[1], "text_hash_mismatch") == [(3,)]
    decisions = tables["decisions"].head(3)
    second = decisions.slice(0, 1).with_columns(pl.col("decision_id") + 1, pl.lit("restrict").alias("action"))
    good, problems = validate_frame("decisions", pl.concat([decisions, second]), now=NOW)
    assert rows_of(problems, "duplicate_value") == [(1, 4)] and good.height == 2


def test_a_csv_timestamp_no_format_fits_is_a_bad_value_of_its_row_not_an_error(tmp_path, raw):
    _, tables = raw
    reports = tables["reports"].head(3).with_columns(pl.col("reported_at").dt.strftime("%Y-%m-%d %H:%M:%S"))
    reports = reports.with_columns(
        reported_at=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("yesterday")).otherwise("reported_at")
    )
    path = tmp_path / "reports.csv"
    reports.write_csv(path)
    result = validate("reports", path, now=NOW)
    assert rows_of(result.problems, "bad_value") == [(1,)] and result.good.height == 2
