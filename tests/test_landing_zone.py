"""The landing zone: a dropped file is checked against its table's contract and against the lake,
its good rows land as their own partition files (kept when the day is simulated again), a bad
file goes to quarantine with a reason, and landing_sensor turns each drop into one run request
or one quarantine entry. Fast: no dbt here (tests/test_landing_drill.py runs the real ingest)."""

import os
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
from dagster import DagsterRun

from ml.lake import LANDED_PREFIX, Lake
from ml.raw.contracts import CONTRACTS, RAW_TABLES
from ml.raw.lake_check import check_raw_lake
from ml.raw.landing import INGESTING, Claim, claim_file, claims, ingest_claim
from ml.raw.landing_check import check_landing
from ml.simulator import partition_date, simulate_days
from ml.world import SimConfig
from orchestration.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from orchestration.settings import Settings  # noqa: E402
from tests.helpers import external_content, external_users

# The test process's daily partitions (tests/conftest.py: an unpinned home, today - TRUSTLAKE_DAYS
# to yesterday): the lake here starts on their first day, so the sensor's window check passes.
START = Settings.from_env().start_date
WINDOW = (START, START + timedelta(days=29))
LAKE_DAYS = 4  # the lake holds days 0..3; the simulator's days 4..5 are "external" drops


@pytest.fixture(scope="module")
def simulated(pool):
    config = SimConfig(seed=11, start_date=START, users=300, content_per_day=200)
    return config, simulate_days(config, pool, START, START + timedelta(days=LAKE_DAYS + 1))


def days_of(simulated, table: str, first: int, last: int) -> pl.DataFrame:
    config, tables = simulated
    part = partition_date(table, tables[table], config)
    return tables[table].filter((part >= START + timedelta(days=first)) & (part <= START + timedelta(days=last)))


@pytest.fixture
def lake(tmp_path, simulated) -> Lake:
    lake = Lake(tmp_path)
    config, tables = simulated
    for table in RAW_TABLES:
        part = partition_date(table, tables[table], config)
        for i in range(LAKE_DAYS):
            day = START + timedelta(days=i)
            lake.write_partition(table, day, tables[table].filter(part == day))
    return lake


def drop(lake: Lake, table: str, frame: pl.DataFrame, name: str, settled: bool = True) -> Path:
    """Write a file into the landing folder, as a partner's upload would; `settled`: untouched for a minute."""
    path = lake.landing / table / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if name.endswith(".csv"):
        frame.write_csv(path)
    else:
        frame.write_parquet(path)
    if settled:
        past = time.time() - 60
        os.utime(path, (past, past))
    return path


def rows_of(check, rule):
    return [p.rows for p in check.validation.problems if p.rule == rule]


def test_the_simulators_rows_pass_every_lake_rule_when_landed_in_table_order(lake, simulated):
    """No false alarms: the simulator's next two days, landed table by table, land whole."""
    for table in RAW_TABLES:
        frame = days_of(simulated, table, LAKE_DAYS, LAKE_DAYS + 1)
        if frame.is_empty():
            assert table in ("users", "appeals"), table  # few accounts sign up after day one
            continue
        file = drop(lake, table, frame, f"{table}.parquet")
        check = check_landing(lake, table, file, WINDOW)
        assert check.validation.problems == (), (table, [p.describe() for p in check.validation.problems])
        landed = ingest_claim(lake, claim_file(lake, table, file), WINDOW, WINDOW)
        assert landed.rows == frame.height and landed.quarantined is None and landed.ingested.exists()
    _, tables = simulated
    for table in RAW_TABLES:
        assert (
            lake.read_table(table)
            .drop("date")
            .sort(CONTRACTS[table].key)
            .equals(tables[table].sort(CONTRACTS[table].key))
        ), table


