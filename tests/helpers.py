"""Builders shared by several test modules (fixtures stay in conftest.py)."""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import polars as pl
import psutil

from ml.corpora import builtin_records
from ml.evaluation.evaluate import evaluate_text_model
from ml.evaluation.results import ClassifierEvaluation, SetMetrics
from ml.lake import Lake
from ml.reference import land_reference, reference_frame
from ml.registry import Registry, RegistryEntry
from ml.training.artifacts import ModelArtifact
from ml.training.content import BASELINE_RECIPE, CONTENT_CLASSIFIER_RECIPE, fit_text_classifier
from ml.training.dataset import dataset_version
from ml.world import SimConfig
from orchestration.settings import DEFAULT_CORPORA, PROJECT_ROOT, Settings


def registry_entry(
    version: str,
    path: str | Path,
    kind: str = "baseline",
    dataset_version: str = "d",
    params: dict | None = None,
    metrics: dict | None = None,
    operating_points: dict | None = None,
) -> RegistryEntry:
    """A registry entry for `version` whose artifact is at `path` (the registry reads nothing from it)."""
    return RegistryEntry.from_dict(
        {
            "version": version,
            "kind": kind,
            "path": str(path),
            "dataset_version": dataset_version,
            "code_version": "test",
            "params": params or {},
            "metrics": metrics or {},
            "operating_points": operating_points or {},
        }
    )


def land_reference_sets(lake: Lake, per_policy: int = 40) -> None:
    """A small labelled reference set in the lake, as `reference_labels` lands one: dbt's reference
    source reads `lake/reference/*/*.parquet`, so a lake built by hand for a dbt test needs it."""
    land_reference(lake, reference_frame(builtin_records(per_policy=per_policy)))


def text_classifier_candidate(
    frame: pl.DataFrame, models: Path, shuffle_labels: bool = False
) -> tuple[ModelArtifact, ClassifierEvaluation]:
    """A content classifier fitted, evaluated against the baseline and registered as a candidate.

    Its recipe counts every label (no label_issues table here): `CONTENT_CLASSIFIER_RECIPE` with
    the likely-error down-weighting switched off.
    """
    from dataclasses import asdict

    version = dataset_version(frame)
    baseline = fit_text_classifier(frame, version, models, None, BASELINE_RECIPE)
    trained_on = frame
    if shuffle_labels:  # its training labels shuffled; judged, as the baseline, on the true held-out labels
        train = pl.col("split") == "train"
        shuffled = frame.filter(train)["label"].sample(fraction=1.0, shuffle=True, seed=3)
        trained_on = pl.concat([frame.filter(train).with_columns(label=shuffled), frame.filter(~train)])
    artifact = fit_text_classifier(trained_on, version, models, None, CONTENT_CLASSIFIER_RECIPE.ignoring_label_issues())
    ev = evaluate_text_model(artifact, frame, baseline, None, None, run_loso=False)
    Registry(models).register(
        registry_entry(
            artifact.version,
            artifact.path,
            artifact.kind,
            artifact.dataset_version,
            artifact.params,
            {"text_only_macro_pr_auc": ev.text_only.macro_pr_auc},
            {p: asdict(op) for p, op in ev.operating_points.items()},
        )
    )
    return artifact, ev


def small_champion(frame: pl.DataFrame, models: Path) -> ModelArtifact:
    """A registered, promoted content classifier: enough for the scoring CLI and the HTTP service."""
    artifact, _ = text_classifier_candidate(frame, models)
    Registry(models).promote(artifact.version, reason="test champion", actor="test")
    return artifact


def _set(macro: float) -> SetMetrics:
    from ml.evaluation.results import SetMetrics

    return SetMetrics(rows=100, macro_pr_auc=macro, macro_roc_auc=macro, policies={})


def classifier_evaluation(version: str, passed: bool, text_only: float) -> ClassifierEvaluation:
    """A content-classifier evaluation with the figures deployment reads, and one gate."""
    from ml.evaluation.results import GateResult

    return ClassifierEvaluation(
        version=version,
        kind="content_classifier",
        dataset_version="d",
        baseline_version="baseline-x",
        operating_points={},
        text_only=_set(text_only),
        baseline_text_only=_set(0.5),
        qa_gold_text_only=None,
        champion_version=None,
        champion_text_only=None,
        held_out_sources=None,
        gates=(GateResult("beats_baseline_text_only", passed, "", 0.0, 0.0),),
    )


