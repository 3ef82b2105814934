"""Every asset of the code location, in lineage order. Importing it reads the dbt manifest, which
`trustlake prepare` writes; without one it says so instead of failing deep inside dagster-dbt."""

from __future__ import annotations

from typing import TYPE_CHECKING

from assets.warehouse_project import dbt_project

if TYPE_CHECKING:
    import dagster as dg

    from ml.evaluation.gates import GateConfig
    from ml.launch.bounds import LaunchBounds
    from ml.monitoring import MonitoringThresholds

if not dbt_project.manifest_path.exists():
    raise FileNotFoundError(
        f"no dbt manifest at {dbt_project.manifest_path}: run `trustlake prepare` (or "
        "`make install`) once before loading the definitions"
    )

from assets.banks import banks_assets  # noqa: E402
from assets.campaigns import campaigns_assets  # noqa: E402
from assets.evaluation import evaluation_assets  # noqa: E402
from assets.features import feature_assets  # noqa: E402
from assets.image_evaluation import image_and_matching_evaluation  # noqa: E402
from assets.images import images_assets  # noqa: E402
from assets.launch import launch_assets  # noqa: E402
from assets.monitoring import monitoring_assets  # noqa: E402
from assets.raw import raw_assets  # noqa: E402
from assets.reference import reference_labels  # noqa: E402
from assets.scoring import scoring_assets  # noqa: E402
from assets.training import baseline_model, content_classifier, label_issues, risk_model, text_model, training_set  # noqa: E402
from assets.warehouse import warehouse_assets  # noqa: E402


def all_assets(
    partitions: dg.TimeWindowPartitionsDefinition, gates: GateConfig, limits: MonitoringThresholds, bounds: LaunchBounds
) -> list:
    """The assets over the platform's daily `partitions`, their gate, monitoring and launch checks described
    with the bounds in force."""
    return [
        *raw_assets(partitions),
        reference_labels,
        *campaigns_assets(),
        *warehouse_assets(partitions),
        *images_assets(partitions),
        *banks_assets(partitions),
        *feature_assets,
        training_set,
        label_issues,
        content_classifier,
        baseline_model,
        text_model,
        risk_model,
        *evaluation_assets(gates),
        image_and_matching_evaluation,
        *scoring_assets(partitions),
        *launch_assets(partitions),
        *monitoring_assets(partitions, limits, bounds),
    ]
