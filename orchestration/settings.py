"""Configuration from the environment, read in this one place and passed down as resources."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from ml.monitoring import MonitoringThresholds

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPORA = PROJECT_ROOT.parent / "shared" / "data" / "corpora"
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"


@dataclass(frozen=True)
class Settings:
    home: Path
    corpora: Path | None
    start_date: date
    days: int
    seed: int
    users: int
    content_per_day: int
    ray_address: str | None
    ray_cpus: int
    lightgbm_workers: int
    lightgbm_threads: int
    text_epochs: int
    gate_min_pr_auc: float
    text_profile: str
    # Limits of `trustlake serve`; None keeps the service's own default (ml.serving.ServingLimits).
    serve_max_body_bytes: int | None = None
    serve_body_timeout_s: float | None = None
    serve_max_in_flight: int | None = None
    serve_scoring_threads: int | None = None
    serve_keep_alive_s: float | None = None
    # A simulated change in the world (ml.simulator.SimConfig.world_shift), off unless set.
    world_shift: str = ""
    world_shift_from: date | None = None
    world_shift_share: float | None = None  # None keeps the simulator's default
    monitoring: MonitoringThresholds = field(default_factory=MonitoringThresholds)

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        home = Path(env.get("TRUSTLAKE_HOME", PROJECT_ROOT / ".trustlake")).expanduser().resolve()
        corpora_env = env.get("TRUSTLAKE_CORPORA")
        if corpora_env is not None:
            corpora = Path(corpora_env).expanduser() if corpora_env else None
        else:
            corpora = DEFAULT_CORPORA if DEFAULT_CORPORA.is_dir() else None
        return cls(
            home=home,
            corpora=corpora,
            start_date=date.fromisoformat(env.get("TRUSTLAKE_START_DATE", "2026-10-01")),
            days=int(env.get("TRUSTLAKE_DAYS", "30")),
            seed=int(env.get("TRUSTLAKE_SEED", "42")),
            users=int(env.get("TRUSTLAKE_USERS", "4000")),
            content_per_day=int(env.get("TRUSTLAKE_CONTENT_PER_DAY", "2000")),
            ray_address=env.get("RAY_ADDRESS") or None,
            ray_cpus=int(env.get("TRUSTLAKE_RAY_CPUS", str(os.cpu_count() or 2))),
            lightgbm_workers=int(env.get("TRUSTLAKE_LIGHTGBM_WORKERS", "1")),
            lightgbm_threads=int(env.get("TRUSTLAKE_LIGHTGBM_THREADS", "2")),
            text_epochs=int(env.get("TRUSTLAKE_TEXT_EPOCHS", "3")),
            gate_min_pr_auc=float(env.get("TRUSTLAKE_GATE_MIN_PR_AUC", "0.3")),
            text_profile=env.get("TRUSTLAKE_TEXT_PROFILE", "auto"),
            serve_max_body_bytes=_optional(env, "TRUSTLAKE_SERVE_MAX_BODY_BYTES", int),
            serve_body_timeout_s=_optional(env, "TRUSTLAKE_SERVE_BODY_TIMEOUT_S", float),
            serve_max_in_flight=_optional(env, "TRUSTLAKE_SERVE_MAX_IN_FLIGHT", int),
            serve_scoring_threads=_optional(env, "TRUSTLAKE_SERVE_SCORING_THREADS", int),
            serve_keep_alive_s=_optional(env, "TRUSTLAKE_SERVE_KEEP_ALIVE_S", float),
            **_world_shift(env),
            monitoring=MonitoringThresholds(**{name: value for name, (var, kind) in MONITORING_ENV.items()
                                                if (value := _optional(env, var, kind)) is not None}),
        )


# Monitoring thresholds (ml.monitoring.MonitoringThresholds holds the defaults) and their variables.
MONITORING_ENV: dict[str, tuple[str, type]] = {
    "psi_warn": ("TRUSTLAKE_DRIFT_PSI_WARN", float),
    "psi_fail": ("TRUSTLAKE_DRIFT_PSI_FAIL", float),
    "precision_drop_warn": ("TRUSTLAKE_PRECISION_DROP_WARN", float),
    "precision_drop_fail": ("TRUSTLAKE_PRECISION_DROP_FAIL", float),
    "prevalence_gap_warn": ("TRUSTLAKE_PREVALENCE_GAP_WARN", float),
    "prevalence_gap_fail": ("TRUSTLAKE_PREVALENCE_GAP_FAIL", float),
    "retrain_min_new_labels": ("TRUSTLAKE_RETRAIN_MIN_NEW_LABELS", int),
}


def _world_shift(env) -> dict:
    """TRUSTLAKE_WORLD_SHIFT (spam_campaign | slang), _FROM (an ISO day, required with it) and _SHARE."""
    kind = env.get("TRUSTLAKE_WORLD_SHIFT", "").strip()
    start = env.get("TRUSTLAKE_WORLD_SHIFT_FROM", "").strip()
    if kind and not start:
        raise ValueError(f"TRUSTLAKE_WORLD_SHIFT={kind} needs TRUSTLAKE_WORLD_SHIFT_FROM, the day it starts "
                         "(YYYY-MM-DD)")
    try:
        first = date.fromisoformat(start) if start else None
    except ValueError:
        raise ValueError(f"TRUSTLAKE_WORLD_SHIFT_FROM={start!r} is not a day (YYYY-MM-DD)") from None
    return {"world_shift": kind, "world_shift_from": first if kind else None,
            "world_shift_share": _optional(env, "TRUSTLAKE_WORLD_SHIFT_SHARE", float)}


def _optional(env, name: str, kind: type):
    """`kind(env[name])`, or None when the variable is unset or empty."""
    value = env.get(name, "").strip()
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a valid {kind.__name__}") from None


def prepare_environment(settings: Settings) -> None:
    """Point Dagster and dbt at the home directory and switch off their network telemetry."""
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)
    os.environ.setdefault("TRUSTLAKE_HOME", str(settings.home))
    os.environ["DO_NOT_TRACK"] = "1"
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    instance_yaml = settings.dagster_home / "dagster.yaml"
    wanted = INSTANCE_YAML
    if not instance_yaml.exists() or instance_yaml.read_text() != wanted:
        instance_yaml.write_text(wanted)


# Every DuckDB writer runs in the `duckdb` pool; one slot means one writer at a time.
INSTANCE_YAML = """\
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
"""