def test_each_lake_rule_refuses_exactly_the_rows_that_break_it(lake, simulated):
    content = lake.read_table("content").drop("date")
    decisions = lake.read_table("decisions").drop("date")
    reports = lake.read_table("reports").drop("date")
    users = lake.read_table("users")["user_id"].to_list()
    day = START + timedelta(days=2)
    fresh = external_content(users[:4], day, first_id=8_100_000_000_000_000_000)
    drifted = content.slice(0, 1).with_columns(text=pl.lit("edited"), text_hash=pl.lit("0f7e4d0c8b3a2e1f"))
    drifted = drifted.with_columns(text_hash=fresh.slice(0, 1)["text_hash"], text=fresh.slice(0, 1)["text"])
    frame = pl.concat(
        [
            fresh.slice(0, 1),  # 1 good
            content.slice(5, 1),  # 2 a copy of a lake row
            drifted,  # 3 a lake key, other values
            fresh.slice(1, 1).with_columns(author_id=pl.lit(7_000_000_000_000_000_000)),  # 4 unknown author
            fresh.slice(2, 1).with_columns(
                created_at=pl.lit(datetime.combine(START - timedelta(days=2), datetime.min.time()).replace(hour=12))
            ),  # 5 before the lake
            fresh.slice(3, 1),  # 6 good
        ]
    )
    check = check_landing(lake, "content", drop(lake, "content", frame, "mixed.parquet"), WINDOW)
    assert rows_of(check, "already_landed") == [(2,)]
    assert rows_of(check, "duplicate_key") == [(3,)]
    assert rows_of(check, "unknown_reference") == [(4,)]
    assert rows_of(check, "outside_window") == [(5,)]
    assert check.validation.good["content_id"].to_list() == [fresh[0, "content_id"], fresh[3, "content_id"]]
    assert check.days == (day,)

    decided = decisions.slice(0, 1)
    target = content.filter(
        ~pl.col("content_id").is_in(decisions["content_id"].implode())
        & ~pl.col("content_id").is_in(reports["content_id"].implode())
        & (pl.col("created_at") > datetime.combine(START + timedelta(days=1), datetime.min.time()))
    ).slice(0, 2)
    reported = (
        reports.join(content.select("content_id", "created_at"), on="content_id")
        .filter(
            ~pl.col("content_id").is_in(decisions["content_id"].implode())
            & (pl.col("reported_at") > pl.col("created_at") + timedelta(minutes=1))
        )
        .sort("reported_at")
        .slice(0, 1)
    )
    new = decided.with_columns(pl.col("decision_id") + 1)  # template for new decisions
    frame = pl.concat(
        [
            new.with_columns(decision_id=pl.lit(8_200_000_000_000_000_001), content_id=decided["content_id"]),  # 1
            new.with_columns(
                decision_id=pl.lit(8_200_000_000_000_000_002),
                content_id=target[0, "content_id"],
                decided_at=target[0, "created_at"] - timedelta(hours=1),
            ),  # 2
            new.with_columns(
                decision_id=pl.lit(8_200_000_000_000_000_003),
                content_id=reported[0, "content_id"],
                decided_at=reported[0, "reported_at"] - timedelta(seconds=1),
            ),  # 3
            new.with_columns(
                decision_id=pl.lit(8_200_000_000_000_000_004),
                content_id=target[1, "content_id"],
                decided_at=target[1, "created_at"] + timedelta(hours=1),
            ),  # 4 good
        ]
    )
    check = check_landing(lake, "decisions", drop(lake, "decisions", frame, "decisions.csv"), WINDOW)
    assert rows_of(check, "duplicate_value") == [(1,)]  # that content already has its decision
    assert rows_of(check, "before_reference") == [(2,)]
    assert rows_of(check, "decided_before_report") == [(3,)]
    assert check.validation.good["decision_id"].to_list() == [8_200_000_000_000_000_004]

    no_action = decisions.filter(pl.col("action") == "no_action").slice(0, 1)
    appeal = (
        lake.read_table("appeals")
        .drop("date")
        .slice(0, 1)
        .with_columns(
            appeal_id=pl.lit(8_300_000_000_000_000_001),
            decision_id=no_action["decision_id"],
            content_id=no_action["content_id"],
            appealed_at=no_action["decided_at"] + timedelta(hours=1),
            resolved_at=no_action["decided_at"] + timedelta(hours=5),
        )
    )
    check = check_landing(lake, "appeals", drop(lake, "appeals", appeal, "appeals.parquet"), WINDOW)
    assert rows_of(check, "reference_not_allowed") == [(1,)]

    unreported = decisions.filter(~pl.col("content_id").is_in(reports["content_id"].implode())).slice(0, 1)
    late = reports.slice(0, 1).with_columns(
        report_id=pl.lit(8_400_000_000_000_000_001),
        content_id=unreported["content_id"],
        reported_at=unreported["decided_at"] + timedelta(minutes=5),
    )
    check = check_landing(lake, "reports", drop(lake, "reports", late, "late.parquet"), WINDOW)
    assert rows_of(check, "report_after_decision") == [(1,)]


