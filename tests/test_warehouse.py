"""The dbt warehouse end to end: published marts, analyst queries, idempotent rebuilds,
readers during rebuilds, and planted raw defects caught by the matching asset check."""

import os
import re
import subprocess
import sys
import textwrap
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from ml.lake import Lake
from ml.raw.contracts import RAW_TABLES
from ml.simulator import partition_date, simulate_days
from ml.text import eval_bucket
from ml.world import SimConfig
from orchestration.partitions import daily_partitions
from orchestration.settings import PROJECT_ROOT
from tests.helpers import (
    E2E_DAYS,
    E2E_ENV,
    code_location_assets,
    descendants,
    first_day,
    kill_tree,
    land_reference_sets,
    run_cli,
    trustlake_env,
)
from tests.test_definitions import MARTS

pytestmark = pytest.mark.e2e
DOC_QUERIES = re.findall(r"```sql\n(.*?)```", (PROJECT_ROOT / "docs" / "marts.md").read_text(), re.S)
# Lakes built by hand here are materialized in this process, so they start on its first partition.
START = daily_partitions.start.date()


def marts_db(home: Path) -> Path:
    return Lake(home).marts_db


def mart_fingerprints(db: Path) -> dict[str, tuple[int, int]]:
    """Row count and an order-independent content hash of every mart (doubles rounded)."""
    out = {}
    with duckdb.connect(str(db), read_only=True) as con:
        for table in MARTS:
            cols = con.execute(
                "select column_name, data_type from information_schema.columns where table_name = ? "
                "order by ordinal_position",
                [table],
            ).fetchall()
            exprs = [f'round("{c}", 6)' if t == "DOUBLE" else f'"{c}"' for c, t in cols]
            n, h = con.execute(
                f'select count(*), coalesce(bit_xor(hash({", ".join(exprs)})), 0) from "{table}"'
            ).fetchall()[0]
            out[table] = (n, h)
    return out


def test_every_mart_is_published_to_the_read_only_copy(e2e_home):
    with duckdb.connect(str(marts_db(e2e_home)), read_only=True) as con:
        tables = {r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()}
        assert set(MARTS) <= tables
        for table in MARTS:
            assert con.execute(f'select count(*) from "{table}"').fetchall()[0][0] > 0, table


@pytest.mark.parametrize("sql", DOC_QUERIES, ids=[f"q{i + 1}" for i in range(len(DOC_QUERIES))])
def test_every_analyst_query_in_the_docs_runs(e2e_home, sql):
    assert len(DOC_QUERIES) >= 8
    with duckdb.connect(str(marts_db(e2e_home)), read_only=True) as con:
        rows = con.execute(sql).fetchall()
    assert rows, "the documented query returned no rows on the default-shaped data"


def test_sql_command_prints_a_table(e2e_home):
    result = run_cli(e2e_home, "sql", "select policy, enforcements from mart_appeals order by policy")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == ["policy", "enforcements"]
    assert "hate_speech" in result.stdout
    bad = run_cli(e2e_home, "sql", "select * from no_such_mart")
    assert bad.returncode == 2 and "no_such_mart" in bad.stderr


def test_training_labels_eval_bucket_matches_the_python_hash(e2e_home):
    with duckdb.connect(str(marts_db(e2e_home)), read_only=True) as con:
        rows = con.execute("select text_hash, eval_bucket from training_labels").fetchall()
    assert rows and all(eval_bucket(h) == b for h, b in rows)


def test_facts_keep_every_raw_row(e2e_home):
    lake = Lake(e2e_home)
    with duckdb.connect(str(marts_db(e2e_home)), read_only=True) as con:
        n_content = con.execute("select count(*) from fct_content").fetchall()[0][0]
        n_actions = con.execute("select count(*) from fct_moderation_actions").fetchall()[0][0]
    assert n_content == lake.read_table("content").height
    assert n_actions == lake.read_table("decisions").height


