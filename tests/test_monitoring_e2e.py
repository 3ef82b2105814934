"""Monitoring end to end: on the real run's home (tests/conftest.py e2e_home) nothing fires; after the world
shifts (a bot ring's spam campaign no corpus holds, over the window's last three days), landing, scoring and
monitoring those three days again makes the drift and prevalence checks fail, the failed run of the day lands in
ops_alerts, and the retraining sensor requests retrain_job tagged with the drift.

The shifted days run in process against a copy of the e2e home (its champion, reference and run history),
so no training run is repeated."""

import shutil
from datetime import date, timedelta

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets.resources import MonitoringResource
from ml.lake import Lake
from ml.monitoring import MonitoringThresholds
from orchestration.dagster_internals import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG, InstanceRef
from orchestration.settings import Settings
from tests.helpers import E2E_DAYS, E2E_ENV, code_location_assets, first_day, lakehouse_resource

pytestmark = pytest.mark.e2e
# The e2e home's window: a fresh home pins today - TRUSTLAKE_DAYS as its first day. The world
# shifts for the window's last three days, which the copy lives again.
FIRST = Settings.from_env({**E2E_ENV, "TRUSTLAKE_HOME": "/nonexistent/unpinned"}).start_date
SHIFT_FIRST = FIRST + timedelta(days=E2E_DAYS - 3)
SHIFT_LAST = FIRST + timedelta(days=E2E_DAYS - 1)
MONITORS = ("model_drift", "live_precision", "prevalence_gap")


def lakehouse(home, **shift: str):
    """The e2e run's platform (same settings: seed, size, corpora, first day), optionally shifted
    (TRUSTLAKE_WORLD_SHIFT and friends)."""
    assert first_day(home) == FIRST
    return lakehouse_resource(home, **shift)


def home_instance(home) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(Lake(home).home / "dagster")))


def retraining(home, instance, cursor=None):
    from orchestration.sensors.retraining import retraining_sensor

    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "lakehouse": lakehouse(home),
            "monitoring": MonitoringResource.from_thresholds(MonitoringThresholds()),
        },
    )
    return retraining_sensor(context)


def monitoring_tables(home) -> pl.DataFrame:
    lake = Lake(home)
    return pl.concat(
        [
            pl.read_parquet(str(lake.monitoring / m / "date=*" / "*.parquet"), hive_partitioning=True).with_columns(
                monitor=pl.lit(m)
            )
            for m in MONITORS
        ],
        how="diagonal_relaxed",
    )


def require_champion(home) -> None:
    """Monitoring watches a champion: a run that promoted none has nothing to monitor, which is a failure of
    that run (every candidate failed a gate), not something these tests may skip."""
    from ml.registry import Registry

    if Registry(Lake(home).models).champion() is None:
        pytest.fail(
            "the e2e run (tests/conftest.py e2e_home) promoted no champion: every candidate failed a gate "
            "(see the risk_model_evaluation checks of its run), so no day was scored or monitored"
        )


def test_an_unchanged_world_raises_no_alarm_and_requests_no_retraining(e2e_home):
    require_champion(e2e_home)
    tables = monitoring_tables(e2e_home)
    assert tables["date"].n_unique() == E2E_DAYS  # every day of the run was monitored
    assert tables.filter(pl.col("status") == "fail").is_empty(), tables.filter(pl.col("status") == "fail")
    with home_instance(e2e_home) as instance:
        result = retraining(e2e_home, instance)
    assert isinstance(result, dg.SensorResult) and not result.run_requests
    with duckdb.connect(str(Lake(e2e_home).marts_db), read_only=True) as con:
        n, days = con.execute("select count(*), count(distinct monitoring_date) from mart_model_monitoring").fetchone()
    assert n == tables.height and days == E2E_DAYS


