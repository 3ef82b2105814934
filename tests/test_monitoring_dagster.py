"""Monitoring in Dagster: the graph contract of the monitoring group, the retraining sensor and the run-failure
sensor, evaluated with Dagster's own test utilities against a real (ephemeral) instance."""

import logging
from datetime import date, datetime

import dagster as dg
import duckdb
import polars as pl
import pytest

from assets.resources import MonitoringResource
from ml import monitoring as mon
from ml.lake import Lake
from ml.registry import Registry, RegistryEntry
from ml.taxonomy import VIOLATING
from orchestration.sensors.alerts import run_failure_alert_sensor
from orchestration.sensors.retraining import retraining_sensor
from tests.helpers import lakehouse_resource

CHAMPION = "risk_model-20261012T000000-abcd"
DATASET = "d0d0d0d0d0d0d0d0"
LABELS_UNTIL = datetime(2026, 10, 12, 23, 0)
MIN_NEW_LABELS = 100


# -- the graph ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def defs():
    from orchestration.definitions import defs

    return defs()


def test_monitoring_assets_are_daily_like_scoring_and_read_a_declared_reference(defs):
    graph = defs.resolve_asset_graph()
    scores = graph.get(dg.AssetKey("content_scores"))
    reference = graph.get(dg.AssetKey("monitoring_reference"))
    assert reference.group_name == "monitoring" and reference.partitions_def is None
    assert {"deployed_model", "training_set"} <= {k.to_user_string() for k in reference.parent_keys}
    for name in ("model_drift", "live_precision", "prevalence_gap"):
        node = graph.get(dg.AssetKey(name))
        assert node.group_name == "monitoring" and node.description
        assert node.partitions_def == scores.partitions_def
        assert {"monitoring_reference", "content_scores"} <= {k.to_user_string() for k in node.parent_keys}
    for mart in ("mart_model_monitoring", "ops_alerts"):
        assert graph.get(dg.AssetKey(mart)).group_name == "monitoring"
    assert {"model_drift", "live_precision", "prevalence_gap"} <= {
        k.to_user_string() for k in graph.get(dg.AssetKey("mart_model_monitoring")).parent_keys
    }
    assert {k.to_user_string() for k in graph.get(dg.AssetKey("ops_alerts")).parent_keys} == {"ops_alert_log"}


def test_nothing_that_acts_reads_the_shadow_and_the_post_launch_check_fails_the_run(defs):
    # What acts (the champion's scores, the moderators' queue, the daily monitoring) never depends on the shadow's
    # scores: only the comparison mart and the launch report read them (tests/test_launch_assurance.py).
    graph = defs.resolve_asset_graph()
    readers = {k.to_user_string() for k in graph.get(dg.AssetKey("shadow_scores")).child_keys}
    assert readers == {"launch_report", "mart_shadow_comparison"}, readers
    # Blocking: a failed post-launch check fails the run, which the run failure sensor turns into an ops alert.
    check = graph.get_check_spec(dg.AssetCheckKey(dg.AssetKey("launch_volumes"), "volumes_match_launch_prediction"))
    assert check.blocking
    score = {k.to_user_string() for k in defs.resolve_job_def("score_job").asset_layer.executable_asset_keys}
    assert {"shadow_scores", "launch_volumes", "launch_report", "model_launch_log"} <= score


def test_every_monitoring_check_has_a_description_quoting_its_thresholds(defs):
    graph = defs.resolve_asset_graph()
    checks = {(k.asset_key.to_user_string(), k.name): graph.get_check_spec(k) for k in graph.asset_check_keys}
    limits = mon.MonitoringThresholds()  # in force here: this process sets no TRUSTLAKE_DRIFT_PSI_* and friends
    expected = {
        ("model_drift", "score_drift_psi"): f"ERROR above {limits.drift_psi_fail:g}",
        ("model_drift", "feature_drift_psi"): f"ERROR above {limits.drift_psi_fail:g}",
        ("live_precision", "live_precision_drop"): f"ERROR past {limits.precision_drop_fail:g}",
        ("prevalence_gap", "predicted_vs_qa_prevalence"): f"moved past {limits.prevalence_gap_fail:g}",
    }
    for key, quoted in expected.items():
        assert quoted in checks[key].description, key
        assert not checks[key].blocking, key  # an alarm must not stop the mart analysts read it in


