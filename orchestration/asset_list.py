"""Every asset of the code location, in lineage order. Importing it reads the dbt manifest, which
`trustlake prepare` writes; without one it says so instead of failing deep inside dagster-dbt."""

from orchestration.warehouse_project import dbt_project

if not dbt_project.manifest_path.exists():
    raise FileNotFoundError(
        f"no dbt manifest at {dbt_project.manifest_path}: run `trustlake prepare` (or "
        "`make install`) once before loading the definitions"
    )

from assets.evaluation import deployed_model, evaluation_assets  # noqa: E402
from assets.features import feature_assets  # noqa: E402
from assets.monitoring import monitoring_assets, ops_alert_log  # noqa: E402
from assets.raw import raw_platform_tables  # noqa: E402
from assets.reference import reference_labels  # noqa: E402
from assets.scoring import content_scores  # noqa: E402
from assets.training import baseline_model, content_classifier, label_issues, risk_model, text_model, training_set  # noqa: E402
from assets.warehouse import label_quality_models, published_marts, review_queue_models, warehouse_models  # noqa: E402


def all_assets() -> list:
    return [
        raw_platform_tables,
        reference_labels,
        warehouse_models,
        published_marts,
        *feature_assets,
        training_set,
        label_issues,
        label_quality_models,
        content_classifier,
        baseline_model,
        text_model,
        risk_model,
        *evaluation_assets,
        deployed_model,
        content_scores,
        review_queue_models,
        *monitoring_assets,
        ops_alert_log,
    ]
