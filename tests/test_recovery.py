"""Recovery without a human: a run whose process died is failed and its pool slot freed by the
next start, abandoned temp files go while live writers' stay, and a run blocked on a pool says
who holds it (and goes on when the holder dies)."""

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster import DagsterEvent, DagsterEventType, DagsterRun, DagsterRunStatus

from ml.lake import Lake, abandoned_temp_files, temp_file_in_use, write_parquet_atomic
from orchestration.dagster_internals import EngineEventData
from orchestration.recovery import PoolWaitWatcher, RunProcess, process_alive, process_started_at, recover
from orchestration.settings import INSTANCE_YAML, PROJECT_ROOT
from tests.helpers import descendants, run_cli, trustlake_env

POOL = "duckdb"


@pytest.fixture
def instance(tmp_path):
    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)  # the pools trustlake configures: limit 1
    with dg.DagsterInstance.from_config(str(home)) as inst:
        yield inst


def started_run(instance, pid: int, recorded_at: float | None = None) -> DagsterRun:
    """A STARTED run whose executor recorded `pid`, as Dagster's in-process executor does."""
    run = instance.add_run(DagsterRun(job_name="ingest_job", run_id=str(uuid.uuid4()), status=DagsterRunStatus.STARTED))
    event = DagsterEvent(
        event_type_value=DagsterEventType.ENGINE_EVENT.value,
        job_name=run.job_name,
        message=f"Executing steps in process (pid: {pid})",
        event_specific_data=EngineEventData.in_process(pid),
    )
    instance.report_dagster_event(event, run_id=run.run_id, timestamp=recorded_at)
    return run


def claim(instance, run: DagsterRun, pool: str = POOL, step: str = "warehouse_models") -> bool:
    storage = instance.event_log_storage
    storage.initialize_concurrency_limit_to_default(pool)
    return storage.claim_concurrency_slot(pool, run.run_id, step).is_claimed


def holders(instance, pool: str = POOL) -> list[str]:
    return [s.run_id for s in instance.event_log_storage.get_concurrency_info(pool).claimed_slots]


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


# ---------------------------------------------------------------------------------------
# Liveness
# ---------------------------------------------------------------------------------------
def test_a_killed_unreaped_child_and_a_reused_pid_count_as_dead():
    me = RunProcess(os.getpid(), time.time())
    assert process_alive(me)
    # An event recorded before this process existed names an earlier owner of the pid.
    assert not process_alive(RunProcess(os.getpid(), process_started_at(os.getpid()) - 3600))
    assert not process_alive(RunProcess(dead_pid(), time.time()))
    child = subprocess.Popen(["sleep", "30"])
    recorded = time.time()
    assert process_alive(RunProcess(child.pid, recorded))
    child.kill()
    time.sleep(0.2)  # a zombie now: killed, not yet reaped
    assert not process_alive(RunProcess(child.pid, recorded))
    child.wait()


# ---------------------------------------------------------------------------------------
# Recovery of runs and slots
# ---------------------------------------------------------------------------------------
def test_recovery_fails_a_dead_run_frees_its_slot_and_leaves_live_runs_alone(instance, tmp_path):
    dead = started_run(instance, dead_pid())
    live = started_run(instance, os.getpid())
    reused = started_run(instance, os.getpid(), recorded_at=process_started_at(os.getpid()) - 86_400)
    ended = started_run(instance, os.getpid())
    assert claim(instance, dead, "duckdb") and claim(instance, live, "gpu") and claim(instance, ended, "lake")
    instance.report_run_failed(ended, "ended without freeing its slot")

    report = recover(instance, Lake(tmp_path))

    assert {r.run_id for r in report.recovered_runs} == {dead.run_id, reused.run_id}
    assert instance.get_run_by_id(dead.run_id).status == DagsterRunStatus.FAILURE
    assert instance.get_run_by_id(live.run_id).status == DagsterRunStatus.STARTED
    assert holders(instance, "duckdb") == [] and holders(instance, "lake") == []
    assert holders(instance, "gpu") == [live.run_id]
    failure = instance.all_logs(dead.run_id, of_type=DagsterEventType.RUN_FAILURE)[-1]
    assert "is gone" in failure.dagster_event.message and "pool duckdb freed" in failure.dagster_event.message
    lines = "\n".join(report.lines())
    assert f"recovered run {dead.run_id}" in lines and "'duckdb'" in lines
    assert f"freed pool 'lake' held by run {ended.run_id}, which already ended (FAILURE)" in lines
    assert f"pool 'gpu' is held by run {live.run_id}" in lines and f"process {os.getpid()} alive" in lines
    assert recover(instance, Lake(tmp_path)).recovered_runs == []  # nothing twice


