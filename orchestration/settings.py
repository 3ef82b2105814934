"""Configuration from the environment, read in this one place and passed down as resources.

Reading settings never writes anything. The one piece of state they depend on is the platform's
first simulated day: it is pinned in `<home>/platform.json` by the first `trustlake prepare` or
`trustlake run` (`prepare_home`), so the daily partitions a code server, a run worker and the CLI
see are the same whatever day each of them starts on. Until it is pinned, the first day is
`today - TRUSTLAKE_DAYS` (UTC), so the simulated window ends yesterday, the last complete day.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from ml.evaluation.gates import GateConfig
from ml.lake import write_text_atomic
from ml.monitoring import MonitoringThresholds

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPORA = PROJECT_ROOT.parent / "shared" / "data" / "corpora"
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
WORKSPACE_FILE = PROJECT_ROOT / "workspace.yaml"
PLATFORM_FILE = "platform.json"
DEFAULT_DAYS = 30
# Dagster execution on the 2-core default machine: steps of one run at once (multiprocess
# executor), runs at once (the daemon's run queue). DuckDB writers are serialised by the pool anyway.
DEFAULT_MAX_CONCURRENT_STEPS = 2
DEFAULT_MAX_CONCURRENT_RUNS = 2


def last_complete_day(now: datetime | None = None) -> date:
    """Yesterday in UTC: the last day a daily partition exists for (partitions end_offset=0)."""
    return (now or datetime.now(UTC)).astimezone(UTC).date() - timedelta(days=1)


@dataclass(frozen=True)
class Settings:
    home: Path
    corpora: Path | None
    start_date: date  # first simulated day = first daily partition (see the module docstring)
    start_date_source: str  # "TRUSTLAKE_START_DATE", "pinned" or "default" (not pinned yet)
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
    text_model: str  # when the deep text model trains: auto (a GPU), on, off (ml.training.text_model)
    # Dagster execution: steps of one run at once (multiprocess executor), runs at once (run queue).
    max_concurrent_steps: int
    max_concurrent_runs: int
    # Limits of `trustlake serve`; None keeps the service's own default (ml.scoring.serving.ServingLimits).
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

    @property
    def platform_file(self) -> Path:
        return self.home / PLATFORM_FILE

    @property
    def last_day(self) -> date:
        """The simulated window's last day: yesterday (UTC)."""
        return last_complete_day()

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("TRUSTLAKE_HOME", PROJECT_ROOT / ".trustlake")).expanduser().resolve()
        corpora_env = env.get("TRUSTLAKE_CORPORA")
        if corpora_env is not None:
            corpora = Path(corpora_env).expanduser() if corpora_env else None
        else:
            corpora = DEFAULT_CORPORA if DEFAULT_CORPORA.is_dir() else None
        days = int(env.get("TRUSTLAKE_DAYS", DEFAULT_DAYS))
        start, source = _start_date(env.get("TRUSTLAKE_START_DATE", "").strip(), home / PLATFORM_FILE, days)
        return cls(
            home=home,
            corpora=corpora,
            start_date=start,
            start_date_source=source,
            days=days,
            seed=int(env.get("TRUSTLAKE_SEED", "42")),
            users=int(env.get("TRUSTLAKE_USERS", "4000")),
            content_per_day=int(env.get("TRUSTLAKE_CONTENT_PER_DAY", "2000")),
            ray_address=env.get("RAY_ADDRESS") or None,
            ray_cpus=int(env.get("TRUSTLAKE_RAY_CPUS", str(os.cpu_count() or 2))),
            lightgbm_workers=int(env.get("TRUSTLAKE_LIGHTGBM_WORKERS", "1")),
            lightgbm_threads=int(env.get("TRUSTLAKE_LIGHTGBM_THREADS", "2")),
            text_epochs=int(env.get("TRUSTLAKE_TEXT_EPOCHS", "3")),
            gate_min_pr_auc=float(env.get("TRUSTLAKE_GATE_MIN_PR_AUC", GateConfig.min_pr_auc)),
            text_profile=env.get("TRUSTLAKE_TEXT_PROFILE", "auto"),
            text_model=env.get("TRUSTLAKE_TEXT_MODEL", "auto"),
            max_concurrent_steps=int(env.get("TRUSTLAKE_MAX_CONCURRENT_STEPS", DEFAULT_MAX_CONCURRENT_STEPS)),
            max_concurrent_runs=int(env.get("TRUSTLAKE_MAX_CONCURRENT_RUNS", DEFAULT_MAX_CONCURRENT_RUNS)),
            serve_max_body_bytes=_optional(env, "TRUSTLAKE_SERVE_MAX_BODY_BYTES", int),
            serve_body_timeout_s=_optional(env, "TRUSTLAKE_SERVE_BODY_TIMEOUT_S", float),
            serve_max_in_flight=_optional(env, "TRUSTLAKE_SERVE_MAX_IN_FLIGHT", int),
            serve_scoring_threads=_optional(env, "TRUSTLAKE_SERVE_SCORING_THREADS", int),
            serve_keep_alive_s=_optional(env, "TRUSTLAKE_SERVE_KEEP_ALIVE_S", float),
            **_world_shift(env),
            monitoring=MonitoringThresholds(
                **{
                    name: value
                    for name, (var, kind) in MONITORING_ENV.items()
                    if (value := _optional(env, var, kind)) is not None
                }
            ),
        )