def test_every_image_post_has_its_file_in_the_lake_and_each_file_was_read_once(e2e_home):
    from ml.features.images import image_text_table

    lake = Lake(e2e_home)
    images = lake.read_table("content").filter(pl.col("media_type") == "image")
    assert images.height > 0
    assert all(lake.media_file(p).is_file() for p in images["media_path"].unique())
    read = image_text_table(lake)
    assert set(read["media_sha256"]) == set(images["media_sha256"]) and read.height == images["media_sha256"].n_unique()
    assert (read["rejected"] == "").all() and (read["text"] != "").any()
    with duckdb.connect(str(marts_db(e2e_home)), read_only=True) as con:
        n = con.execute("select count(*) from fct_content where media_type = 'image'").fetchall()[0][0]
    assert n == images.height


def test_make_run_banks_confirmed_removals_and_removes_their_reuploads_naming_the_removal(e2e_home):
    from ml.matching.bank_matches import BANK_MATCHES
    from ml.matching.bank_sources import REMOVALS_BANK, read_bank_table

    lake = Lake(e2e_home)
    bank = read_bank_table(lake)
    removals = bank.filter(pl.col("bank") == REMOVALS_BANK)
    assert "text" in set(removals["kind"]) and removals["decision_id"].is_not_null().all()
    matches = pl.read_parquet(str(lake.scores / BANK_MATCHES / "date=*" / "*.parquet"))
    assert (matches["content_id"].cast(pl.String) != matches["entry_content_id"]).fill_null(True).all()
    # Ring copies of removed images (simulator truth) posted after their original was banked, under an
    # evasion PDQ survives at radius 18 (recall >= 0.99 in docs/matching.md), come back to its entry.
    banked = removals.filter(pl.col("kind") == "pdq").select(
        pl.col("content_id").cast(pl.Int64).alias("original_content_id"),
        pl.col("confirmed_at").dt.replace_time_zone(None),
    )
    copies = lake.read_table("image_truth", root=lake.ground_truth).filter(pl.col("original_content_id").is_not_null())
    due = copies.filter(pl.col("evasion").is_in(["resize", "recompress", "mirror", "border"])).join(
        banked, on="original_content_id"
    )
    due = due.filter(pl.col("created_at") > pl.col("confirmed_at"))
    # A copy may come back to its original through its picture and its caption alike: caught once.
    caught = due.join(
        matches.select("content_id", pl.col("entry_content_id").cast(pl.Int64).alias("original_content_id")).unique(),
        on=["content_id", "original_content_id"],
    )
    assert caught.height == due.height, f"{due.height - caught.height} of {due.height} banked re-uploads missed"
    # The batch scores act on the closest match by the bank rule and name the entry's removal.
    scores = pl.read_parquet(str(lake.scores / "content_scores" / "date=*" / "*.parquet"))
    by_bank = scores.filter(pl.col("decided_by") == "known_bad_content")
    closest = matches.filter("closest")
    assert set(by_bank["content_id"]) == set(closest["content_id"])
    assert (by_bank["action"] == "remove").all() and by_bank["bank_match"].str.contains(
        ": confirmed removal: decision "
    ).all()
    with duckdb.connect(str(marts_db(e2e_home)), read_only=True) as con:
        items = con.execute("select coalesce(sum(items_decided_by_it), 0) from mart_bank_matches").fetchall()[0][0]
    assert items == closest.height


def raw_day(home: Path, day: date) -> dict[str, pl.DataFrame]:
    lake = Lake(home)
    return {t: pl.read_parquet(lake.partition_dir(t, day) / "part-0.parquet") for t in RAW_TABLES}


READER = textwrap.dedent("""
    import sys, time, duckdb
    import os
    db, stop, n_ok = sys.argv[1], sys.argv[2], 0
    while True:
        with duckdb.connect(db, read_only=True) as con:
            rows = con.execute("select policy, sum(reports) from mart_policy_daily group by policy").fetchall()
            assert len(rows) == 5, rows
        n_ok += 1
        if os.path.exists(stop) and n_ok >= 1:
            break
        time.sleep(1.0)  # 50 pollers must not starve the rebuild of 2 cores
    print(n_ok)
""")


