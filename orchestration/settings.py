"""Configuration from the environment, read in this one place and passed down as resources.

Every knob is a field of a frozen dataclass that states its default once: the library's own
(`SimConfig`, `LightGBMParams`, `TextModelParams`, `GateConfig`, `MonitoringThresholds`,
`LaunchBounds`, `ServingLimits`, `ReplicaConfig`), or `Settings` itself for what only orchestration knows. A `Section`
(orchestration/sections.py) names the fields of one dataclass that a deployment may set, and the
variable that sets a field is derived from its name, `TRUSTLAKE_<PREFIX>_<FIELD>`:
`TextModelParams.epochs` is `TRUSTLAKE_TEXT_EPOCHS`. A value is parsed by the field's type, and a bad
one is one line naming its variable. The README's configuration
table is generated from the sections (`python -m tests.test_settings`), so it cannot drift from them.

Reading settings never writes anything. The one piece of state they depend on is the platform's
first simulated day: it is pinned in `<home>/platform.json` by the first `trustlake prepare` or
`trustlake run` (`prepare_home`), so the daily partitions a code server, a run worker and the CLI
see are the same whatever day each of them starts on. Until it is pinned, the first day is
`today - TRUSTLAKE_DAYS` (UTC), so the simulated window ends yesterday, the last complete day.
"""

from __future__ import annotations

import json
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from pathlib import Path

from ml.lake import write_text_atomic
from orchestration.sections import Section

if typing.TYPE_CHECKING:  # the sections import their classes when read: see `Section.lazy`
    from ml.evaluation.gates import GateConfig
    from ml.launch.bounds import LaunchBounds
    from ml.monitoring import MonitoringThresholds
    from ml.scoring.replicas import ReplicaConfig
    from ml.scoring.serving import ServingLimits
    from ml.training.lightgbm_model import LightGBMParams
    from ml.training.text_model_params import TextModelParams
    from ml.world import SimConfig

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPORA = PROJECT_ROOT.parent / "shared" / "data" / "corpora"
WORKSPACE_FILE = PROJECT_ROOT / "workspace.yaml"
PLATFORM_FILE = "platform.json"


def last_complete_day(now: datetime | None = None) -> date:
    """Yesterday in UTC: the last day a daily partition exists for (partitions end_offset=0)."""
    return (now or datetime.now(UTC)).astimezone(UTC).date() - timedelta(days=1)


def machine_cpus() -> int:
    """the machine's CPUs"""
    return os.cpu_count() or 2


