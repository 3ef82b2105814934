"""The Dagster graph as users see it: keys, groups, lineage, checks, jobs and schedules (a visible
contract), and definitions that load with no side effects."""

import dataclasses
import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from ml.evaluation.gates import GateConfig
from ml.monitoring import MonitoringThresholds
from ml.taxonomy import POLICIES
from orchestration.definitions import defs
from orchestration.settings import PROJECT_ROOT, Settings, last_complete_day
from tests.helpers import code_location_assets

RAW = ["users", "content", "reports", "decisions", "appeals", "qa_audits"]
MARTS = [
    "fct_content",
    "fct_moderation_actions",
    "dim_users",
    "mart_policy_daily",
    "mart_prevalence_daily",
    "mart_appeals",
    "mart_moderator_quality",
    "mart_review_sla",
    "mart_reporter_quality",
    "training_labels",
]


@pytest.fixture(scope="module")
def definitions():
    return defs()


@pytest.fixture(scope="module")
def graph(definitions):
    return definitions.resolve_asset_graph()


# Polars, scikit-learn and LightGBM set allocator and OpenMP variables when imported (their own doing,
# on any import): they are imported first, so what is compared is what trustlake's code does.
IMPORT_AND_LOAD = """
import json, os, sys
import dagster, dagster_dbt, duckdb, lightgbm, polars, sklearn, torch
before = dict(os.environ)
import orchestration.definitions
loaded = orchestration.definitions.defs()
loaded.resolve_asset_graph()
print(json.dumps({"before": before, "after": dict(os.environ)}))
"""


def files_under(path):
    return sorted(str(p) for p in path.rglob("*")) if path.exists() else []