def _start_date(override: str, pin: Path, days: int) -> tuple[date, str]:
    """TRUSTLAKE_START_DATE, else the pinned first day, else today - days (not yet pinned)."""
    if override:
        try:
            return date.fromisoformat(override), "TRUSTLAKE_START_DATE"
        except ValueError:
            raise ValueError(f"TRUSTLAKE_START_DATE={override!r} is not a date (YYYY-MM-DD)") from None
    try:
        pinned = json.loads(pin.read_text())["start_date"]
    except FileNotFoundError:
        return last_complete_day() - timedelta(days=days - 1), "default"
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{pin} is damaged ({exc}); it records the platform's first day as "
            '{"start_date": "YYYY-MM-DD"}: fix it, or delete it to pin today - TRUSTLAKE_DAYS again'
        ) from None
    return date.fromisoformat(pinned), "pinned"


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
        raise ValueError(
            f"TRUSTLAKE_WORLD_SHIFT={kind} needs TRUSTLAKE_WORLD_SHIFT_FROM, the day it starts (YYYY-MM-DD)"
        )
    try:
        first = date.fromisoformat(start) if start else None
    except ValueError:
        raise ValueError(f"TRUSTLAKE_WORLD_SHIFT_FROM={start!r} is not a day (YYYY-MM-DD)") from None
    return {
        "world_shift": kind,
        "world_shift_from": first if kind else None,
        "world_shift_share": _optional(env, "TRUSTLAKE_WORLD_SHIFT_SHARE", float),
    }


def _optional(env, name: str, kind: type):
    """`kind(env[name])`, or None when the variable is unset or empty."""
    value = env.get(name, "").strip()
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{name}={value!r} is not a valid {kind.__name__}") from None


# ---------------------------------------------------------------------------------------
# What `trustlake prepare` / `run` / `ui` do before anything loads the definitions
# ---------------------------------------------------------------------------------------
def prepare_home(settings: Settings) -> Settings:
    """Create the home, pin the platform's first day, write the Dagster instance's dagster.yaml.

    Returns the settings as every later process reads them (the start date now pinned).
    """
    settings.dagster_home.mkdir(parents=True, exist_ok=True)
    if not settings.platform_file.exists():
        write_text_atomic(
            settings.platform_file, json.dumps({"start_date": settings.start_date.isoformat()}, indent=2) + "\n"
        )
    instance_yaml = settings.dagster_home / "dagster.yaml"
    wanted = render_instance_yaml(settings.max_concurrent_runs)
    current = instance_yaml.read_text() if instance_yaml.exists() else None
    # A file without the marker was written by a person (Postgres storage, another launcher): keep it.
    if current is None or (current != wanted and current.startswith(INSTANCE_YAML_MARKER)):
        write_text_atomic(instance_yaml, wanted)
    return Settings.from_env({**os.environ, "TRUSTLAKE_HOME": str(settings.home)})


def process_environment(settings: Settings) -> dict[str, str]:
    """Variables the CLI sets for itself and the Dagster processes it starts (webserver, daemon,
    code server, run workers): where the instance lives, and no telemetry."""
    return {
        "DAGSTER_HOME": str(settings.dagster_home),
        "TRUSTLAKE_HOME": str(settings.home),
        "DO_NOT_TRACK": "1",
        "DAGSTER_DISABLE_TELEMETRY": "1",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "RAY_USAGE_STATS_ENABLED": "0",
    }


INSTANCE_YAML_MARKER = "# Written by `trustlake prepare`"


def render_instance_yaml(max_concurrent_runs: int) -> str:
    # Every DuckDB writer runs in the `duckdb` pool; one slot means one writer at a time.
    return f"""\
{INSTANCE_YAML_MARKER} from orchestration/settings.py; remove this line to manage the file yourself.
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: {max_concurrent_runs}
run_monitoring:
  enabled: true
  # A shared 2-core machine can take minutes to start a process that imports torch and dbt.
  start_timeout_seconds: 600
  free_slots_after_run_end_seconds: 60
code_servers:
  local_startup_timeout: 600
"""


INSTANCE_YAML = render_instance_yaml(DEFAULT_MAX_CONCURRENT_RUNS)