# What `Settings` itself holds (orchestration's own knobs), then each library dataclass, in README order.
EXECUTION = Section(
    "orchestration.settings:Settings",
    "",
    {
        "days": "the window's length when the home is first prepared: its first day is pinned as today - "
        "`TRUSTLAKE_DAYS` (UTC) in `<home>/platform.json`, and the window ends yesterday",
        "ray_cpus": "cores of the local Ray cluster (when `RAY_ADDRESS` is unset)",
        "text_profile": "`compact` (CPU), `minilm` (fine-tune all-MiniLM-L6-v2), `auto` = minilm when Ray sees a GPU",
        "text_model_training": "when the deep text model trains: `auto` (only when Ray sees a GPU), `on` (on the CPU too, "
        "about 4 minutes on two cores), `off`",
        "max_concurrent_steps": "steps of one run at once (the multiprocess executor)",
        "max_concurrent_runs": "runs at once (the daemon's run queue, in `dagster.yaml`)",
        "landing_poll_seconds": "seconds between the landing sensor's looks at `<home>/lake/landing/<table>/`",
    },
)
SIMULATOR = Section(
    "ml.simulator:SimConfig",
    "",
    {
        "seed": "simulator seed: the same seed and days give the same platform",
        "users": "accounts of the simulated platform",
        "content_per_day": "posts, comments and messages a day",
        "world_shift": "shift the simulated world from a day: `spam_campaign` or `slang` "
        "([docs/simulator.md](docs/simulator.md#world-shifts))",
        "world_shift_from": "the day the world shift starts (required with it)",
        "world_shift_share": "share of a day's posts the world shift adds or changes",
        "image_share": "share of an ordinary account's posts that are images (trolls twice, rings four times; "
        "OCR reads each at ~0.5-1 s, [docs/simulator.md](docs/simulator.md))",
    },
)
LIGHTGBM = Section(
    "ml.training.lightgbm_model:LightGBMParams",
    "LIGHTGBM",
    {"num_workers": "Ray LightGBM workers", "threads_per_worker": "threads of each Ray LightGBM worker"},
    formerly={"TRUSTLAKE_LIGHTGBM_WORKERS": "num_workers", "TRUSTLAKE_LIGHTGBM_THREADS": "threads_per_worker"},
    lazy=True,
)
TEXT_MODEL = Section(
    "ml.training.text_model_params:TextModelParams",
    "TEXT",
    {"epochs": "compact text model epochs (the best validation epoch is kept)"},
    lazy=True,
)
GATES = Section(
    "ml.evaluation.gates:GateConfig",
    "GATE",
    {
        "min_pr_auc": "minimum per-policy PR-AUC a candidate needs to be promoted (text-only held-out for "
        "classifiers, simulated test split for the pair)",
        "min_baseline_margin": "text-only held-out macro PR-AUC by which a content classifier must beat the TF-IDF "
        "baseline (negative: how far it may trail)",
        "max_regression": "macro PR-AUC a candidate may lose against the champion on the same rows",
        "max_calibration_error": "worst policy's expected calibration error a candidate may have",
        "max_slice_regression": "macro ROC-AUC the pair may lose against its classifier alone on any slice",
        "max_source_regression": "leave-one-source-out non-inferiority margin (macro PR-AUC below the baseline "
        "recipe, at 95% confidence)",
        "pair_gain_confidence": "confidence of the paired-bootstrap interval of the pair's gain over its classifier "
        "alone whose lower end must be above 0, overall and on campaign items, for the pair to be deployed; "
        "otherwise the classifier is deployed alone (`0`: not required)",
    },
)
MONITORING = Section(
    "ml.monitoring:MonitoringThresholds",
    "",
    {
        "drift_psi_warn": "PSI of a day's scores or features against the champion's reference that warns "
        "`model_drift`'s checks",
        "drift_psi_fail": "PSI that fails them; past it the retraining sensor requests `retrain_job`",
        "precision_drop_warn": "promised minus live precision of auto-removals that warns `live_precision_drop`",
        "precision_drop_fail": "promised minus live precision that fails it",
        "prevalence_gap_warn": "move of predicted minus QA-estimated prevalence that warns "
        "`predicted_vs_qa_prevalence`",
        "prevalence_gap_fail": "move of the prevalence gap that fails it",
        "retrain_min_new_labels": "new platform labels since the champion's training set that request a retraining",
    },
)
LAUNCH = Section(
    "ml.launch.bounds:LaunchBounds",
    "LAUNCH",
    {
        "backtest_days": "last days of platform content a candidate's launch impact is backtested on",
        "max_removal_change": "change of a policy's daily auto-removals (relative to the champion's, either way) "
        "past which a launch is high risk: it waits for `trustlake models approve` and runs as the shadow meanwhile",
        "max_review_change": "the same bound for a policy's daily reviews",
        "min_daily_change": "a change of fewer items a day than this never makes a launch high risk",
        "review_seconds": "a moderator's seconds per review: the review hours a queue change implies",
        "volume_tolerance": "after a promotion, how far (relative) a day's volumes may part from the launch's "
        "prediction before `volumes_match_launch_prediction` fails the run",
    },
)
SERVING = Section(
    "ml.scoring.serving:ServingLimits",
    "SERVE",
    {
        "max_body_bytes": "`trustlake serve`: larger request bodies get 413 (`--max-body-bytes`)",
        "body_timeout_s": "`trustlake serve`: seconds for a whole body to arrive, else 408 (`--body-timeout`)",
        "max_in_flight": "`trustlake serve`: requests at once; more get 503 with Retry-After (`--max-in-flight`)",
        "scoring_threads": "`trustlake serve`: requests scored at once (`--scoring-threads`)",
        "batch_max_items": "`trustlake serve`: items scored together in one micro-batch at most",
        "batch_wait_ms": "`trustlake serve`: milliseconds a request waits for others to be scored with it, at most",
        "image_threads": "`trustlake serve`: threads reading request images (OCR, PDQ), apart from text scoring",
        "image_max_waiting": "`trustlake serve`: images queued or being read at once; more get 503 with Retry-After",
        "image_timeout_s": "`trustlake serve`: seconds to read a request's images, else 504",
        "image_max_bytes": "`trustlake serve`: an image's size in bytes at most, else 413",
        "keep_alive_s": "`trustlake serve`: idle keep-alive seconds (`--keep-alive`)",
    },
    lazy=True,
)
REPLICAS = Section(
    "ml.scoring.replicas:ReplicaConfig",
    "SERVE",
    {
        "num_replicas": "`trustlake serve --ray`: replicas of the service Ray Serve runs (`--replicas`)",
        "cpus_per_replica": "`trustlake serve --ray`: Ray CPUs each replica reserves; its scoring threads are "
        "this, rounded up, unless `TRUSTLAKE_SERVE_SCORING_THREADS` is set",
        "max_ongoing_requests": "`trustlake serve --ray`: requests Ray Serve hands one replica at once (unset: its "
        "max in flight, so the replica sheds its own load with 503)",
    },
    lazy=True,
)
SECTIONS: dict[str, Section] = {
    "execution": EXECUTION,
    "simulator": SIMULATOR,
    "lightgbm": LIGHTGBM,
    "text_model": TEXT_MODEL,
    "gates": GATES,
    "monitoring": MONITORING,
    "launch": LAUNCH,
    "serving": SERVING,
    "replicas": REPLICAS,
}
# Variables read outside the sections: (default, meaning) as the README shows them.
OTHER_VARIABLES: dict[str, tuple[str, str]] = {
    "TRUSTLAKE_HOME": ("`./.trustlake`", "all state"),
    "TRUSTLAKE_CORPORA": (
        "`../shared/data/corpora` when present",
        "labelled corpora directory; empty or missing: built-in template texts, with a loud warning",
    ),
    "TRUSTLAKE_START_DATE": (
        "unset (the pinned day)",
        "first simulated day (first partition), overriding the pinned one",
    ),
    "RAY_ADDRESS": (
        "unset (local Ray on loopback, `TRUSTLAKE_RAY_CPUS` cores)",
        "running Ray cluster the training steps connect to (dagster-ray resource)",
    ),
}


