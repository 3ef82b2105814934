"""Shared fixtures: a text pool, small simulator configs, and one real end-to-end run."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from datetime import date
from pathlib import Path

import pytest

# The test process (and the definitions it loads in process) never sees a developer's home: it gets
# a fresh, unpinned one, so its daily partitions run from today - TRUSTLAKE_DAYS to yesterday.
_TEST_HOME = tempfile.mkdtemp(prefix="trustlake-test-home-")
atexit.register(shutil.rmtree, _TEST_HOME, True)
os.environ["TRUSTLAKE_HOME"] = _TEST_HOME
os.environ.pop("TRUSTLAKE_START_DATE", None)
os.environ.pop("DAGSTER_HOME", None)

from ml.corpora import load_text_pool  # noqa: E402
from ml.simulator import SimConfig  # noqa: E402
from orchestration.settings import DEFAULT_CORPORA, PROJECT_ROOT, Settings  # noqa: E402

HAS_CORPORA = DEFAULT_CORPORA.is_dir()
E2E_DAYS = 12
# 12 small days give a test split with few hate-speech labels (PR-AUC near 0.2), so the
# end-to-end run lowers the min-PR-AUC gate; tests/test_deployment.py covers the gates.
# TRUSTLAKE_DAYS makes the window exactly those days: pinned start .. yesterday.
E2E_ENV = {
    "TRUSTLAKE_USERS": "1500",
    "TRUSTLAKE_CONTENT_PER_DAY": "800",
    "TRUSTLAKE_GATE_MIN_PR_AUC": "0.1",
    "TRUSTLAKE_DAYS": str(E2E_DAYS),
}


def pytest_collection_modifyitems(config, items) -> None:
    """Unit tests apart from end-to-end ones: `pytest -m unit` (seconds) or `pytest -m e2e` (minutes);
    `make test` runs both. A test is e2e when marked so or when it reads the real run's home."""
    for item in items:
        if "e2e_home" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.e2e)
        if not item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.unit)


def first_day(home: Path) -> date:
    """The first simulated day a home pinned (its first daily partition)."""
    return Settings.from_env({"TRUSTLAKE_HOME": str(home)}).start_date


@pytest.fixture(scope="session")
def pool():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame, _ = load_text_pool(DEFAULT_CORPORA if HAS_CORPORA else None)
    return frame


@pytest.fixture(scope="session")
def small_config() -> SimConfig:
    return SimConfig(seed=7, users=800, content_per_day=600)


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


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and every process below it (processes a test started, nothing else)."""
    import signal

    from tests.helpers import descendants

    for p in [pid] + [d for d, _ in descendants(pid)]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="session")
def e2e_home(tmp_path_factory) -> Path:
    """A home directory after a real `trustlake run` (Dagster + dbt + Ray) over its whole window:
    E2E_DAYS days ending yesterday."""
    home = tmp_path_factory.mktemp("trustlake-home")
    result = run_cli(home, "run", timeout=2400)
    assert result.returncode == 0, f"trustlake run failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return home


def labelled_training_frame(pool, seed: int, days: int, rows: int, qa_every: int = 0):
    """A training set built by the real feature code, labelled with the simulator's truth.

    Test data only: the pipeline itself never reads ground truth. Every `qa_every`-th row is
    marked as a QA-audit label so evaluation has a gold subset.
    """
    from datetime import timedelta

    import polars as pl

    from ml.features.build import author_features, content_features, network_features
    from ml.simulator import simulate_days
    from ml.text import eval_bucket
    from ml.training.dataset import build_training_set

    config = SimConfig(seed=seed, users=900, content_per_day=500)
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
    )
    return frame, raw["users"]