def test_a_split_file_lands_its_good_rows_and_quarantines_the_original_saying_where_they_went(lake):
    users = lake.read_table("users")["user_id"].to_list()
    day = START + timedelta(days=1)
    frame = external_content(users[:6], day, first_id=8_500_000_000_000_000_000).with_columns(
        content_id=pl.when(pl.int_range(pl.len()) == 2).then(None).otherwise("content_id")
    )
    file = drop(lake, "content", frame, "partner.parquet")
    original = file.read_bytes()
    landed = ingest_claim(lake, claim_file(lake, "content", file), WINDOW, WINDOW)

    part = lake.partition_dir("content", day)
    [written] = landed.written
    assert written.parent == part and written.name == f"{LANDED_PREFIX}{landed.claim.fingerprint}.parquet"
    assert pl.read_parquet(written)["content_id"].to_list() == frame["content_id"].drop_nulls().to_list()
    assert landed.quarantined.read_bytes() == original  # every row, so the row numbers in the reason match
    reason = Path(f"{landed.quarantined}.reason.txt").read_text()
    assert "null_value (content_id)" in reason and "row 3" in reason
    assert "the 5 good rows were landed" in reason and str(written) in reason
    assert claims(lake) == [] and not file.exists()


def test_landing_a_claim_again_lands_nothing_twice(lake):
    users = lake.read_table("users")["user_id"].to_list()
    day = START + timedelta(days=3)
    frame = external_content(users[:5], day, first_id=8_600_000_000_000_000_000)
    file = drop(lake, "content", frame, "again.csv")
    claim = claim_file(lake, "content", file)
    saved = claim.path.read_bytes()
    first = ingest_claim(lake, claim, WINDOW, WINDOW)
    before = lake.read_table("content").height

    # A re-executed run: the claim was handled, so it reports what landed and writes nothing.
    again = ingest_claim(lake, claim, WINDOW, WINDOW)
    assert again.validation is None and again.rows == first.rows == 5 and again.written == first.written
    # A run killed after writing its rows but before moving the file: the retry lands the same rows.
    claim.path.write_bytes(saved)
    retry = ingest_claim(lake, claim, WINDOW, WINDOW)
    assert retry.validation.problems == () and retry.rows == 5
    assert lake.read_table("content").height == before


def test_landed_rows_survive_the_day_being_simulated_again_and_the_raw_lake_check(lake, simulated):
    users = lake.read_table("users")["user_id"].to_list()
    day = START + timedelta(days=1)
    file = drop(lake, "content", external_content(users[:3], day, first_id=8_700_000_000_000_000_000), "keep.csv")
    [written] = ingest_claim(lake, claim_file(lake, "content", file), WINDOW, WINDOW).written
    config, tables = simulated
    lake.write_partition(
        "content", day, tables["content"].filter(partition_date("content", tables["content"], config) == day)
    )
    assert sorted(p.name for p in lake.partition_dir("content", day).iterdir()) == sorted(
        ["part-0.parquet", written.name]
    )
    assert check_raw_lake(lake).quarantined == ()
    assert pl.read_parquet(written).height == 3


# ---------------------------------------------------------------------------------------
# landing_sensor, evaluated with Dagster's test utilities against a real instance.
# ---------------------------------------------------------------------------------------
@pytest.fixture
def evaluate(lake):
    from assets.resources import LakehouseResource
    from orchestration.definitions import defs
    from orchestration.sensors.landing import landing_sensor

    settings = Settings.from_env({"TRUSTLAKE_HOME": str(lake.home)})
    with dg.instance_for_test() as instance:

        def tick() -> dg.SensorResult:
            with dg.build_sensor_context(
                instance=instance,
                definitions=defs(),
                resources={
                    "lakehouse": LakehouseResource.for_platform(settings.home, settings.corpora, settings.simulator)
                },
            ) as context:
                return landing_sensor(context)

        tick.instance = instance
        yield tick


def quarantined(lake: Lake, table: str) -> dict[str, str]:
    folder = lake.quarantine_dir / table
    return {
        p.name: Path(f"{p}.reason.txt").read_text()
        for p in sorted(folder.glob("*"))
        if folder.is_dir() and not p.name.endswith(".reason.txt")
    }