def test_importing_and_loading_the_definitions_writes_nothing_and_leaves_the_environment_alone(tmp_path):
    home = tmp_path / "fresh-home"
    target = PROJECT_ROOT / "dbt_project" / "target"
    manifest = target / "manifest.json"
    before = (files_under(target), manifest.stat().st_mtime_ns)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "TRUSTLAKE_"))}
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", IMPORT_AND_LOAD],
        env={**env, "TRUSTLAKE_HOME": str(home)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["after"] == seen["before"]
    assert files_under(tmp_path) == []  # no dagster.yaml, no platform.json, no storage, nothing in the cwd
    assert (files_under(target), manifest.stat().st_mtime_ns) == before  # dbt never parsed


def test_daily_partitions_run_from_the_first_day_to_yesterday(graph):
    node = graph.get(dg.AssetKey("content"))
    keys = node.partitions_def.get_partition_keys()
    assert keys[0] == Settings.from_env().start_date.isoformat()
    assert keys[-1] == last_complete_day().isoformat()


def test_every_raw_table_is_a_daily_partitioned_asset_in_group_raw(graph):
    first = Settings.from_env().start_date.isoformat()
    for key in RAW:
        node = graph.get(dg.AssetKey(key))
        assert node.group_name == "raw"
        assert node.partitions_def is not None and node.partitions_def.get_partition_keys()[0] == first
        assert "parquet" in node.kinds and node.description


def job_groups(definitions, name):
    graph = definitions.resolve_asset_graph()
    job = definitions.resolve_job_def(name)
    return {graph.get(k).group_name for k in job.asset_layer.selected_asset_keys}


def test_jobs_select_their_groups_and_the_daily_ones_are_daily_partitioned(definitions):
    names = {j.name for j in definitions.resolve_all_job_defs() if not j.name.startswith("__")}
    assert names == {"ingest_job", "retrain_job", "score_job", "daily_job", "land_job", "image_evaluation_job"}
    assert job_groups(definitions, "ingest_job") == {"raw", "campaigns", "warehouse", "images"}
    assert job_groups(definitions, "retrain_job") == {"features", "training", "evaluation", "deployment"}
    assert job_groups(definitions, "score_job") == {"scoring"} | ({"monitoring"} & job_groups(definitions, "daily_job"))
    assert job_groups(definitions, "daily_job") >= {"raw", "campaigns", "warehouse", "images", "scoring"}
    assert job_groups(definitions, "land_job") == {"raw", "warehouse"}
    # What the main jobs build never waits for the image evaluation's minutes of re-uploads and renders.
    assert job_groups(definitions, "image_evaluation_job") == {"image_evaluation"}
    assert not any("image_evaluation" in job_groups(definitions, j) for j in ("ingest_job", "retrain_job", "score_job"))
    for name in ("ingest_job", "score_job", "daily_job", "land_job"):
        assert isinstance(definitions.resolve_job_def(name).partitions_def, dg.DailyPartitionsDefinition)
    assert definitions.resolve_job_def("retrain_job").partitions_def is None


def test_the_daily_schedule_is_stopped_and_retraining_is_weekly(definitions):
    daily = definitions.resolve_schedule_def("daily_schedule")
    weekly = definitions.resolve_schedule_def("weekly_retrain_schedule")
    assert daily.job_name == "daily_job" and daily.default_status == dg.DefaultScheduleStatus.STOPPED
    assert weekly.job_name == "retrain_job" and weekly.cron_schedule == "0 3 * * 1"
    images = definitions.resolve_schedule_def("weekly_image_evaluation_schedule")
    assert images.job_name == "image_evaluation_job" and images.cron_schedule == "0 5 * * 1"
    for name in ("automation_sensor", "landing_sensor"):
        assert definitions.resolve_sensor_def(name).default_status == dg.DefaultSensorStatus.RUNNING, name


def test_scores_and_the_review_queue_follow_a_new_champion_by_automation(graph):
    for key in ("content_scores", "mart_review_queue"):
        assert graph.get(dg.AssetKey(key)).automation_condition is not None
    assert dg.AssetKey("deployed_model") in graph.get(dg.AssetKey("content_scores")).parent_keys


def test_evaluation_gates_never_block_deployment_inside_retrain_job(definitions):
    from assets.evaluation import evaluation_assets
    from ml.evaluation.gates import GateConfig

    for asset in evaluation_assets(GateConfig()):
        for spec in asset.check_specs:
            assert not spec.blocking, spec.key
            assert spec.description


def test_every_asset_has_an_owner_and_every_check_a_description(graph):
    keys = [k for k in graph.get_all_asset_keys() if graph.has(k) and graph.get(k).is_materializable]
    assert [k.to_user_string() for k in keys if not graph.get(k).owners] == []
    assert [k.to_user_string() for k in graph.asset_check_keys if not graph.get(k).description] == []


def test_lineage_runs_raw_to_staging_to_intermediate_to_marts(graph):
    def parents(key):
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}

    assert parents("stg_platform__content") == {"content"}
    assert parents("stg_platform__decisions") == {"decisions"}
    assert {"stg_platform__decisions", "stg_platform__appeals", "stg_platform__qa_audits"} <= parents(
        "int_resolved_content_labels"
    )
    assert "int_resolved_content_labels" in parents("fct_content")
    assert parents("training_labels") == {
        "int_resolved_content_labels",
        "stg_platform__content",
        "int_moderator_qa_agreement",
        "stg_reference__labelled_texts",
    }
    assert parents("stg_reference__labelled_texts") == {"reference_labels"}
    assert parents("mart_label_issues") == {"label_issues", "training_labels"}
    assert set(MARTS) <= parents("published_marts")
    for mart in MARTS:
        assert graph.get(dg.AssetKey(mart)).group_name == "warehouse"


def test_dbt_tests_are_asset_checks_on_the_assets_they_test(graph):
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("content", "source_unique_raw_content_content_id") in checks
    assert (
        "stg_platform__decisions",
        "relationships_stg_platform__decisions_content_id__content_id__ref_stg_platform__content_",
    ) in checks
    assert ("decisions", "source_accepted_values_raw_decisions_action___var_decision_actions_") in checks
    assert ("fct_content", "unique_fct_content_content_id") in checks
    assert ("mart_prevalence_daily", "assert_qa_prevalence_in_unit_interval") in checks
    assert ("training_labels", "assert_label_resolution_total") in checks
    assert ("stg_platform__decisions", "assert_decision_not_before_content") in checks
    assert ("stg_platform__appeals", "assert_appeal_references_removal") in checks
    assert len(checks) >= 100