@pytest.fixture(scope="module")
def shifted(e2e_home, tmp_path_factory):
    """A copy of the e2e home that lived three more days in a world with a new spam campaign."""
    from assets.warehouse_project import TrustlakeDbtCliResource
    from orchestration.sensors.alerts import run_failure_alert_sensor

    require_champion(e2e_home)
    home = tmp_path_factory.mktemp("shifted") / "home"
    shutil.copytree(e2e_home, home, ignore=shutil.ignore_patterns("ray"))
    shift = lakehouse(home, TRUSTLAKE_WORLD_SHIFT="spam_campaign", TRUSTLAKE_WORLD_SHIFT_FROM=SHIFT_FIRST.isoformat())
    resources = {
        "lakehouse": shift,
        "monitoring": MonitoringResource.from_thresholds(MonitoringThresholds()),
        "dbt": TrustlakeDbtCliResource.for_lake(Lake(home)),
        "io_manager": dg.FilesystemIOManager(base_dir=str(home / "dagster" / "storage")),
    }
    days = {
        ASSET_PARTITION_RANGE_START_TAG: SHIFT_FIRST.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: SHIFT_LAST.isoformat(),
    }
    with home_instance(home) as instance:
        ingest = dg.materialize(
            code_location_assets("content", "fct_content", "published_marts"),
            instance=instance,
            resources=resources,
            tags=days,
            raise_on_error=False,
        )
        assert ingest.success, "landing the shifted days failed"

        @dg.asset(name="nightly_export")
        def failing_export() -> None:
            raise dg.Failure("the export bucket refused the upload (403)")

        failed = dg.materialize([failing_export], instance=instance, raise_on_error=False)
        run_failure_alert_sensor(
            dg.build_run_status_sensor_context(
                sensor_name="run_failure_alert_sensor",
                dagster_event=failed.get_run_failure_event(),
                dagster_instance=instance,
                dagster_run=failed.dagster_run,
                resources={"lakehouse": shift},
            ).for_run_failure()
        )

        # The champion and its training set as the e2e run stored them (loaded by the IO manager).
        stored = [dg.AssetSpec("deployed_model"), dg.AssetSpec("training_set")]
        scoring_and_monitoring = code_location_assets(
            "bank_matches",
            "content_scores",
            "monitoring_reference",
            "model_drift",
            "live_precision",
            "prevalence_gap",
            "ops_alerts",
        )
        monitored = dg.materialize(
            [*scoring_and_monitoring, *stored],
            selection=scoring_and_monitoring,
            instance=instance,
            resources=resources,
            tags=days,
            raise_on_error=False,
        )
        assert monitored.success, "scoring and monitoring the shifted days failed"
        checks = {(e.asset_key.to_user_string(), e.check_name): e for e in monitored.get_asset_check_evaluations()}
        first = retraining(home, instance)
        again = retraining(home, instance, cursor=first.cursor)
    yield {"home": home, "checks": checks, "first": first, "again": again, "failed_run": failed.run_id}


def test_the_shift_fails_the_drift_checks(shifted):
    feature = shifted["checks"][("model_drift", "feature_drift_psi")]
    assert not feature.passed and feature.severity == dg.AssetCheckSeverity.ERROR
    assert date.fromisoformat(feature.metadata["day"].value) >= SHIFT_FIRST
    score = shifted["checks"][("model_drift", "score_drift_psi")]
    assert not score.passed  # the champion's spam scores moved too (WARN or ERROR)


def test_qa_audits_find_the_spam_the_champion_misses(shifted):
    prevalence = shifted["checks"][("prevalence_gap", "predicted_vs_qa_prevalence")]
    assert not prevalence.passed and "spam" in prevalence.description
    gaps = monitoring_tables(shifted["home"]).filter(
        pl.col("metric") == "prevalence_gap",
        pl.col("subject") == "spam",
        pl.col("date") >= SHIFT_FIRST,
        pl.col("status") != "insufficient",
    )
    assert gaps.height and (gaps["value"] < gaps["expected"]).all()  # QA sees more spam than predicted