def test_the_sensors_and_the_retraining_job_are_in_the_code_location(defs):
    assert {s.name for s in defs.sensors} >= {"retraining_sensor", "run_failure_alert_sensor"}
    assert defs.resolve_sensor_def("retraining_sensor").job_name == "retrain_job"
    retrain = {k.to_user_string() for k in defs.resolve_job_def("retrain_job").asset_layer.executable_asset_keys}
    assert {"training_set", "risk_model", "risk_model_evaluation", "deployed_model"} <= retrain
    score = {k.to_user_string() for k in defs.resolve_job_def("score_job").asset_layer.executable_asset_keys}
    assert {
        "content_scores",
        "monitoring_reference",
        "model_drift",
        "live_precision",
        "prevalence_gap",
        "mart_model_monitoring",
    } <= score


# -- the retraining sensor ----------------------------------------------------------------------
def champion_home(home, new_labels: int) -> Lake:
    """A home with a champion, its monitoring reference and `new_labels` labels newer than its training set."""
    lake = Lake(home)
    (lake.models / CHAMPION).mkdir(parents=True)
    registry = Registry(lake.models)
    registry.register(
        RegistryEntry.from_dict(
            {
                "version": CHAMPION,
                "kind": "risk_model",
                "path": str(lake.models / CHAMPION),
                "dataset_version": DATASET,
                "code_version": "test",
                "metrics": {},
                "operating_points": {},
            }
        )
    )
    registry.promote(CHAMPION, reason="test champion", actor="test")
    reference = mon.Reference(
        champion=CHAMPION,
        dataset_version=DATASET,
        window_start=date(2026, 10, 1),
        window_end=date(2026, 10, 7),
        rows=100,
        labels_until=LABELS_UNTIL,
        label_rows=300,
        bins={},
        thresholds={},
        promised_precision={},
        prevalence_offset={p: 0.0 for p in VIOLATING},
        qa_audited=30,
    )
    mon.write_reference(
        reference, pl.DataFrame({"content_id": [1]}), mon.reference_dir(lake.monitoring, CHAMPION, DATASET)
    )
    lake.warehouse_dir.mkdir(parents=True)
    with duckdb.connect(str(lake.marts_db)) as con:
        con.execute("create table training_labels (label_source varchar, label_at timestamp)")
        con.execute("insert into training_labels select 'reference', null from range(500)")
        con.execute("insert into training_labels select 'moderator_decision', timestamp '2026-10-05' from range(300)")
        con.execute(
            f"insert into training_labels select case when i % 5 = 0 then 'qa_audit' else 'moderator_decision' "
            f"end, timestamp '2026-10-13' + i * interval 1 minute from range({new_labels}) t(i)"
        )
    return lake


def report_drift(instance: dg.DagsterInstance, day: str, psi: float, champion: str = CHAMPION) -> None:
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key="model_drift",
            partition=day,
            metadata={
                "max_psi": psi,
                "max_psi_column": "component_size",
                "max_psi_metric": "feature_psi",
                "champion": champion,
            },
        )
    )


def evaluate(home, instance, cursor=None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "lakehouse": lakehouse_resource(home),
            "monitoring": MonitoringResource.from_thresholds(
                mon.MonitoringThresholds(retrain_min_new_labels=MIN_NEW_LABELS)
            ),
        },
    )
    result = retraining_sensor(context)
    if isinstance(result, dg.SkipReason):
        return [], result.skip_message, cursor
    return result.run_requests, (result.skip_reason.skip_message if result.skip_reason else None), result.cursor


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def test_enough_new_labels_request_retrain_job_tagged_with_the_count(tmp_path, instance):
    champion_home(tmp_path, new_labels=130)
    requests, _, _ = evaluate(tmp_path, instance)
    assert len(requests) == 1
    tags = requests[0].tags
    assert tags["trustlake/retrain_reason"] == "new_labels"
    assert tags["trustlake/new_labels"] == "130" and tags["trustlake/new_labels_threshold"] == str(MIN_NEW_LABELS)
    assert tags["trustlake/new_labels/qa_audit"] == "26" and tags["trustlake/new_labels/moderator_decision"] == "104"
    assert tags["trustlake/champion"] == CHAMPION and tags["trustlake/champion_dataset_version"] == DATASET
    assert requests[0].run_key == f"new_labels:{CHAMPION}:1"


def test_drift_past_the_fail_threshold_requests_retrain_job_tagged_drift(tmp_path, instance):
    champion_home(tmp_path, new_labels=10)
    report_drift(instance, "2026-10-13", 0.12)
    report_drift(instance, "2026-10-14", 0.41)
    requests, _, _ = evaluate(tmp_path, instance)
    assert len(requests) == 1
    tags = requests[0].tags
    assert tags["trustlake/retrain_reason"] == "drift" and tags["trustlake/drift_psi"] == "0.410"
    assert tags["trustlake/drift_day"] == "2026-10-14"
    assert tags["trustlake/drift_metric"] == "feature_psi:component_size"
    assert tags["trustlake/drift_psi_threshold"] == "0.25" and tags["trustlake/new_labels"] == "10"
    assert requests[0].run_key == f"drift:{CHAMPION}"