def test_a_vocabulary_check_says_the_values_in_force_that_dbt_reads_as_a_var(graph):
    key = dg.AssetCheckKey(
        dg.AssetKey("decisions"), "source_accepted_values_raw_decisions_action___var_decision_actions_"
    )
    assert "`action` is one of remove, restrict, no_action" in graph.get(key).description
    policies = dg.AssetCheckKey(
        dg.AssetKey("mart_policy_daily"), "accepted_values_mart_policy_daily_policy___var_policies_"
    )
    assert ", ".join(POLICIES) in graph.get(policies).description


def test_every_duckdb_writer_shares_one_pool(graph):
    # warehouse_models, published_marts, review_queue_models, label_quality_models, monitoring_models
    for asset in code_location_assets(
        "fct_content", "published_marts", "mart_review_queue", "mart_label_issues", "ops_alerts"
    ):
        assert asset.op.pool == "duckdb"


def test_every_asset_has_a_description(graph):
    missing = [
        k.to_user_string()
        for k in graph.get_all_asset_keys()
        if graph.has(k) and graph.get(k).is_materializable and not graph.get(k).description
    ]
    assert missing == []


def test_feature_assets_carry_blocking_quality_checks_and_feature_drift_is_monitorings(graph):
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    for table in ("content_features", "author_features", "network_features"):
        assert graph.get(dg.AssetKey(table)).group_name == "features"
        assert {c for t, c in checks if t == table} == {
            "schema",
            "null_rates",
            "value_ranges",
            "covers_labelled_content",
        }
    assert ("model_drift", "feature_drift_psi") in checks  # against the champion's reference, not the last build


def test_models_take_the_training_set_as_a_real_input(graph):
    from assets.training import baseline_model, content_classifier, risk_model, text_model

    for asset in (content_classifier, text_model, baseline_model, risk_model):
        assert dg.AssetKey("training_set") in asset.keys_by_input_name.values()
        assert graph.get(asset.key).group_name == "training"
    assert {"content_features", "author_features", "network_features", "training_labels"} <= {
        k.to_user_string() for k in graph.get(dg.AssetKey("training_set")).parent_keys
    }


def test_the_risk_model_is_stacked_on_the_content_classifier_and_evaluated_as_a_pair(graph):
    def parents(key):
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}

    assert {"content_classifier", "label_issues"} <= parents("risk_model")
    assert {"content_classifier", "baseline_model", "training_set"} <= parents("content_classifier_evaluation")
    assert {"risk_model", "content_classifier_evaluation"} <= parents("risk_model_evaluation")
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    for gate in ("beats_baseline_text_only", "non_inferior_on_every_held_out_source", "no_regression_vs_champion"):
        assert ("content_classifier_evaluation", gate) in checks
    assert ("risk_model_evaluation", "content_classifier_gates") in checks


def test_steps_at_once_and_runs_at_once_come_from_the_settings(tmp_path):
    from orchestration.definitions import build_definitions
    from orchestration.settings import render_instance_yaml

    settings = Settings.from_env({"TRUSTLAKE_HOME": str(tmp_path), "TRUSTLAKE_MAX_CONCURRENT_STEPS": "1"})
    definitions = build_definitions(settings)
    executor = definitions.resolve_job_def("retrain_job").executor_def
    config = executor.config_schema.resolve_config({}).value["config"]
    assert executor.name == "multiprocess" and config["max_concurrent"] == 1
    assert "forkserver" in config["start_method"]
    # The daily jobs' short steps run in the run's own process (orchestration/jobs.py says why).
    assert definitions.resolve_job_def("ingest_job").executor_def.name == "in_process"
    assert "max_concurrent_runs: 5" in render_instance_yaml(5)


def test_turning_the_daily_schedule_on_lands_the_day_after_the_window(definitions):
    from datetime import UTC, datetime, time, timedelta

    schedule = definitions.resolve_schedule_def("daily_schedule")
    new_day = last_complete_day() + timedelta(days=1)  # today: not a partition yet, it has not ended
    tick = datetime.combine(new_day + timedelta(days=1), time(1, 0), tzinfo=UTC)
    with dg.build_schedule_context(scheduled_execution_time=tick) as context:
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.partition_key == new_day.isoformat()


