"""The trustlake code location: every asset, check, job, schedule and resource."""

import dagster as dg
from dagster_dbt import DbtCliResource

from ml.lake import Lake
from orchestration.settings import Settings, prepare_environment
from orchestration.warehouse_project import DBT_EXECUTABLE, dbt_project, export_dbt_environment, prepare_manifest

settings = Settings.from_env()
prepare_environment(settings)
export_dbt_environment(Lake(settings.home))
if not dbt_project.manifest_path.exists():
    # First start without `make`/`trustlake prepare`: parse now, before any run starts.
    prepare_manifest(Lake(settings.home))

from assets.evaluation import deployed_model, evaluation_assets  # noqa: E402  (needs the manifest above)
from assets.features import feature_assets  # noqa: E402
from assets.monitoring import monitoring_assets, ops_alert_log  # noqa: E402
from assets.scoring import content_scores  # noqa: E402
from assets.raw import raw_platform_tables  # noqa: E402
from assets.reference import reference_labels  # noqa: E402
from assets.training import (baseline_model, content_classifier, label_issues, risk_model, text_model,  # noqa: E402
                             training_set)
from assets.warehouse import (label_quality_models, published_marts, review_queue_models,  # noqa: E402
                              warehouse_models)
from orchestration.jobs import deploy_job, ingest_job, retrain_job, score_job, train_job  # noqa: E402
from orchestration.ray_resource import RayResource  # noqa: E402
from orchestration.resources import LakehouseResource, MonitoringResource, TrainingResource  # noqa: E402
from orchestration.schedules import daily_ingest_schedule  # noqa: E402
from orchestration.sensors.alerts import run_failure_alert_sensor  # noqa: E402
from orchestration.sensors.retraining import retraining_sensor  # noqa: E402

defs = dg.Definitions(
    assets=[raw_platform_tables, reference_labels, warehouse_models, published_marts, *feature_assets, training_set,
            label_issues, label_quality_models, content_classifier, baseline_model, text_model, risk_model,
            *evaluation_assets, deployed_model, content_scores, review_queue_models, *monitoring_assets,
            ops_alert_log],
    jobs=[ingest_job, train_job, deploy_job, score_job, retrain_job],
    schedules=[daily_ingest_schedule],
    sensors=[retraining_sensor, run_failure_alert_sensor],
    resources={
        "lakehouse": LakehouseResource.from_settings(settings),
        "monitoring": MonitoringResource.from_settings(settings),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE),
        "ray_cluster": RayResource(address=settings.ray_address or "", num_cpus=settings.ray_cpus,
                                   storage_path=str(settings.home / "ray")),
        "training": TrainingResource(lightgbm_workers=settings.lightgbm_workers,
                                     lightgbm_threads_per_worker=settings.lightgbm_threads,
                                     text_epochs=settings.text_epochs,
                                     gate_min_pr_auc=settings.gate_min_pr_auc,
                                     text_profile=settings.text_profile),
        # Models and training sets pass between assets as real inputs, stored under the home.
        "io_manager": dg.FilesystemIOManager(base_dir=str(settings.dagster_home / "storage")),
    },
)
