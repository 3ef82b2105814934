"""The malformed-files drill: a landing folder with broken files of ten kinds beside good ones.
Each broken file is quarantined with a reason naming its problem, every good row of the good
files lands in the raw lake and the warehouse through real land runs (Dagster + dbt), the rows
survive the day being simulated again, and `trustlake land` refuses a bad file in one line per
problem, without a traceback."""

import os
import time
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from ml.lake import LANDED_PREFIX, Lake
from ml.raw.landing import claims
from ml.text import normalise, text_hash
from orchestration.settings import Settings
from tests.helpers import (
    E2E_ENV,
    LANDED_DAYS,
    code_location_assets,
    copy_home,
    external_content,
    external_users,
    first_day,
    lakehouse_resource,
    run_cli,
)

pytestmark = pytest.mark.e2e
DAYS = LANDED_DAYS  # the home holds its first three days: FIRST .. DAY3
assert DAYS == 3
# A fresh home pins today - TRUSTLAKE_DAYS as its first day (orchestration/settings.py).
FIRST = Settings.from_env({**E2E_ENV, "TRUSTLAKE_HOME": "/nonexistent/unpinned"}).start_date
DAY2, DAY3 = FIRST + timedelta(days=1), FIRST + timedelta(days=2)


@pytest.fixture(scope="module")
def home(landed_home_template, tmp_path_factory) -> Path:
    home = copy_home(landed_home_template, tmp_path_factory.mktemp("landing-drill") / "home")
    assert first_day(home) == FIRST
    return home


def drop(lake: Lake, table: str, name: str, frame: pl.DataFrame | None = None, raw: bytes | None = None) -> Path:
    path = lake.landing / table / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if raw is not None:
        path.write_bytes(raw)
    elif name.endswith(".csv"):
        frame.write_csv(path)
    else:
        frame.write_parquet(path)
    os.utime(path, (time.time() - 60,) * 2)  # settled: the upload finished a minute ago
    return path


def counts(lake: Lake) -> dict[str, int]:
    out = {t: lake.read_table(t).height for t in ("users", "content")}
    with duckdb.connect(str(lake.marts_db), read_only=True) as con:
        out["fct_content"] = con.execute("select count(*) from fct_content").fetchone()[0]
        out["dim_users"] = con.execute("select count(*) from dim_users").fetchone()[0]
    return out


def warehouse_ids(lake: Lake, table: str, column: str) -> set[int]:
    with duckdb.connect(str(lake.marts_db), read_only=True) as con:
        return {r[0] for r in con.execute(f"select {column} from {table}").fetchall()}


def resources(home: Path) -> dict:
    from assets.warehouse_project import TrustlakeDbtCliResource

    # The same simulator settings and home as the `trustlake run` that built it.
    return {
        "lakehouse": lakehouse_resource(home),
        "dbt": TrustlakeDbtCliResource.for_lake(Lake(home)),
    }


