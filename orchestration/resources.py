"""Dagster resources: the lakehouse (paths, simulator settings, text pool) and dbt."""

from __future__ import annotations

from dataclasses import asdict, fields
from datetime import date
from functools import lru_cache
from pathlib import Path

import dagster as dg
import polars as pl

from ml.corpora import load_records, load_text_pool
from ml.lake import Lake
from ml.monitoring import MonitoringThresholds
from ml.simulator import SimConfig
from orchestration.settings import Settings


@lru_cache(maxsize=4)
def _text_pool(corpora: str | None, seed: int) -> tuple[pl.DataFrame, str]:
    return load_text_pool(Path(corpora) if corpora else None, seed=seed)


class LakehouseResource(dg.ConfigurableResource):
    """Where trustlake keeps its state and how the simulated platform is shaped."""

    # No defaults here: orchestration/settings.py holds them (from_settings), tests say what they build.
    home: str
    start_date: str
    seed: int
    users: int
    content_per_day: int
    corpora_dir: str = ""
    # A simulated change in the world from a given day (TRUSTLAKE_WORLD_SHIFT*); "" = none.
    world_shift: str = ""
    world_shift_from: str = ""
    world_shift_share: float = SimConfig.world_shift_share

    @classmethod
    def from_settings(cls, settings: Settings) -> LakehouseResource:
        return cls(
            home=str(settings.home),
            corpora_dir=str(settings.corpora) if settings.corpora else "",
            start_date=settings.start_date.isoformat(),
            seed=settings.seed,
            users=settings.users,
            content_per_day=settings.content_per_day,
            world_shift=settings.world_shift,
            world_shift_from=settings.world_shift_from.isoformat() if settings.world_shift_from else "",
            **({"world_shift_share": settings.world_shift_share} if settings.world_shift_share is not None else {}),
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
        )

    def text_pool(self) -> tuple[pl.DataFrame, str]:
        return _text_pool(self.corpora_dir or None, self.seed)

    def labelled_records(self) -> tuple[pl.DataFrame, str]:
        """Every labelled corpus record (not deduplicated): what `reference_labels` lands."""
        return load_records(Path(self.corpora_dir) if self.corpora_dir else None, seed=self.seed)


class TrainingResource(dg.ConfigurableResource):
    """How big the training runs are and the one gate bound a deployment may set (TRUSTLAKE_LIGHTGBM_WORKERS
    and friends). No defaults here: orchestration/settings.py holds them (from_settings); the other gate
    bounds are ml.evaluation.gates.GateConfig's."""

    lightgbm_workers: int
    lightgbm_threads_per_worker: int
    text_epochs: int
    # compact: hashed n-gram wide-and-deep net (CPU default); minilm: fine-tune all-MiniLM-L6-v2
    # (GPU default); auto: minilm when the Ray cluster has a GPU, else compact.
    text_profile: str
    # When the deep text model trains: auto (only when the Ray cluster has a GPU), on, off.
    text_model: str
    gate_min_pr_auc: float
    # Where Ray Train keeps run state and checkpoints (under the home); a multi-node cluster needs
    # a path every node reaches.
    ray_storage_path: str
    text_cpus_per_worker: int = 2

    @classmethod
    def from_settings(cls, settings: Settings) -> TrainingResource:
        return cls(
            lightgbm_workers=settings.lightgbm_workers,
            lightgbm_threads_per_worker=settings.lightgbm_threads,
            text_epochs=settings.text_epochs,
            text_profile=settings.text_profile,
            text_model=settings.text_model,
            gate_min_pr_auc=settings.gate_min_pr_auc,
            ray_storage_path=str(settings.home / "ray"),
        )

    def ray_storage(self) -> Path:
        path = Path(self.ray_storage_path)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def gates(self):
        """The promotion gates' bounds (a candidate failing any is never promoted)."""
        from ml.evaluation.gates import GateConfig

        return GateConfig(min_pr_auc=self.gate_min_pr_auc)


class MonitoringResource(dg.ConfigurableResource):
    """When monitoring warns and fails, and when retraining is due (TRUSTLAKE_DRIFT_PSI_WARN and friends;
    the defaults are ml.monitoring.MonitoringThresholds')."""

    psi_warn: float = MonitoringThresholds.psi_warn
    psi_fail: float = MonitoringThresholds.psi_fail
    precision_drop_warn: float = MonitoringThresholds.precision_drop_warn
    precision_drop_fail: float = MonitoringThresholds.precision_drop_fail
    prevalence_gap_warn: float = MonitoringThresholds.prevalence_gap_warn
    prevalence_gap_fail: float = MonitoringThresholds.prevalence_gap_fail
    retrain_min_new_labels: int = MonitoringThresholds.retrain_min_new_labels
    min_rows: int = MonitoringThresholds.min_rows
    min_labelled: int = MonitoringThresholds.min_labelled
    min_audited: int = MonitoringThresholds.min_audited

    @classmethod
    def from_settings(cls, settings: Settings) -> MonitoringResource:
        return cls(**asdict(settings.monitoring))

    def thresholds(self) -> MonitoringThresholds:
        return MonitoringThresholds(**{f.name: getattr(self, f.name) for f in fields(MonitoringThresholds)})
