"""Shared fixtures: a text pool, small simulator configs, and one real end-to-end run."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from ml.corpora import load_text_pool
from ml.simulator import SimConfig
from orchestration.settings import DEFAULT_CORPORA, PROJECT_ROOT

HAS_CORPORA = DEFAULT_CORPORA.is_dir()
E2E_DAYS = 12
# 12 small days give a test split with few hate-speech labels (PR-AUC near 0.2), so the
# end-to-end run lowers the min-PR-AUC gate; tests/test_deployment.py covers the gates.
E2E_ENV = {"TRUSTLAKE_USERS": "1500", "TRUSTLAKE_CONTENT_PER_DAY": "800", "TRUSTLAKE_GATE_MIN_PR_AUC": "0.1"}


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


def run_cli(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("trustlake")
    return subprocess.run([str(exe), *args], env=trustlake_env(home, **extra), capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=900)


@pytest.fixture(scope="session")
def e2e_home(tmp_path_factory) -> Path:
    """A home directory after a real `trustlake run` (Dagster + dbt) over E2E_DAYS days."""
    home = tmp_path_factory.mktemp("trustlake-home")
    result = run_cli(home, "run", "--days", str(E2E_DAYS))
    assert result.returncode == 0, f"trustlake run failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return home