def test_few_labels_and_drift_below_the_threshold_or_of_another_model_request_nothing(tmp_path, instance):
    champion_home(tmp_path, new_labels=MIN_NEW_LABELS - 1)
    report_drift(instance, "2026-10-13", 0.2)
    report_drift(instance, "2026-10-14", 0.9, champion="risk_model-retired")
    requests, reason, _ = evaluate(tmp_path, instance)
    assert requests == []
    assert f"{MIN_NEW_LABELS - 1} new labels" in reason and "0.200" in reason


def test_a_day_monitored_again_counts_with_its_latest_figures_only(tmp_path, instance):
    champion_home(tmp_path, new_labels=0)
    report_drift(instance, "2026-10-13", 0.6)
    report_drift(instance, "2026-10-13", 0.05)  # the same day re-monitored, after a fix upstream
    requests, _, _ = evaluate(tmp_path, instance)
    assert requests == []


def test_the_same_evidence_is_not_requested_again(tmp_path, instance):
    champion_home(tmp_path, new_labels=10)
    report_drift(instance, "2026-10-14", 0.41)
    first, _, cursor = evaluate(tmp_path, instance)
    assert len(first) == 1
    again, reason, _ = evaluate(tmp_path, instance, cursor)
    assert again == [] and "no newly monitored days" in reason
    report_drift(instance, "2026-10-15", 0.5)  # new drift, same champion: the same key, so Dagster runs it once
    later, _, _ = evaluate(tmp_path, instance, cursor)
    assert [r.run_key for r in later] == [first[0].run_key]


def test_nothing_is_requested_while_a_retraining_run_is_in_progress(tmp_path, instance):
    champion_home(tmp_path, new_labels=500)
    instance.add_run(dg.DagsterRun(job_name="retrain_job", run_id="r-in-progress", status=dg.DagsterRunStatus.STARTED))
    requests, reason, _ = evaluate(tmp_path, instance)
    assert requests == [] and "r-in-progress" in reason


def test_no_champion_or_no_reference_yet_is_a_reason_not_an_error(tmp_path, instance):
    assert "no champion yet" in evaluate(tmp_path, instance)[1]
    lake = champion_home(tmp_path, new_labels=500)
    (mon.reference_dir(lake.monitoring, CHAMPION, DATASET) / mon.REFERENCE_FILE).unlink()
    requests, reason, _ = evaluate(tmp_path, instance)
    assert requests == [] and "no monitoring reference yet" in reason


# -- the run-failure sensor ---------------------------------------------------------------------
@dg.asset
def nightly_scores() -> None:
    raise dg.Failure("no champion is deployed yet: materialize deployed_model first\nsecond line")


def test_a_failed_run_becomes_an_ops_alerts_row_and_a_log_line(tmp_path, instance, caplog):
    result = dg.materialize([nightly_scores], instance=instance, raise_on_error=False)
    assert not result.success
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"lakehouse": lakehouse_resource(tmp_path)},
    ).for_run_failure()
    with caplog.at_level(logging.ERROR, logger="trustlake.alerts"):
        run_failure_alert_sensor(context)
        run_failure_alert_sensor(context)  # a retried tick rewrites the same row
    alerts = mon.read_ops_alerts(Lake(tmp_path).ops)
    assert alerts.height == 1
    row = alerts.row(0, named=True)
    assert row["run_id"] == result.run_id and row["job_name"] == result.dagster_run.job_name
    assert row["failed_steps"] == "nightly_scores" and row["failed_assets"] == "nightly_scores"
    assert row["error"].startswith("no champion is deployed yet") and "second line" in row["error"]
    assert row["failed_at"] is not None
    assert any(result.run_id in r.getMessage() and "nightly_scores" in r.getMessage() for r in caplog.records)
    logged = instance.get_latest_materialization_event(dg.AssetKey("ops_alert_log"))
    assert logged.asset_materialization.metadata["run_id"].value == result.run_id


@dg.asset
def feature_join() -> None:
    raise KeyError("author_id")


def test_an_unexpected_error_is_recorded_root_cause_first(tmp_path, instance):
    result = dg.materialize([feature_join], instance=instance, raise_on_error=False)
    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor",
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"lakehouse": lakehouse_resource(tmp_path)},
    ).for_run_failure()
    run_failure_alert_sensor(context)
    error = mon.read_ops_alerts(Lake(tmp_path).ops)["error"][0]
    assert error.startswith("KeyError: 'author_id'") and "feature_join" in error