@pytest.fixture(scope="module")
def rebuilt_day(e2e_home, tmp_path_factory):
    """One day of the e2e home rebuilt by `trustlake run --first DAY --days 1` while fifty read-only
    readers poll the published marts (started once dbt writes, stopped once the run is done); the
    raw day and the marts before and after, and what each reader said."""
    tmp = tmp_path_factory.mktemp("rebuild")
    stop, log_path = tmp / "stop", tmp / "rebuild.log"
    day = first_day(e2e_home) + timedelta(days=E2E_DAYS - 2)
    raw_before, marts_before = raw_day(e2e_home, day), mart_fingerprints(marts_db(e2e_home))
    exe = Path(sys.executable).with_name("trustlake")
    readers: list[subprocess.Popen] = []
    published_before = None
    with open(log_path, "w") as log:
        rebuild = subprocess.Popen(
            [str(exe), "run", "--first", day.isoformat(), "--days", "1", "--skip-training"],
            env=trustlake_env(e2e_home),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
        )
        try:
            # The readers start once dbt is writing the warehouse (not while the run's processes start
            # up) and read until the run has published the marts again.
            deadline = time.monotonic() + 900
            while not any("dbt" in cmd and " build" in cmd for _, cmd in descendants(rebuild.pid)):
                assert rebuild.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.2)
            published_before = os.stat(marts_db(e2e_home)).st_ino
            readers = [
                subprocess.Popen(
                    [sys.executable, "-c", READER, str(marts_db(e2e_home)), str(stop)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(50)
            ]
            readers_started_during_run = rebuild.poll() is None
            code = rebuild.wait(timeout=1200)
        finally:
            stop.touch()
            if rebuild.poll() is None:
                kill_tree(rebuild.pid)
            for reader in readers:
                try:
                    reader.wait(timeout=300)
                except subprocess.TimeoutExpired:
                    reader.kill()
    outcomes = [(*r.communicate(), r.returncode) for r in readers]
    assert code == 0, log_path.read_text()[-3000:]
    return {
        "day": day,
        "raw": (raw_before, raw_day(e2e_home, day)),
        "marts": (marts_before, mart_fingerprints(marts_db(e2e_home))),
        "published": (published_before, os.stat(marts_db(e2e_home)).st_ino),
        "readers_started_during_run": readers_started_during_run,
        "readers": outcomes,
    }


def test_rebuilding_one_day_is_idempotent(rebuilt_day):
    # The e2e run built the day once; building it again changes no raw row and no mart.
    raw_before, raw_after = rebuilt_day["raw"]
    assert all(raw_after[t].equals(raw_before[t]) for t in RAW_TABLES)
    before, after = rebuilt_day["marts"]
    assert after == before


def test_fifty_readers_all_succeed_while_the_warehouse_rebuilds(rebuilt_day):
    assert rebuilt_day["readers_started_during_run"]  # every reader started while the run was writing
    before, after = rebuilt_day["published"]
    assert after != before  # marts.duckdb was replaced under them
    failures = [err for _, err, code in rebuilt_day["readers"] if code != 0]
    assert failures == []
    assert all(int(out.strip()) >= 1 for out, _, _ in rebuilt_day["readers"])


# ---------------------------------------------------------------------------------------
# Planted defects: each fails the check that names it; clean data passes every check.
# ---------------------------------------------------------------------------------------
DEFECT_DAY = START + timedelta(days=4)


def plant(lake: Lake, defect: str) -> None:
    if defect == "duplicate_content_id":
        part = lake.read_table("content").filter(pl.col("date") == DEFECT_DAY).drop("date")
        lake.write_partition("content", DEFECT_DAY, pl.concat([part, part.head(2)]))
    elif defect == "orphan_decision":
        part = lake.read_table("decisions").filter(pl.col("date") == DEFECT_DAY).drop("date")
        orphan = part.head(1).with_columns(
            pl.lit(123456789, pl.Int64).alias("content_id"), pl.lit(987654321, pl.Int64).alias("decision_id")
        )
        lake.write_partition("decisions", DEFECT_DAY, pl.concat([part, orphan]))
    elif defect == "bad_action_enum":
        part = lake.read_table("decisions").filter(pl.col("date") == DEFECT_DAY).drop("date")
        lake.write_partition(
            "decisions",
            DEFECT_DAY,
            part.with_columns(
                pl.when(pl.int_range(pl.len()) < 3).then(pl.lit("ban")).otherwise("action").alias("action")
            ),
        )
    elif defect == "created_five_years_ahead":
        part = lake.read_table("content").filter(pl.col("date") == DEFECT_DAY).drop("date")
        lake.write_partition(
            "content",
            DEFECT_DAY,
            part.with_columns(
                pl.when(pl.int_range(pl.len()) == 0)
                .then(pl.col("created_at").dt.offset_by("5y"))
                .otherwise("created_at")
                .alias("created_at")
            ),
        )


EXPECTED_FAILURE = {
    "duplicate_content_id": ("content", "source_unique_raw_content_content_id"),
    "orphan_decision": (
        "stg_platform__decisions",
        "relationships_stg_platform__decisions_content_id__content_id__ref_stg_platform__content_",
    ),
    "bad_action_enum": ("decisions", "source_accepted_values_raw_decisions_action___var_decision_actions_"),
    "created_five_years_ahead": ("content", "source_not_in_future_raw_content_created_at__24"),
}


def land_seven_days(pool, home: Path) -> list[date]:
    """Seven small simulated days written straight into the raw lake (no Dagster run)."""
    config = SimConfig(seed=3, users=400, content_per_day=250, start_date=START)
    lake = Lake(home)
    days = [START + timedelta(days=i) for i in range(7)]
    tables = simulate_days(config, pool, days[0], days[-1])
    for table in RAW_TABLES:
        part = partition_date(table, tables[table], config)
        for day in days:
            lake.write_partition(table, day, tables[table].filter(part == day))
    land_reference_sets(lake)
    return days


def materialize_warehouse(home: Path, day: date, instance: dg.DagsterInstance | None = None):
    """`warehouse_models` for one partition, in process, as the planted-defect tests run it."""
    from assets.resources import LakehouseResource
    from assets.warehouse_project import TrustlakeDbtCliResource

    return dg.materialize(
        code_location_assets("fct_content"),
        partition_key=day.isoformat(),
        resources={
            "lakehouse": LakehouseResource.for_platform(
                home, None, SimConfig(seed=3, start_date=START, users=400, content_per_day=250)
            ),
            "dbt": TrustlakeDbtCliResource.for_lake(Lake(home)),
        },
        instance=instance,
        raise_on_error=False,
    )


def check_evaluations(result) -> dict:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


def test_clean_raw_data_passes_every_asset_check(pool, tmp_path):
    days = land_seven_days(pool, tmp_path)
    result = materialize_warehouse(tmp_path, days[-1])
    evaluations = check_evaluations(result)
    assert result.success
    assert len(evaluations) >= 100 and {k for k, e in evaluations.items() if not e.passed} == set()


# Defects caught on the raw sources sit in different rows and hit different checks, so one build of a
# lake holding all of them shows each caught by its own check. A defect caught on a staging model is
# planted alone: dbt skips a model whose source failed a test, and the model's own tests with it.
DEFECT_GROUPS = {
    "source_checks": ("duplicate_content_id", "bad_action_enum", "created_five_years_ahead"),
    "staging_checks": ("orphan_decision",),
}


@pytest.mark.parametrize("group", DEFECT_GROUPS)
def test_each_planted_raw_defect_fails_the_check_that_names_it(group, pool, tmp_path):
    days = land_seven_days(pool, tmp_path)
    for defect in DEFECT_GROUPS[group]:
        plant(Lake(tmp_path), defect)

    result = materialize_warehouse(tmp_path, days[-1])
    evaluations = check_evaluations(result)
    failed = {k for k, e in evaluations.items() if not e.passed}
    assert not result.success
    for defect in DEFECT_GROUPS[group]:
        check = EXPECTED_FAILURE[defect]
        assert check in failed, f"{defect} was not caught by {check}"
        assert evaluations[check].metadata["dagster_dbt/failed_row_count"].value > 0, defect


HOLD_READ_ONLY = textwrap.dedent("""
    import os, sys, time, duckdb
    db, stop, most = sys.argv[1], sys.argv[2], float(sys.argv[3])
    con = duckdb.connect(db, read_only=True)
    print("open", flush=True)
    deadline = time.monotonic() + most
    while not os.path.exists(stop) and time.monotonic() < deadline:
        time.sleep(0.1)
    con.close()
""")


@pytest.mark.parametrize("when", ["before_dbt_starts", "dbt_loses_the_race"])
def test_a_reader_holding_the_warehouse_delays_the_build_instead_of_failing_it(when, pool, tmp_path, monkeypatch):
    import assets.warehouse

    days = land_seven_days(pool, tmp_path)
    db = Lake(tmp_path).warehouse_db
    db.parent.mkdir(parents=True)
    duckdb.connect(str(db)).close()
    stop = tmp_path / "reader-may-close"
    # before_dbt_starts: the reader closes by itself a few seconds into the build. dbt_loses_the_race:
    # it opened the file between the writability check and dbt's start, and closes only once dbt
    # has failed on its lock and the build waits again.
    hold_for = "8" if when == "before_dbt_starts" else "120"
    reader = subprocess.Popen(
        [sys.executable, "-c", HOLD_READ_ONLY, str(db), str(stop), hold_for], stdout=subprocess.PIPE, text=True
    )
    assert reader.stdout.readline().strip() == "open"
    if when == "dbt_loses_the_race":
        real, calls = assets.warehouse.wait_until_writable, []

        def race(*args, **kwargs):
            calls.append(1)
            if len(calls) == 1:
                return 0.0  # "writable", and dbt starts while the reader still holds the file
            stop.touch()
            return real(*args, **kwargs)

        monkeypatch.setattr(assets.warehouse, "wait_until_writable", race)
    instance = dg.DagsterInstance.ephemeral()

    result = materialize_warehouse(tmp_path, days[-1], instance)

    assert reader.wait(timeout=150) == 0
    assert result.success
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    if when == "before_dbt_starts":
        waiting = [m for m in messages if f"is locked by PID {reader.pid}" in m]
        assert waiting and "marts.duckdb" in waiting[0]
    else:
        assert len(calls) == 2 and any(f"dbt could not lock {db} (PID {reader.pid}" in m for m in messages)
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("select count(*) from marts.fct_content").fetchall()[0][0] > 0


def test_an_old_bad_raw_file_is_quarantined_instead_of_blocking_later_days(landed_home):
    home = landed_home  # three days landed
    lake = Lake(home)
    start = first_day(home)
    old_day = start + timedelta(days=1)
    content_file = lake.partition_dir("content", old_day) / "part-0.parquet"
    original = pl.read_parquet(content_file)
    pl.concat([original, original.head(2)]).write_parquet(content_file)  # a double write's copies
    garbage = lake.partition_dir("reports", start + timedelta(days=2)) / "part-1.parquet"
    garbage.write_bytes(b"PAR1 the first bytes of a file whose copy was cut short")

    later = run_cli(home, "run", "--first", (start + timedelta(days=3)).isoformat(), "--days", "1", "--skip-training")

    assert later.returncode == 0, later.stdout[-3000:] + later.stderr[-3000:]
    assert "broke the raw data rules" in later.stdout + later.stderr
    moved = sorted(p for p in lake.quarantine_dir.rglob("*") if p.is_file() and not p.name.endswith(".reason.txt"))
    assert [p.parent.name for p in moved] == ["content", "reports"]
    reasons = [Path(str(p) + ".reason.txt").read_text() for p in moved]
    assert "duplicate_row" in reasons[0] and str(content_file) in reasons[0]
    assert "unreadable" in reasons[1] and "what to do:" in reasons[1]
    assert pl.read_parquet(content_file).equals(original)  # the day keeps every right row
    assert not garbage.exists()
    with duckdb.connect(str(lake.marts_db), read_only=True) as con:
        days = con.execute("select count(distinct created_date) from fct_content").fetchall()[0][0]
    assert days == 4


def test_make_run_trains_the_pair_and_the_baseline_on_one_dataset_and_no_text_model_without_a_gpu(e2e_home):
    from ml.training.artifacts import ModelArtifact

    artifacts = [ModelArtifact.read(p.parent) for p in sorted(Lake(e2e_home).models.glob("*/artifact.json"))]
    # The Torch text model trains when Ray sees a GPU or TRUSTLAKE_TEXT_MODEL_TRAINING=on; CI has neither. The
    # classifier is also a deployable of its own when the pair did not beat it (test below).
    assert {a.kind for a in artifacts} - {"classifier_alone"} == {"content_classifier", "risk_model", "baseline"}
    assert len({a.dataset_version for a in artifacts}) == 1  # all trained on one training set


def test_every_label_source_reaches_training_labels(e2e_home):
    with duckdb.connect(str(marts_db(e2e_home)), read_only=True) as con:
        sources = dict(con.execute("select label_source, count(*) from training_labels group by 1").fetchall())
        reference = {
            r[0]
            for r in con.execute(
                "select distinct source from training_labels where label_source = 'reference'"
            ).fetchall()
        }
        issues = con.execute("select count(*), count(distinct given_label) from mart_label_issues").fetchall()[0]
    assert {"qa_audit", "moderator_decision", "appeal_overturn", "reference"} <= set(sources)
    assert reference == {
        "davidson_hate_offensive",
        "olid_offenseval2019",
        "sms_spam_collection",
        "sms_smishing",
        "youtube_psy",
        "youtube_katyperry",
        "youtube_lmfao",
        "youtube_eminem",
    }
    assert issues[0] > 0 and issues[1] > 1


def test_make_run_deploys_a_champion_scores_every_day_and_builds_the_review_queue(e2e_home, tmp_path):
    from ml.registry import Registry

    lake = Lake(e2e_home)
    registry = Registry(lake.models)
    champ = registry.champion()
    assert champ is not None and champ.metrics.gates_passed
    # The pair is deployed when the risk model beat its classifier significantly, else the classifier alone, and
    # the registry says which and why (this 12-day world's pair: 0.59-0.64 against its classifier's 0.71).
    pair = next(e for e in registry.list() if e.kind == "risk_model")
    earned = "beats_classifier_significantly" not in pair.metrics.failed_gates
    assert champ.kind == ("risk_model" if earned else "classifier_alone")
    if not earned:
        assert champ.content_classifier == pair.content_classifier
        assert f"the pair {pair.version} did not beat it significantly" in registry.history()[-1]["reason"]
    # Ahead of the baseline by more than the margin this world sets (tests/helpers.py E2E_ENV says why).
    margin = float(E2E_ENV["TRUSTLAKE_GATE_MIN_BASELINE_MARGIN"])
    assert champ.metrics.text_only_macro_pr_auc - champ.metrics.baseline_text_only_macro_pr_auc > margin
    assert registry.history()[-1]["actor"].startswith("dagster run ")
    scores = pl.read_parquet(str(lake.scores / "content_scores" / "date=*" / "*.parquet"))
    assert scores.height == lake.read_table("content").height
    assert scores["model_version"].unique().to_list() == [champ.version]
    with duckdb.connect(str(marts_db(e2e_home)), read_only=True) as con:
        ranks = con.execute(
            "select queue_rank, group_priority, review_group, priority from mart_review_queue order by queue_rank"
        ).fetchall()
    assert ranks and [r[0] for r in ranks] == list(range(1, len(ranks) + 1))
    assert all(a[1] >= b[1] for a, b in zip(ranks, ranks[1:]))  # groups ranked by their most urgent item's risk x reach
    # a group's items are consecutive, most urgent first
    starts = [r[2] for i, r in enumerate(ranks) if i == 0 or ranks[i - 1][2] != r[2]]
    assert len(starts) == len({r[2] for r in ranks})
    assert all(a[3] >= b[3] for a, b in zip(ranks, ranks[1:]) if a[2] == b[2])
    # The first launch: judged by its backtest, reported, and in the audit log analysts query.
    assert champ.launch is not None and (champ.launch.risk_tier, champ.launch.approval) == ("first", "not_needed")
    assert "## Model card" in (lake.models / champ.version / "launch" / "report.md").read_text()
    with duckdb.connect(str(marts_db(e2e_home)), read_only=True) as con:
        launches = con.execute("select action, model_version, is_damaged from mart_model_launches").fetchall()
    assert ("promote", champ.version, False) in launches
    # Text with no context (the CLI) gets every policy from the same champion version.
    src = tmp_path / "texts.csv"
    pl.DataFrame({"body": ["WINNER!! claim your prize, call 09061701461 now", "see you at lunch"]}).write_csv(src)
    result = run_cli(e2e_home, "score", "--input", str(src), "--text-column", "body")
    assert result.returncode == 0, result.stderr
    scored = pl.read_csv(tmp_path / "texts.scored.csv")
    assert scored["model_version"].unique().to_list() == [champ.version]
    assert all(c in scored.columns for c in ("p_benign", "p_hate_speech", "p_harassment", "p_spam", "p_scam"))
    assert scored["p_scam"][0] + scored["p_spam"][0] > 0.5 > scored["p_scam"][1] + scored["p_spam"][1]
