"""The Dagster resources the assets declare: the lakehouse (paths, the simulated platform, text pool),
the training runs' size and promotion gates, the monitoring thresholds and the launch bounds.

Each is built from the library's own frozen dataclasses (`SimConfig`, `LightGBMParams`,
`TextModelParams`, `GateConfig`, `MonitoringThresholds`, `LaunchBounds`) and hands them back, so no default is stated
here: orchestration/settings.py reads the deployment's values and orchestration/definitions.py builds
the resources from them. The fields are the values a deployment may set, shown in the UI's resource page.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import polars as pl

from ml.corpora import load_records, load_text_pool
from ml.evaluation.gates import GateConfig
from ml.lake import Lake
from ml.launch.bounds import LaunchBounds
from ml.monitoring import MonitoringThresholds
from ml.world import SimConfig

if TYPE_CHECKING:  # LightGBM and torch: `trustlake land` imports this module through the landing sensor
    from dagster_ray import RayResource

    from ml.training.lightgbm_model import LightGBMParams
    from ml.training.text_model_params import TextModelParams


def connect_ray(ray_cluster: RayResource, context: dg.AssetExecutionContext) -> None:
    """Connect this step to the `ray_cluster` resource's cluster, if it is not yet (once per process).

    The resource does not connect when resources are initialised (orchestration/ray_resource.py): a Ray
    start costs seconds, and an in-process run (the ingest) initialises every resource of every step at
    its start, whether or not the step that needs Ray has anything for it to do. Steps call this when
    they are about to use Ray; dagster-ray still disconnects (and stops a cluster it started) when the
    step ends."""
    if not ray_cluster.connected:
        ray_cluster.connect(context)
        ray_cluster.on_connect(context)


@lru_cache(maxsize=4)
def _text_pool(corpora: str | None, seed: int) -> tuple[pl.DataFrame, str]:
    return load_text_pool(Path(corpora) if corpora else None, seed=seed)


class LakehouseResource(dg.ConfigurableResource):
    """Where trustlake keeps its state and how the simulated platform is shaped (`sim_config`)."""

    home: str
    corpora_dir: str  # "": the built-in template texts
    # SimConfig's fields a deployment sets; the others keep the simulator's defaults.
    start_date: str
    seed: int
    users: int
    content_per_day: int
    world_shift: str  # "": none (TRUSTLAKE_WORLD_SHIFT*)
    world_shift_from: str
    world_shift_share: float
    image_share: float

    @classmethod
    def for_platform(cls, home: Path, corpora: Path | None, sim: SimConfig) -> LakehouseResource:
        return cls(
            home=str(home),
            corpora_dir=str(corpora) if corpora else "",
            start_date=sim.start_date.isoformat(),
            seed=sim.seed,
            users=sim.users,
            content_per_day=sim.content_per_day,
            world_shift=sim.world_shift,
            world_shift_from=sim.world_shift_from.isoformat() if sim.world_shift_from else "",
            world_shift_share=sim.world_shift_share,
            image_share=sim.image_share,
        )

    @property
    def lake(self) -> Lake:
        return Lake(Path(self.home))

    @property
    def sim_config(self) -> SimConfig:
        return SimConfig(
            seed=self.seed,
            start_date=date.fromisoformat(self.start_date),
            users=self.users,
            content_per_day=self.content_per_day,
            world_shift=self.world_shift,
            world_shift_from=date.fromisoformat(self.world_shift_from) if self.world_shift_from else None,
            world_shift_share=self.world_shift_share,
            image_share=self.image_share,
        )

    def text_pool(self) -> tuple[pl.DataFrame, str]:
        return _text_pool(self.corpora_dir or None, self.seed)

    def labelled_records(self) -> tuple[pl.DataFrame, str]:
        """Every labelled corpus record (not deduplicated): what `reference_labels` lands."""
        return load_records(Path(self.corpora_dir) if self.corpora_dir else None, seed=self.seed)


class TrainingResource(dg.ConfigurableResource):
    """How big the training runs are, which text model trains, and the promotion gates' bounds."""

    lightgbm_workers: int
    lightgbm_threads_per_worker: int
    text_epochs: int
    text_cpus_per_worker: int
    # compact: hashed n-gram wide-and-deep net (CPU default); minilm: fine-tune all-MiniLM-L6-v2
    # (GPU default); auto: minilm when the Ray cluster has a GPU, else compact.
    text_profile: str
    # When the deep text model trains: auto (only when the Ray cluster has a GPU), on, off.
    text_model: str
    # Every GateConfig bound, as `gate_<field>`.
    gate_min_pr_auc: float
    gate_min_baseline_margin: float
    gate_max_regression: float
    gate_max_calibration_error: float
    gate_max_slice_regression: float
    gate_max_source_regression: float
    gate_pair_gain_confidence: float
    # Where Ray Train keeps run state and checkpoints (under the home); a multi-node cluster needs
    # a path every node reaches.
    ray_storage_path: str

    @classmethod
    def for_runs(
        cls,
        lightgbm: LightGBMParams,
        text_model: TextModelParams,
        text_profile: str,
        text_model_training: str,
        gates: GateConfig,
        ray_storage: Path,
    ) -> TrainingResource:
        return cls(
            lightgbm_workers=lightgbm.num_workers,
            lightgbm_threads_per_worker=lightgbm.threads_per_worker,
            text_epochs=text_model.epochs,
            text_cpus_per_worker=text_model.cpus_per_worker,
            text_profile=text_profile,
            text_model=text_model_training,
            **{f"gate_{name}": value for name, value in asdict(gates).items()},
            ray_storage_path=str(ray_storage),
        )

    def ray_storage(self) -> Path:
        path = Path(self.ray_storage_path)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def gates(self) -> GateConfig:
        """The promotion gates' bounds (a candidate failing any is never promoted)."""
        return GateConfig(**{f.name: getattr(self, f"gate_{f.name}") for f in fields(GateConfig)})


class MonitoringResource(dg.ConfigurableResource):
    """When monitoring warns and fails, and when retraining is due: every `MonitoringThresholds` field."""

    drift_psi_warn: float
    drift_psi_fail: float
    precision_drop_warn: float
    precision_drop_fail: float
    prevalence_gap_warn: float
    prevalence_gap_fail: float
    retrain_min_new_labels: int
    min_rows: int
    min_labelled: int
    min_audited: int

    @classmethod
    def from_thresholds(cls, thresholds: MonitoringThresholds) -> MonitoringResource:
        return cls(**asdict(thresholds))

    def thresholds(self) -> MonitoringThresholds:
        return MonitoringThresholds(**{f.name: getattr(self, f.name) for f in fields(MonitoringThresholds)})


class LaunchResource(dg.ConfigurableResource):
    """How far a launch may move what the platform does before a person must approve it, and how its prediction
    is held to account after: every `LaunchBounds` field."""

    backtest_days: int
    max_removal_change: float
    max_review_change: float
    min_daily_change: float
    review_seconds: float
    volume_tolerance: float

    @classmethod
    def from_bounds(cls, bounds: LaunchBounds) -> LaunchResource:
        return cls(**asdict(bounds))

    def bounds(self) -> LaunchBounds:
        return LaunchBounds(**{f.name: getattr(self, f.name) for f in fields(LaunchBounds)})