def test_a_good_drop_becomes_one_run_request_for_its_table_and_days(lake, evaluate):
    users = lake.read_table("users")["user_id"].to_list()
    frame = pl.concat(
        [
            external_content(users[:3], START + timedelta(days=1), first_id=8_800_000_000_000_000_000),
            external_content(users[3:5], START + timedelta(days=2), first_id=8_800_000_000_000_000_010),
        ]
    )
    file = drop(lake, "content", frame, "partner-export.csv")
    result = evaluate()
    [request] = result.run_requests
    [claim] = claims(lake)
    assert not file.exists() and claim.original_name == "partner-export.csv"
    assert request.run_key == claim.name and request.job_name == "land_job"
    assert request.run_config == {"ops": {"raw_platform_tables": {"config": {"landed_file": claim.name}}}}
    assert request.tags["trustlake/landed_file"] == "partner-export.csv"
    assert request.tags["trustlake/landing_table"] == "content"
    assert (request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]) == (
        (START + timedelta(days=1)).isoformat(),
        (START + timedelta(days=2)).isoformat(),
    )
    keys = {k.to_user_string() for k in request.asset_selection}
    assert {"content", "stg_platform__content", "fct_content", "published_marts"} <= keys
    assert not keys & {"users", "reports", "stg_platform__users"}  # only what depends on the content
    assert quarantined(lake, "content") == {}


def test_a_bad_drop_is_quarantined_with_its_reason_and_requests_no_run(lake, evaluate):
    file = drop(lake, "reports", pl.DataFrame({"id": [1, 2]}), "wrong.parquet")
    result = evaluate()
    assert not result.run_requests and not file.exists() and claims(lake) == []
    [(name, reason)] = quarantined(lake, "reports").items()
    assert name.endswith("-wrong.parquet")
    assert "missing_columns" in reason and "report_id" in reason and "what to do:" in reason
    [event] = result.asset_events
    assert event.asset_key == dg.AssetKey("reports") and event.metadata["landing"].value == "quarantined"


def test_one_bad_file_does_not_stop_the_good_one_beside_it(lake, evaluate):
    users = lake.read_table("users")["user_id"].to_list()
    truncated = lake.landing / "content" / "broken.parquet"
    good = drop(lake, "content", external_content(users[:2], START, first_id=8_900_000_000_000_000_000), "a.parquet")
    truncated.write_bytes(good.read_bytes()[:100])
    os.utime(truncated, (time.time() - 60,) * 2)
    result = evaluate()
    assert [r.tags["trustlake/landed_file"] for r in result.run_requests] == ["a.parquet"]
    [reason] = quarantined(lake, "content").values()
    assert "unreadable" in reason


def test_a_file_still_being_written_is_left_for_a_later_tick(lake, evaluate):
    users = lake.read_table("users")["user_id"].to_list()
    file = drop(
        lake,
        "content",
        external_content(users[:2], START, first_id=8_950_000_000_000_000_000),
        "uploading.csv",
        settled=False,
    )
    result = evaluate()
    assert not result.run_requests and file.exists() and result.skip_reason


def test_content_waits_for_the_new_accounts_it_refers_to_until_they_have_landed(lake, evaluate):
    day = START + timedelta(days=2)
    new_users = external_users(3, day)
    drop(lake, "users", new_users, "accounts.parquet")
    posts = drop(
        lake,
        "content",
        external_content(new_users["user_id"].to_list(), day, first_id=8_960_000_000_000_000_000),
        "posts.csv",
    )
    [request] = evaluate().run_requests
    assert request.tags["trustlake/landing_table"] == "users"
    assert posts.exists()  # neither quarantined nor claimed: its authors are still landing

    ingest_claim(lake, Claim.from_name(lake, request.tags["trustlake/landing_claim"]), WINDOW, WINDOW)
    [request] = evaluate().run_requests
    assert request.tags["trustlake/landed_file"] == "posts.csv" and not posts.exists()


def test_a_claimed_file_whose_run_never_started_is_requested_again(lake, evaluate):
    users = lake.read_table("users")["user_id"].to_list()
    drop(lake, "content", external_content(users[:2], START, first_id=8_970_000_000_000_000_000), "x.parquet")
    [first] = evaluate().run_requests
    [again] = evaluate().run_requests  # the first request never became a run (a daemon killed mid-tick)
    assert again.run_key == first.run_key
    evaluate.instance.add_run(DagsterRun(job_name="land_job", run_id=str(uuid.uuid4()), tags=dict(first.tags)))
    assert not evaluate().run_requests
    assert (lake.landing / INGESTING / "content").is_dir() and len(claims(lake)) == 1
