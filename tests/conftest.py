"""Shared fixtures: a text pool, small simulator configs, and one real end-to-end run."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import warnings
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
from ml.world import SimConfig  # noqa: E402

# Shared builders and constants live in tests/helpers.py; the fixtures here use them.
from tests.helpers import DEFAULT_CORPORA, HAS_CORPORA, LANDED_DAYS, BackgroundCli, copy_home, run_cli  # noqa: E402

# The session's end-to-end `trustlake run` (e2e_home), started as soon as the tests are collected when any of
# them reads it: it builds (3-4 minutes) while the tests before the first reader run.
_E2E_RUN: BackgroundCli | None = None


def pytest_collection_modifyitems(config, items) -> None:
    """Unit tests apart from end-to-end ones: `pytest -m unit` (seconds) or `pytest -m e2e` (minutes);
    `make test` runs both. A test is e2e when marked so or when it reads the real run's home."""
    for item in items:
        if "e2e_home" in getattr(item, "fixturenames", ()) and not item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.e2e)
        if not item.get_closest_marker("e2e"):
            item.add_marker(pytest.mark.unit)


def pytest_collection_finish(session) -> None:
    global _E2E_RUN
    wanted = any("e2e_home" in getattr(item, "fixturenames", ()) for item in session.items)
    if wanted and not session.config.option.collectonly:
        _E2E_RUN = BackgroundCli(Path(tempfile.mkdtemp(prefix="trustlake-e2e-")) / "home", "run")


def pytest_sessionfinish(session, exitstatus) -> None:
    """The end-to-end run never outlives the session (an interrupted one is killed), nor does its home."""
    if _E2E_RUN is not None:
        _E2E_RUN.stop()
        shutil.rmtree(_E2E_RUN.home.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def pool():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame, _ = load_text_pool(DEFAULT_CORPORA if HAS_CORPORA else None)
    return frame


@pytest.fixture(scope="session")
def small_config() -> SimConfig:
    return SimConfig(seed=7, users=800, content_per_day=600)


@pytest.fixture(scope="session")
def e2e_home() -> Path:
    """A home directory after a real `trustlake run` (Dagster + dbt + Ray) over its whole window:
    E2E_DAYS days ending yesterday. Started when the session's tests were collected (_E2E_RUN)."""
    assert _E2E_RUN is not None, "no e2e run was started: pytest_collection_finish saw no test reading e2e_home"
    result = _E2E_RUN.result(timeout=2400)
    assert result.returncode == 0, f"trustlake run failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return _E2E_RUN.home


@pytest.fixture(scope="session")
def landed_home_template(tmp_path_factory) -> Path:
    """A home after a real `trustlake run --skip-training` over its first LANDED_DAYS days (landed,
    modelled by dbt, no model): built once per session. Never changed: a test that changes a home
    takes its own copy (`landed_home`, or `copy_home` for a module's)."""
    home = tmp_path_factory.mktemp("landed-template") / "home"
    result = run_cli(home, "run", "--skip-training", "--days", str(LANDED_DAYS))
    assert result.returncode == 0, f"trustlake run failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return home


@pytest.fixture
def landed_home(landed_home_template, tmp_path) -> Path:
    """This test's own copy of the landed home."""
    return copy_home(landed_home_template, tmp_path / "home")