def pair_evaluation(version: str, passed: bool, text_only: float, champion: str | None = None):
    """A pair evaluation that passed (or failed) its gates, evaluated against `champion`."""
    from ml.evaluation.results import GateResult, PairEvaluation

    return PairEvaluation(
        version=version,
        kind="risk_model",
        dataset_version="d",
        content_classifier_version=f"cc-{version}",
        operating_points={},
        test=_set(0.7),
        classifier_alone_test=_set(0.7),
        qa_gold=None,
        slices={},
        champion_version=champion,
        champion_test=_set(0.6) if champion else None,
        classifier=classifier_evaluation(f"cc-{version}", True, text_only),
        gates=(GateResult("min_pr_auc", passed, "", 0.0, 0.0),),
    )


def scam_removals(removed: dict[int, datetime]) -> pl.DataFrame:
    """A decisions table removing each content id of `removed` for scam at its time (campaign tests' rings)."""
    return pl.DataFrame(
        {
            "decision_id": list(range(1, len(removed) + 1)),
            "content_id": list(removed),
            "policy": ["scam"] * len(removed),
            "action": ["remove"] * len(removed),
            "decided_at": list(removed.values()),
        }
    ).with_columns(pl.col("decided_at").cast(pl.Datetime("us")))


def launch_impact_of(
    candidate: str, champion: str | None, removals: tuple[int, int] = (10, 10), days: int = 7, bounds=None
):
    """The launch impact of `candidate` against `champion` judged by `bounds` (default LaunchBounds()): over
    `days` days of 200 spam posts, the champion removes `removals[0]` a day and the candidate `removals[1]`."""
    from datetime import timedelta

    from ml.launch.bounds import LaunchBounds
    from ml.launch.impact import PAIRED_SCHEMA, launch_impact

    champ, cand = removals
    rows = [
        {
            "content_id": d * 1000 + i,
            "day": date(2026, 10, 1) + timedelta(days=d),
            "surface": "post",
            "policy": "spam",
            "champion_action": None if champion is None else "remove" if i < champ else "allow",
            "candidate_action": "remove" if i < cand else "allow",
        }
        for d in range(days)
        for i in range(200)
    ]
    precision = {who: {"spam": 0.9} for who in ("champion", "candidate")}
    paired = pl.DataFrame(rows, schema=PAIRED_SCHEMA)
    return launch_impact(paired, bounds or LaunchBounds(), candidate, champion, "backtest", precision)


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every process below `pid` with its command line: the code server, run workers, step processes, dbt."""
    try:
        below = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for proc in below:
        try:
            out.append((proc.pid, " ".join(proc.cmdline())))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            out.append((proc.pid, ""))  # a zombie, or gone since the listing: no command line to read
    return out


def external_users(n: int, day, first_id: int = 8_000_000_000_000_000_000) -> pl.DataFrame:
    """`n` accounts a partner platform signed up on `day`, with ids the simulator never draws (> 2**62)."""
    from datetime import datetime, timedelta

    from ml.raw.contracts import CONTRACTS

    start = datetime(day.year, day.month, day.day, 9)
    return pl.DataFrame(
        {
            "user_id": [first_id + i for i in range(n)],
            "signup_at": [start + timedelta(minutes=7 * i) for i in range(n)],
            "country": ["GB"] * n,
            "language": ["en"] * n,
            "device_fingerprint": [f"{0xD0000000 + i:016x}" for i in range(n)],
            "ip_fingerprint": [f"{0xE0000000 + i:016x}" for i in range(n)],
            "verified": [i % 2 == 0 for i in range(n)],
            "follower_count": [10 * i for i in range(n)],
        },
        schema=CONTRACTS["users"].columns,
    )


def external_content(authors: list[int], day, first_id: int, hour: int = 12) -> pl.DataFrame:
    """One post per author on `day`, with the platform's text hash, and ids above the simulator's range."""
    from datetime import datetime, timedelta

    from ml.raw.contracts import CONTRACTS
    from ml.text import normalise, text_hash

    start = datetime(day.year, day.month, day.day, hour)
    texts = [
        f"partner post {first_id + i}: the match tonight was great, see you at the stadium" for i in range(len(authors))
    ]
    return pl.DataFrame(
        {
            "content_id": [first_id + i for i in range(len(authors))],
            "author_id": authors,
            "created_at": [start + timedelta(seconds=30 * i) for i in range(len(authors))],
            "surface": ["post", "comment"] * (len(authors) // 2) + ["post"] * (len(authors) % 2),
            "language": ["en"] * len(authors),
            "text": texts,
            "text_hash": [text_hash(normalise(t)) for t in texts],
            "has_link": [False] * len(authors),
            "has_phone": [False] * len(authors),
            "media_type": ["text"] * len(authors),
            "media_sha256": [None] * len(authors),
            "media_path": [None] * len(authors),
        },
        schema=CONTRACTS["content"].columns,
    )


def lakehouse_resource(home, **env: str):
    """The LakehouseResource `trustlake` builds for `home` under the test environment (tests/conftest.py
    E2E_ENV), with `env` (TRUSTLAKE_* variables) on top: every simulator setting from settings.py."""
    from assets.resources import LakehouseResource

    settings = Settings.from_env(trustlake_env(Path(home), **env))
    return LakehouseResource.for_platform(settings.home, settings.corpora, settings.simulator)


def code_location_assets(*keys: str) -> list:
    """The asset definitions holding `keys` (one of each definition's asset keys), built as the code
    location builds them from this process's settings: what a test materializes in process."""
    import dagster as dg

    built = [a for a in _all_assets() if isinstance(a, dg.AssetsDefinition)]
    return [next(a for a in built if dg.AssetKey(key) in a.keys) for key in keys]


@functools.cache
def _all_assets() -> list:
    from orchestration.asset_list import all_assets
    from orchestration.partitions import daily_partitions

    settings = Settings.from_env()
    return all_assets(daily_partitions, settings.gates, settings.monitoring, settings.launch)


HAS_CORPORA = DEFAULT_CORPORA.is_dir()


E2E_DAYS = 12
# 12 small days give a test split with few hate-speech labels (PR-AUC near 0.2), so the
# end-to-end run lowers the min-PR-AUC gate; tests/test_deployment.py covers the gates. Its 76 test items
# (42 of them campaign items) cannot show the pair's gain over its classifier at 95% (measured: -0.066,
# interval -0.194..+0.037), so the run does not require it and reports it; the classifier deployed alone
# is tested through the real evaluation path in tests/test_training.py and by `make run`'s default world.
# Split by near-duplicate family (ml/training/dataset.py), its content classifier and the TF-IDF baseline tie on
# text-only held-out (measured: 0.761 vs 0.763; scam 0.809 vs 0.839, where the exact-hash split had let a
# template's rewordings train: 0.927 vs 0.926 then), so its classifier may trail the baseline by under 0.01; the
# default world keeps the strict gate (its classifier is ahead, 0.772 vs 0.766).
# TRUSTLAKE_DAYS makes the window exactly those days: pinned start .. yesterday.
E2E_ENV = {
    "TRUSTLAKE_USERS": "1500",
    "TRUSTLAKE_CONTENT_PER_DAY": "800",
    "TRUSTLAKE_GATE_MIN_PR_AUC": "0.1",
    "TRUSTLAKE_GATE_PAIR_GAIN_CONFIDENCE": "0",
    "TRUSTLAKE_GATE_MIN_BASELINE_MARGIN": "-0.01",
    "TRUSTLAKE_DAYS": str(E2E_DAYS),
}


# The shared landed home (tests/conftest.py landed_home_template) holds its window's first days.
LANDED_DAYS = 3


def copy_home(source: Path, dest: Path) -> Path:
    """A copy of a home that lives on its own (every path trustlake and Dagster keep is relative to
    the home; Ray's session files are left behind, a copy starts its own cluster)."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("ray"))
    return dest


def first_day(home: Path) -> date:
    """The first simulated day a home pinned (its first daily partition)."""
    return Settings.from_env({"TRUSTLAKE_HOME": str(home)}).start_date


def trustlake_env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **E2E_ENV, "TRUSTLAKE_HOME": str(home)}
    env.pop("DAGSTER_HOME", None)  # the CLI derives it from TRUSTLAKE_HOME
    return {**env, **extra}


def run_cli(home: Path, *args: str, timeout: float = 1200, **extra: str) -> subprocess.CompletedProcess:
    """`trustlake ARGS` in `home`; past `timeout` the command and everything it started (the code
    server, run workers, dbt) are killed, so a stuck run never outlives its test."""
    exe = Path(sys.executable).with_name("trustlake")
    proc = subprocess.Popen(
        [str(exe), *args],
        env=trustlake_env(home, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT_ROOT,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


class BackgroundCli:
    """`trustlake ARGS` in `home`, started now and waited for when a test needs it (`result`), so a long command
    (the session's end-to-end run) runs while other tests do. Its output goes to files beside the home (a full
    pipe never stalls it); `stop` kills it and everything it started if it is still running."""

    def __init__(self, home: Path, *args: str, **extra: str):
        self.home = home
        self._out, self._err = home.parent / "trustlake.out", home.parent / "trustlake.err"
        with open(self._out, "w") as out, open(self._err, "w") as err:
            self.proc = subprocess.Popen(
                [str(Path(sys.executable).with_name("trustlake")), *args],
                env=trustlake_env(home, **extra),
                stdout=out,
                stderr=err,
                cwd=PROJECT_ROOT,
            )

    def result(self, timeout: float) -> subprocess.CompletedProcess:
        """Its outcome, waiting for it up to `timeout` seconds (then it is killed and TimeoutExpired raised)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        return subprocess.CompletedProcess(
            self.proc.args, self.proc.returncode, self._out.read_text(), self._err.read_text()
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            kill_tree(self.proc.pid)
            self.proc.wait()


def free_port() -> int:
    """A TCP port free on the loopback address right now, for a server a test starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and every process below it (processes a test started, nothing else)."""
    import signal

    for p in [pid] + [d for d, _ in descendants(pid)]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def labelled_training_frame(pool, seed: int, days: int, rows: int, qa_every: int = 0):
    """A training set built by the real feature code, labelled with the simulator's truth.

    Test data only: the pipeline itself never reads ground truth. Every `qa_every`-th row is
    marked as a QA-audit label so evaluation has a gold subset.
    """
    from datetime import timedelta

    import polars as pl

    from ml.campaigns.links import text_families, text_signatures
    from ml.features.build import author_features, campaign_features, content_features, network_features
    from ml.matching.text import TextMatchParams
    from ml.simulator import simulate_days
    from ml.text import eval_bucket
    from ml.training.dataset import build_training_set

    # No image posts: their text is a caption until OCR reads the image (the image_text asset), which
    # these text-model tests do not run.
    config = SimConfig(seed=seed, users=900, content_per_day=500, image_share=0.0)
    raw = simulate_days(config, pool, config.start_date, config.start_date + timedelta(days=days - 1))
    content = raw["content"].join(raw["content_truth"].select("content_id", "true_policy"), on="content_id")
    source = (
        pl.when(pl.int_range(pl.len()) % qa_every == 0).then(pl.lit("qa_audit")).otherwise(pl.lit("moderator_decision"))
        if qa_every
        else pl.lit("moderator_decision")
    )
    labels = content.sample(n=rows, seed=seed).select(
        (pl.lit("content:") + pl.col("content_id").cast(pl.String)).alias("label_id"),
        "content_id",
        "author_id",
        "created_at",
        pl.col("created_at").dt.date().alias("created_date"),
        "surface",
        "language",
        "text",
        "text_hash",
        pl.col("text_hash").map_elements(eval_bucket, return_dtype=pl.Int64).alias("eval_bucket"),
        pl.col("true_policy").alias("label"),
        source.alias("label_source"),
        pl.lit("platform").alias("source"),
        pl.lit(1.0).alias("confidence"),
    )
    frame, _ = build_training_set(
        labels,
        content_features(raw["content"]),
        author_features(raw["content"], raw["users"], raw["reports"], raw["decisions"], raw["appeals"]),
        network_features(raw["content"], raw["users"], raw["decisions"]),
        campaign=campaign_features(raw["content"], raw["decisions"], raw["appeals"]),
        families=text_families(text_signatures(labels, None, TextMatchParams()), TextMatchParams()),
    )
    return frame, raw["users"]