def test_each_shifted_day_carries_its_own_figures(shifted):
    with home_instance(shifted["home"]) as instance:
        events = {
            day: instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("model_drift"), asset_partitions=[day]), limit=1
            ).records[0]
            for day in (SHIFT_FIRST.isoformat(), SHIFT_LAST.isoformat())
        }
    psi = {day: e.asset_materialization.metadata["max_psi"].value for day, e in events.items()}
    table = monitoring_tables(shifted["home"]).filter(
        pl.col("monitor") == "model_drift", pl.col("status") != "insufficient"
    )
    for day, value in psi.items():
        assert value == pytest.approx(table.filter(pl.col("date") == date.fromisoformat(day))["value"].max(), abs=1e-4)
    assert len(set(psi.values())) == len(psi)


def test_the_retraining_sensor_requests_retrain_job_for_the_drift_once(shifted):
    requests = shifted["first"].run_requests
    assert len(requests) == 1
    tags = requests[0].tags
    assert tags["trustlake/retrain_reason"] == "drift" and float(tags["trustlake/drift_psi"]) > 0.25
    assert date.fromisoformat(tags["trustlake/drift_day"]) >= SHIFT_FIRST
    assert not shifted["again"].run_requests


def test_analysts_see_the_alarm_and_the_failed_run_in_the_marts(shifted):
    with duckdb.connect(str(Lake(shifted["home"]).marts_db), read_only=True) as con:
        alarms = con.execute(
            "select count(*) from mart_model_monitoring where is_alert and status = 'fail' and monitoring_date >= ?",
            [SHIFT_FIRST],
        ).fetchone()[0]
        alert = con.execute(
            "select job_name, failed_steps, error from ops_alerts where run_id = ?", [shifted["failed_run"]]
        ).fetchone()
    assert alarms > 0
    assert alert[1] == "nightly_export" and alert[2].startswith("the export bucket refused the upload")


def test_a_shadow_is_scored_beside_the_champion_every_day_and_compared_in_the_mart(e2e_home, tmp_path):
    """`trustlake models shadow` on a copy of the run's home, then `trustlake run`: only what the shadow
    changes is rebuilt, the shadow is scored on every day, acts on nothing, and analysts get
    mart_shadow_comparison rows per day, policy and surface."""
    from dataclasses import replace

    from ml.registry import Registry
    from tests.helpers import copy_home, run_cli

    require_champion(e2e_home)
    home = copy_home(e2e_home, tmp_path / "home")
    lake = Lake(home)
    registry = Registry(lake.models)
    champion = registry.champion()
    # A second gated candidate without minutes of retraining: the champion's own artifact registered again
    # under another version. The same model, so the two must agree on every item.
    twin = registry.register(replace(champion, version=f"{champion.version}-twin", status="candidate", launch=None))
    before = pl.read_parquet(lake.scores / "content_scores" / "*" / "*.parquet").select("content_id", "action")
    started = run_cli(home, "models", "shadow", twin.version, "--reason", "shadow test")
    assert started.returncode == 0, started.stderr
    result = run_cli(home, "run", timeout=1200)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "retrain_job (1 stale asset(s)" in result.stdout  # deployed_model only: nothing retrained
    after = pl.read_parquet(lake.scores / "content_scores" / "*" / "*.parquet").select("content_id", "action")
    assert before.sort("content_id").equals(after.sort("content_id"))  # the shadow acted on nothing
    with duckdb.connect(str(lake.marts_db), read_only=True) as con:
        days, versions, items, flips = con.execute(
            "select count(distinct content_date), list(distinct shadow_version), sum(items), "
            "sum(flips_to_harsher + flips_to_softer) from mart_shadow_comparison"
        ).fetchone()
    assert days == E2E_DAYS and versions == [twin.version]
    assert items == after.height and flips == 0