def test_every_knob_a_deployment_sets_reaches_its_resource_and_the_check_descriptions(tmp_path):
    """Each variable of the simulator, training, gate and monitoring sections set away from its default:
    the resources hand the assets those values, and the UI's check descriptions quote them."""
    from orchestration.definitions import build_definitions
    from orchestration.settings import GATES, LIGHTGBM, MONITORING, SIMULATOR, TEXT_MODEL

    env = {
        "TRUSTLAKE_HOME": str(tmp_path),
        "TRUSTLAKE_WORLD_SHIFT": "slang",
        "TRUSTLAKE_WORLD_SHIFT_FROM": "2026-10-09",
    }
    for section in (SIMULATOR, LIGHTGBM, TEXT_MODEL, GATES, MONITORING):
        for f in dataclasses.fields(section.dataclass()):
            if f.name in section.fields and isinstance(f.default, int | float) and not isinstance(f.default, bool):
                # Floats move down (a confidence must stay below 1; warn and fail bounds keep their order).
                env[section.variable(f.name)] = str(f.default + 1 if isinstance(f.default, int) else f.default * 0.9)
    settings = Settings.from_env(env)
    for name, section in (("simulator", SIMULATOR), ("lightgbm", LIGHTGBM), ("text_model", TEXT_MODEL)):
        defaults = section.dataclass()(**({"start_date": settings.start_date} if name == "simulator" else {}))
        unchanged = [f for f in section.fields if getattr(getattr(settings, name), f) == getattr(defaults, f)]
        assert unchanged == [], f"{name}: no variable moved {unchanged}"
    definitions = build_definitions(settings)
    resources = definitions.resources
    assert resources["lakehouse"].sim_config == settings.simulator
    assert resources["training"].gates() == settings.gates != GateConfig()
    assert resources["monitoring"].thresholds() == settings.monitoring != MonitoringThresholds()
    training = resources["training"]
    assert (training.lightgbm_workers, training.lightgbm_threads_per_worker) == (
        settings.lightgbm.num_workers,
        settings.lightgbm.threads_per_worker,
    )
    assert training.text_epochs == settings.text_model.epochs
    graph = definitions.resolve_asset_graph()

    def described(asset: str, check: str) -> str:
        return graph.get_check_spec(dg.AssetCheckKey(dg.AssetKey(asset), check)).description

    assert f"ERROR above {settings.monitoring.drift_psi_fail:g}" in described("model_drift", "score_drift_psi")
    assert f"moved past {settings.monitoring.prevalence_gap_fail:g}" in described(
        "prevalence_gap", "predicted_vs_qa_prevalence"
    )
    assert f"at or above {settings.gates.min_pr_auc:g}" in described("risk_model_evaluation", "min_pr_auc")
    assert f"{settings.gates.pair_gain_confidence:.0%} paired-bootstrap" in described(
        "risk_model_evaluation", "beats_classifier_significantly"
    )
    assert f"margin ({settings.gates.max_source_regression:g})" in described(
        "content_classifier_evaluation", "non_inferior_on_every_held_out_source"
    )


def test_the_ray_cluster_is_local_unless_ray_address_names_one(tmp_path):
    from dagster_ray import RayResource

    from orchestration.definitions import build_definitions
    from orchestration.ray_resource import ExistingRayCluster, LoopbackRay

    local = build_definitions(Settings.from_env({"TRUSTLAKE_HOME": str(tmp_path), "TRUSTLAKE_RAY_CPUS": "3"})).resources
    assert isinstance(local["ray_cluster"], LoopbackRay)
    assert local["ray_cluster"].ray_init_options["num_cpus"] == 3
    assert local["ray_cluster"].ray_init_options["_node_ip_address"] == "127.0.0.1"
    assert local["training"].ray_storage_path == str(tmp_path / "ray")  # Ray Train run state under the home
    remote = build_definitions(
        Settings.from_env({"TRUSTLAKE_HOME": str(tmp_path), "RAY_ADDRESS": "ray://head.ray.svc:10001"})
    ).resources
    assert isinstance(remote["ray_cluster"], ExistingRayCluster)
    assert remote["ray_cluster"].ray_address == "ray://head.ray.svc:10001"
    assert "num_cpus" not in remote["ray_cluster"].ray_init_options  # the cluster's size is the cluster's
    # What the training assets ask for: any dagster-ray backend (LocalRay, KubeRay) fits.
    assert all(isinstance(r["ray_cluster"], RayResource) for r in (local, remote))