def execute(request: dg.RunRequest, home: Path, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Run what the sensor requested, in process: its assets, run config, tags and partition range."""
    return dg.materialize(
        code_location_assets("content", "fct_content", "published_marts"),
        selection=request.asset_selection,
        run_config=request.run_config,
        tags=request.tags,
        resources=resources(home),
        instance=instance,
        raise_on_error=False,
    )


def tick(home: Path, instance: dg.DagsterInstance) -> dg.SensorResult:
    from orchestration.definitions import defs
    from orchestration.sensors.landing import landing_sensor

    with dg.build_sensor_context(
        instance=instance,
        definitions=defs(),
        resources={"lakehouse": lakehouse_resource(home)},
    ) as context:
        return landing_sensor(context)


def malformed(lake: Lake, authors: list[int]) -> dict[str, str]:
    """Drop one broken content file of each kind; return file name -> the rule its reason must name."""
    posts = external_content(authors[:6], DAY2, first_id=8_010_000_000_000_000_000)
    lake_rows = lake.read_table("content").drop("date").head(4)
    long_text = "spam " * 2_500
    kinds = {
        "wrong-columns.csv": ("missing_columns", posts.rename({"content_id": "id", "text": "body"})),
        "wrong-types.csv": ("bad_value", posts.with_columns(pl.lit("yesterday").alias("created_at"))),
        "truncated.parquet": ("unreadable", None),
        "latin1.csv": ("unreadable", None),
        "duplicate-keys.parquet": (
            "duplicate_key",
            lake_rows.with_columns(
                pl.lit("a different text for a key the lake already holds").alias("text")
            ).with_columns(
                pl.col("text")
                .map_elements(lambda t: text_hash(normalise(t)), return_dtype=pl.String)
                .alias("text_hash")
            ),
        ),
        "conflicting-keys.csv": (
            "conflicting_key",
            posts.with_columns(pl.lit(8_010_000_000_000_000_099).alias("content_id")),
        ),
        "future.csv": ("future_time", posts.with_columns(pl.lit(datetime(2031, 1, 1)).alias("created_at"))),
        "oversized.parquet": (
            "text_too_long",
            posts.with_columns(
                pl.lit(long_text).alias("text"), pl.lit(text_hash(normalise(long_text))).alias("text_hash")
            ),
        ),
        "unknown-authors.csv": (
            "unknown_reference",
            posts.with_columns(pl.lit(7_500_000_000_000_000_000).alias("author_id")),
        ),
        "notes.json": ("unreadable", None),
    }
    for name, (_, frame) in kinds.items():
        if name == "truncated.parquet":
            drop(lake, "content", name, raw=_parquet_bytes(posts)[:300])
        elif name == "latin1.csv":
            drop(lake, "content", name, raw="content_id,text\n1,café crème\n".encode("latin-1"))
        elif name == "notes.json":
            drop(lake, "content", name, raw=b'{"content_id": 1}')
        else:
            drop(lake, "content", name, frame)
    return {name: rule for name, (rule, _) in kinds.items()}


def _parquet_bytes(frame: pl.DataFrame) -> bytes:
    import io

    buf = io.BytesIO()
    frame.write_parquet(buf)
    return buf.getvalue()


def test_every_malformed_file_is_quarantined_with_its_reason_and_every_good_row_lands(home):
    lake = Lake(home)
    before = counts(lake)
    existing = lake.read_table("users")["user_id"].to_list()
    accounts = external_users(6, DAY2)
    posts = pl.concat(
        [
            external_content(accounts["user_id"].to_list(), DAY2, first_id=8_020_000_000_000_000_000),
            external_content(existing[:6], DAY3, first_id=8_020_000_000_000_000_100),
        ]
    )
    split = external_content(existing[10:20], DAY3, first_id=8_030_000_000_000_000_000).with_columns(
        content_id=pl.when(pl.int_range(pl.len()).is_in([3, 7])).then(None).otherwise("content_id")
    )
    drop(lake, "users", "partner-accounts.parquet", accounts)
    drop(lake, "content", "partner-posts.csv", posts)  # by the new accounts: waits for them to land
    drop(lake, "content", "null-keys.parquet", split)  # 8 good rows, 2 without a key
    expected = malformed(lake, existing) | {"null-keys.parquet": "null_value"}

    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        ran = []
        for _ in range(4):
            result = tick(home, instance)
            if not result.run_requests:
                break
            for request in result.run_requests:
                outcome = execute(request, home, instance)
                assert outcome.success, request.tags
                ran.append(request.tags["trustlake/landed_file"])
    assert sorted(ran) == ["null-keys.parquet", "partner-accounts.parquet", "partner-posts.csv"]
    assert ran.index("partner-posts.csv") > ran.index("partner-accounts.parquet")

    moved = [p for p in (lake.quarantine_dir / "content").iterdir() if not p.name.endswith(".reason.txt")]
    # <UTC timestamp>-<file name>; a file a run split also carries its fingerprint: <timestamp>-<fp>-<name>
    reasons = {
        name: Path(f"{p}.reason.txt").read_text() for p in moved for name in expected if p.name.endswith(f"-{name}")
    }
    assert len(moved) == len(expected) and set(reasons) == set(expected)
    for name, rule in expected.items():
        assert rule in reasons[name], (name, reasons[name])
        assert "what to do:" in reasons[name]
    assert "invalid utf-8" in reasons["latin1.csv"] and "unsupported file type" in reasons["notes.json"]
    assert "the 8 good rows were landed" in reasons["null-keys.parquet"]
    assert list((lake.landing / "content").iterdir()) == [] and claims(lake) == []

    good_ids = set(posts["content_id"]) | set(split["content_id"].drop_nulls())
    after = counts(lake)
    assert after["content"] == before["content"] + len(good_ids) == before["content"] + 20
    assert after["users"] == before["users"] + 6
    assert after["fct_content"] == before["fct_content"] + 20 and after["dim_users"] == before["dim_users"] + 6
    assert good_ids <= warehouse_ids(lake, "fct_content", "content_id")
    assert set(accounts["user_id"]) <= warehouse_ids(lake, "dim_users", "user_id")

    # The days are simulated again (as `trustlake run --first DAY2` would): the landed rows stay.
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        again = dg.materialize(
            code_location_assets("content", "fct_content", "published_marts"),
            resources=resources(home),
            instance=instance,
            tags={
                "dagster/asset_partition_range_start": DAY2.isoformat(),
                "dagster/asset_partition_range_end": DAY3.isoformat(),
            },
            raise_on_error=False,
        )
    assert again.success
    assert counts(lake) == after
    assert len(list((lake.raw / "content").glob(f"date=*/{LANDED_PREFIX}*.parquet"))) == 3  # 2 files, 2 days
    assert not (lake.quarantine_dir / "users").exists()


def test_trustlake_land_refuses_a_bad_file_in_one_line_per_problem_and_lands_nothing(home, tmp_path):
    lake = Lake(home)
    before = counts(lake)
    users = lake.read_table("users")["user_id"].to_list()
    bad = external_content(users[:5], DAY2, first_id=8_040_000_000_000_000_000).with_columns(
        surface=pl.when(pl.int_range(pl.len()) == 1).then(pl.lit("billboard")).otherwise("surface"),
        created_at=pl.when(pl.int_range(pl.len()) == 3).then(pl.lit(datetime(2031, 1, 1))).otherwise("created_at"),
    )
    file = tmp_path / "export.csv"
    bad.write_csv(file)
    original = file.read_bytes()

    result = run_cli(home, "land", str(file), "--table", "content")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert any(line.startswith("trustlake land: unknown_value (surface)") and "row 2" in line for line in lines)
    assert any(line.startswith("trustlake land: future_time (created_at)") and "row 4" in line for line in lines)
    assert "nothing landed" in lines[-1]
    assert file.read_bytes() == original and counts(lake) == before
    [copy] = [p for p in (lake.quarantine_dir / "content").glob("*-export.csv")]
    assert copy.read_bytes() == original
    assert "lands a file whole or not at all" in Path(f"{copy}.reason.txt").read_text()

    missing = run_cli(home, "land", str(tmp_path / "nope.csv"), "--table", "content")
    assert missing.returncode == 2 and "is not a file" in missing.stderr and "Traceback" not in missing.stderr
    wrong_table = run_cli(home, "land", str(file), "--table", "posts")
    assert wrong_table.returncode == 2 and "not a raw table" in wrong_table.stderr


def test_trustlake_land_lands_a_good_file_through_a_land_job_run(home, tmp_path):
    lake = Lake(home)
    before = counts(lake)
    users = lake.read_table("users")["user_id"].to_list()
    good = external_content(users[30:37], DAY3, first_id=8_050_000_000_000_000_000)
    file = tmp_path / "batch.parquet"
    good.write_parquet(file)

    result = run_cli(home, "land", str(file), "--table", "content")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"7 content rows landed for {DAY3}" in result.stdout
    after = counts(lake)
    assert after["content"] == before["content"] + 7 and after["fct_content"] == before["fct_content"] + 7
    assert set(good["content_id"]) <= warehouse_ids(lake, "fct_content", "content_id")
    assert file.exists() and claims(lake) == []  # the user's file stays; the lake keeps its own copy
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        [run] = instance.get_run_records(filters=dg.RunsFilter(tags={"trustlake/landed_file": "batch.parquet"}))
        assert run.dagster_run.job_name == "land_job" and run.dagster_run.is_success