def test_a_waiting_run_is_told_who_holds_the_pool_and_proceeds_once_the_holder_dies(instance, tmp_path):
    holder_proc = subprocess.Popen(["sleep", "60"])
    holder = started_run(instance, holder_proc.pid)
    mine = started_run(instance, os.getpid())
    assert claim(instance, holder) and not claim(instance, mine)  # mine now waits in the pool's queue
    said: list[str] = []
    watcher = PoolWaitWatcher(instance, Lake(tmp_path), said.append)

    [message] = watcher.check(instance)
    assert f"run {mine.run_id} step warehouse_models is waiting for pool 'duckdb'" in message
    assert f"held by run {holder.run_id}" in message and f"process {holder_proc.pid} alive" in message
    logged = [
        e
        for e in instance.all_logs(mine.run_id, of_type=DagsterEventType.ENGINE_EVENT)
        if "is waiting for pool" in e.dagster_event.message
    ]
    assert logged and logged[0].level == 20  # INFO in the waiting run's own log
    assert watcher.check(instance) == []  # said once a minute, not every poll

    holder_proc.kill()
    holder_proc.wait()
    [recovered] = watcher.check(instance)
    assert f"recovered run {holder.run_id}" in recovered
    assert holders(instance) == []
    assert said == [message, recovered]


def test_the_pool_watcher_thread_stops_and_joins(instance, tmp_path):
    watcher = PoolWaitWatcher(instance, Lake(tmp_path), print, interval=0.05)
    watcher.start()
    watcher.stop()
    watcher.join(timeout=10)
    assert not watcher.is_alive()


# ---------------------------------------------------------------------------------------
# Temp files of killed writes
# ---------------------------------------------------------------------------------------
HOLD_FLOCK = "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"
HOLD_DUCKDB = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); print('held', flush=True); time.sleep(60)"


def aged(path: Path, seconds: float = 600) -> Path:
    past = time.time() - seconds
    os.utime(path, (past, past))
    return path


def hold(code: str, path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_abandoned_temp_files_are_removed_and_live_writers_temp_files_are_kept(tmp_path, instance):
    lake = Lake(tmp_path)
    part = lake.partition_dir("content", date(2026, 10, 2))
    part.mkdir(parents=True)
    killed = part / ".part-0.parquet.k1ll3d.tmp"
    killed.write_bytes(b"PAR1 half a file")
    aged(killed)
    fresh = part / ".part-0.parquet.fr35h.tmp"
    fresh.write_bytes(b"PAR1")
    writing = part / ".part-0.parquet.wr1t3.tmp"
    writing.write_bytes(b"PAR1")
    marts_tmp = lake.warehouse_dir / ".marts.duckdb.m4rt5.tmp"
    lake.warehouse_dir.mkdir(parents=True)
    holders_ = [hold(HOLD_FLOCK, writing), hold(HOLD_DUCKDB, marts_tmp)]
    try:
        aged(writing)
        aged(marts_tmp)
        orphan_wal = lake.warehouse_dir / ".marts.duckdb.g0ne.tmp.wal"  # its database temp file is gone
        orphan_wal.write_bytes(b"")
        aged(orphan_wal)

        report = recover(instance, lake)

        assert [t.path for t in report.removed_temp_files] == [killed, orphan_wal]
        assert fresh.exists() and writing.exists() and marts_tmp.exists()
        assert any(str(killed) in line and "killed" in line for line in report.lines())
    finally:
        for proc in holders_:
            proc.kill()
            proc.wait()
    # Once their writers are gone, the same files are abandoned too.
    assert {t.path for t in abandoned_temp_files(lake.temp_roots)} == {writing, marts_tmp}


def test_the_lake_writer_holds_its_temp_file_until_the_rename(tmp_path, monkeypatch):
    import polars as pl

    seen = {}
    original = pl.DataFrame.write_parquet

    def spy(self, file, *args, **kwargs):
        seen["in_use_while_writing"] = temp_file_in_use(Path(file))
        return original(self, file, *args, **kwargs)

    monkeypatch.setattr(pl.DataFrame, "write_parquet", spy)
    target = write_parquet_atomic(pl.DataFrame({"a": [1]}), tmp_path / "part-0.parquet")
    assert seen == {"in_use_while_writing": True}
    assert not temp_file_in_use(target) and list(tmp_path.glob(".*.tmp")) == []


# ---------------------------------------------------------------------------------------
# The drills: a real `trustlake run` killed with SIGKILL while dbt runs, and a real run that
# waits for a pool held by a live process.
# ---------------------------------------------------------------------------------------
def home_instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home / "dagster"))