@dataclass(frozen=True)
class Settings:
    """Everything a deployment configures. The library's dataclasses are built when first asked for
    (`simulator`, `gates`, ...). `from_env` parses every variable at once, so a value of the wrong type
    fails there, and builds the light dataclasses, so a value they refuse fails there too."""

    home: Path
    corpora: Path | None
    start_date: date  # first simulated day = first daily partition (see the module docstring)
    start_date_source: str  # "TRUSTLAKE_START_DATE", "pinned" or "default" (not pinned yet)
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)  # what sections read
    ray_address: str | None = None  # RAY_ADDRESS: Ray's own variable, read by Ray's tools too
    days: int = 30
    ray_cpus: int = field(default_factory=machine_cpus)
    text_profile: str = "auto"
    text_model_training: str = "auto"  # ml.training.text_model.why_not_trained
    # Dagster execution on the 2-core default machine: steps of one run at once (multiprocess executor),
    # runs at once (the daemon's run queue). DuckDB writers are serialised by the pool anyway.
    max_concurrent_steps: int = 2
    max_concurrent_runs: int = 2
    landing_poll_seconds: int = 30  # orchestration/sensors/landing.py

    def __post_init__(self) -> None:
        for name in ("days", "ray_cpus", "max_concurrent_steps", "max_concurrent_runs", "landing_poll_seconds"):
            value = getattr(self, name)
            if value < 1:
                variable = EXECUTION.variables(name)[0]
                raise ValueError(f"{variable}={value} must be at least 1")

    @cached_property
    def simulator(self) -> SimConfig:
        return SIMULATOR.read(self.environ, start_date=self.start_date)

    @cached_property
    def lightgbm(self) -> LightGBMParams:
        return LIGHTGBM.read(self.environ)

    @cached_property
    def text_model(self) -> TextModelParams:
        return TEXT_MODEL.read(self.environ)

    @cached_property
    def gates(self) -> GateConfig:
        return GATES.read(self.environ)

    @cached_property
    def monitoring(self) -> MonitoringThresholds:
        return MONITORING.read(self.environ)

    @cached_property
    def launch(self) -> LaunchBounds:
        return LAUNCH.read(self.environ)

    @cached_property
    def serving(self) -> ServingLimits:
        return SERVING.read(self.environ)

    @cached_property
    def replicas(self) -> ReplicaConfig:
        return REPLICAS.read(self.environ)

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
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = dict(os.environ if environ is None else environ)
        home = Path(env.get("TRUSTLAKE_HOME", PROJECT_ROOT / ".trustlake")).expanduser().resolve()
        corpora_env = env.get("TRUSTLAKE_CORPORA")
        if corpora_env is not None:
            corpora = Path(corpora_env).expanduser() if corpora_env else None
        else:
            corpora = DEFAULT_CORPORA if DEFAULT_CORPORA.is_dir() else None
        own = EXECUTION.values(env)
        start, source = _start_date(
            env.get("TRUSTLAKE_START_DATE", "").strip(), home / PLATFORM_FILE, own.get("days", cls.days)
        )
        settings = cls(
            home=home,
            corpora=corpora,
            start_date=start,
            start_date_source=source,
            environ={k: v for k, v in env.items() if k.startswith("TRUSTLAKE_")},
            ray_address=env.get("RAY_ADDRESS") or None,
            **own,
        )
        for name, section in SECTIONS.items():
            section.values(env)
            if name != "execution" and not section.lazy:
                getattr(settings, name)
        return settings


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


def configuration_table() -> str:
    """The README's table of every variable trustlake reads, with its default and meaning."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    rows += [f"| `{variable}` | {default} | {meaning} |" for variable, (default, meaning) in OTHER_VARIABLES.items()]
    for section in SECTIONS.values():
        defaults = section.defaults()
        for name, meaning in section.fields.items():
            variable, *former = section.variables(name)
            named = f"`{variable}`" + "".join(f" (formerly `{old}`, still read)" for old in former)
            rows.append(f"| {named} | {defaults[name]} | {meaning} |")
    return "\n".join(rows) + "\n"


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


INSTANCE_YAML = render_instance_yaml(Settings.max_concurrent_runs)