# A 1-day run takes a minute or two on two busy cores (the code server, the run worker and its
# forkserver each import the code location first); a run stuck on a pool never ends.
SECOND_RUN_TIMEOUT = 900


@pytest.mark.e2e
def test_a_run_killed_during_dbt_is_recovered_by_the_next_run(tmp_path):
    home = tmp_path / "home"
    exe = Path(sys.executable).with_name("trustlake")
    with open(tmp_path / "killed.log", "w") as log:
        first = subprocess.Popen(
            [str(exe), "run", "--days", "1", "--skip-training"],
            env=trustlake_env(home),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
        )
        deadline = time.monotonic() + 600
        dbt = []
        while not dbt and first.poll() is None and time.monotonic() < deadline:
            dbt = [pid for pid, cmd in descendants(first.pid) if "dbt" in cmd and " build" in cmd]
            time.sleep(0.2)
        assert dbt, f"dbt never started:\n{(tmp_path / 'killed.log').read_text()[-3000:]}"
        time.sleep(1.0)  # dbt is now building inside the duckdb pool
        # The run worker and its step process die mid-write (an OOM kill, a power cut), and so does
        # everything else this `trustlake run` started: nothing is left to clean up after them.
        tree = descendants(first.pid)
        os.kill(first.pid, signal.SIGKILL)
        for pid, _ in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        first.wait()
    with home_instance(home) as inst:
        [stuck] = [r.run_id for r in inst.get_runs() if r.status == DagsterRunStatus.STARTED]
        assert holders(inst) == [stuck]  # what wedged every later run

    # Without recovery this second run waits for the slot forever; the timeout makes that a failure.
    try:
        second = run_cli(home, "run", "--days", "1", "--skip-training", timeout=SECOND_RUN_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"the run after the killed one was still running after {SECOND_RUN_TIMEOUT} s (waiting for the "
            f"duckdb pool slot the killed run held?):\n{(exc.stdout or b'')[-2000:]!r}"
        )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"recovered run {stuck}" in second.stdout and "freed its slot in pool 'duckdb'" in second.stdout
    with home_instance(home) as inst:
        assert inst.get_run_by_id(stuck).status == DagsterRunStatus.FAILURE
        assert holders(inst) == [] and inst.event_log_storage.get_concurrency_info(POOL).pending_steps == []
        assert all(r.status != DagsterRunStatus.STARTED for r in inst.get_runs())
    with duckdb.connect(str(Lake(home).marts_db), read_only=True) as con:
        assert con.execute("select count(*) from fct_content").fetchall()[0][0] > 0


@pytest.mark.e2e
def test_a_run_blocked_on_the_pool_says_so_and_goes_on_when_the_holder_dies(tmp_path):
    home = tmp_path / "home"
    assert run_cli(home, "prepare").returncode == 0
    sleeper = subprocess.Popen(["sleep", "600"])  # the live process of a run holding the pool
    with home_instance(home) as inst:
        holder_run = started_run(inst, sleeper.pid)
        assert claim(inst, holder_run)
    holder = holder_run.run_id
    exe = Path(sys.executable).with_name("trustlake")
    out_path = tmp_path / "blocked.log"
    with open(out_path, "w") as out:
        blocked = subprocess.Popen(
            [str(exe), "run", "--days", "1", "--skip-training"],
            env=trustlake_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=PROJECT_ROOT,
        )
        try:
            deadline = time.monotonic() + 300  # landing one day takes well under a minute
            while "is waiting for pool 'duckdb'" not in out_path.read_text():
                assert blocked.poll() is None and time.monotonic() < deadline, out_path.read_text()[-3000:]
                time.sleep(0.5)
            text = out_path.read_text()
            assert f"pool 'duckdb' is held by run {holder}" in text  # said before it starts, too
            assert f"held by run {holder} (ingest_job, step warehouse_models; process {sleeper.pid} alive" in text
        finally:
            sleeper.kill()
            sleeper.wait()
        assert blocked.wait(timeout=600) == 0, out_path.read_text()[-3000:]
    assert f"recovered run {holder}" in out_path.read_text()
    with home_instance(home) as inst:
        assert inst.get_run_by_id(holder).status == DagsterRunStatus.FAILURE and holders(inst) == []
        [waiting] = [r for r in inst.get_runs() if r.job_name == "ingest_job" and r.run_id != holder]
        assert waiting.status == DagsterRunStatus.SUCCESS
        assert any(
            "is waiting for pool 'duckdb'" in (e.dagster_event.message or "")
            for e in inst.all_logs(waiting.run_id, of_type=DagsterEventType.ENGINE_EVENT)
        )
