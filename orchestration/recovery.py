"""Recovery that needs no human: runs whose process died, the pool slots they hold, temp files
of killed writes; and a run blocked on a pool says what it is waiting for.

Liveness comes from Dagster itself: every executor records the pid of the process that runs a
run or a step in an engine event ("Executing steps in process (pid: N)", "Started process for
run (pid: N)", the multiprocess executor's step subprocesses). A run is alive while any of those
processes is: that pid exists, is not a zombie, and started no later than the event that
recorded it (a reused pid belongs to a newer process). Pids mean something only on the host that
ran the run, so dead runs are judged only when the instance's run storage is local (SQLite under
DAGSTER_HOME, trustlake's default); with a shared database (Postgres, several hosts) Dagster's
run monitoring daemon is the tool. Slots held by runs that have already finished, or no longer
exist, are freed whatever the storage.

`trustlake run` calls `recover_before_run` before it launches anything, and `watch_run` for each
run it launches (orchestration/launch.py); any process holding the instance (a sensor, the UI's
code server) can call `recover(instance, lake)`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psutil
from dagster import DagsterRunStatus, RunsFilter
from filelock import FileLock

from ml.lake import AbandonedTemp, Lake, abandoned_temp_files

log = logging.getLogger(__name__)

# A run's recorded process counts as the same process if it started no later than this after
# the event that recorded its pid (process start times have clock-tick resolution, boot time 1 s).
PID_SLACK_SECONDS = 2.0
IN_FLIGHT = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING]
WATCH_INTERVAL_SECONDS = 2.0  # how often a waiting `trustlake run` looks at the pools
REPEAT_WAIT_MESSAGE_SECONDS = 60.0


# ---------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunProcess:
    pid: int
    recorded_at: float  # epoch seconds of the engine event that named it


def process_started_at(pid: int) -> float | None:
    """Epoch start time of live process `pid`; None when there is none (or only a zombie)."""
    try:
        process = psutil.Process(pid)
        if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return None  # killed, not yet reaped by its parent
        return process.create_time()
    except psutil.NoSuchProcess:
        return None
    except psutil.AccessDenied:
        return 0.0  # alive but not ours to inspect: start unknown, so never judged reused


def process_alive(proc: RunProcess) -> bool:
    started = process_started_at(proc.pid)
    return started is not None and started <= proc.recorded_at + PID_SLACK_SECONDS


def run_processes(instance: dg.DagsterInstance, run_id: str) -> list[RunProcess]:
    """Every process Dagster recorded as running (part of) this run."""
    found = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        pid = data.metadata.get("pid") if data and data.metadata else None
        if pid is not None and str(pid.value).isdigit():
            found.append(RunProcess(int(pid.value), entry.timestamp))
    return found


def run_alive(instance: dg.DagsterInstance, run_id: str) -> bool | None:
    """True/False by the run's recorded processes; None when none was recorded yet."""
    procs = run_processes(instance, run_id)
    return any(process_alive(p) for p in procs) if procs else None


def local_run_storage(instance: dg.DagsterInstance) -> bool:
    """Runs stored on this host only (so their pids are this host's pids)."""
    from orchestration.dagster_internals import InMemoryRunStorage, SqliteRunStorage

    return isinstance(instance.run_storage, SqliteRunStorage | InMemoryRunStorage)


# ---------------------------------------------------------------------------------------
# Pools
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PoolUse:
    pool: str
    run_id: str
    step_key: str
    holding: bool  # True: holds a slot; False: waits for one
    limit: int | None = None


def pool_uses(instance: dg.DagsterInstance) -> list[PoolUse]:
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    uses = []
    for pool, info in storage.get_concurrency_infos(sorted(storage.get_concurrency_keys())).items():
        holding = {(s.run_id, s.step_key) for s in info.claimed_slots}
        for run_id, step_key in sorted(holding):
            uses.append(PoolUse(pool, run_id, step_key, True, info.limit))
        for p in info.pending_steps:
            if p.assigned_timestamp is None and (p.run_id, p.step_key) not in holding:
                uses.append(PoolUse(pool, p.run_id, p.step_key, False, info.limit))
    return uses


# ---------------------------------------------------------------------------------------
# Recovery
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecoveredRun:
    run_id: str
    job_name: str
    was: str  # status before recovery
    pids: tuple[int, ...]
    pools: tuple[str, ...]  # pools whose slots it held

    def describe(self) -> str:
        freed = f"; freed its slot in pool {', '.join(repr(p) for p in self.pools)}" if self.pools else ""
        pids = ", ".join(str(p) for p in self.pids)
        marked = "canceled" if self.was == DagsterRunStatus.CANCELING.value else "failed"
        return (
            f"recovered run {self.run_id} ({self.job_name}, {self.was}): its process (pid {pids}) is gone, "
            f"killed or crashed; marked it {marked}{freed}"
        )


@dataclass(frozen=True)
class FreedSlots:
    run_id: str
    why: str
    pools: tuple[str, ...]

    def describe(self) -> str:
        return f"freed pool {', '.join(repr(p) for p in self.pools)} held by run {self.run_id}, which {self.why}"


@dataclass
class RecoveryReport:
    recovered_runs: list[RecoveredRun] = field(default_factory=list)
    freed_slots: list[FreedSlots] = field(default_factory=list)
    removed_temp_files: list[AbandonedTemp] = field(default_factory=list)
    busy_pools: list[str] = field(default_factory=list)  # live holders a new run will wait for
    note: str | None = None

    def lines(self) -> list[str]:
        out = [r.describe() for r in self.recovered_runs] + [f.describe() for f in self.freed_slots]
        out += [
            f"removed {t.path} ({t.size:,} bytes, untouched for {_duration(t.age_seconds)}): the temp file "
            "of a write that was killed"
            for t in self.removed_temp_files
        ]
        out += self.busy_pools
        return out + ([self.note] if self.note else [])


def recover(instance: dg.DagsterInstance, lake: Lake) -> RecoveryReport:
    """Fail runs whose processes are gone, free every slot no live run holds, remove abandoned temp files."""
    report = RecoveryReport()
    with _exclusive(instance):
        uses = pool_uses(instance)
        local = local_run_storage(instance)
        if local:
            for record in instance.get_run_records(filters=RunsFilter(statuses=IN_FLIGHT)):
                recovered = _recover_if_dead(instance, record.dagster_run, uses)
                if recovered:
                    report.recovered_runs.append(recovered)
        else:
            report.note = (
                "runs are stored in a shared database: dead runs are left to Dagster's run monitoring "
                "daemon (run_monitoring in dagster.yaml)"
            )
        recovered_ids = {r.run_id for r in report.recovered_runs}
        report.freed_slots = _free_orphan_slots(instance, [u for u in uses if u.run_id not in recovered_ids])
        for use in pool_uses(instance):
            if use.holding:
                report.busy_pools.append(
                    f"pool {use.pool!r} is held by {_describe_holder(instance, use, local)}: "
                    "steps that need it wait until it is free"
                )
    for temp in abandoned_temp_files(lake.temp_roots):
        try:
            temp.path.unlink()
        except FileNotFoundError:
            continue
        log.info("removed abandoned temp file %s (%d bytes, %.0f s old)", temp.path, temp.size, temp.age_seconds)
        report.removed_temp_files.append(temp)
    return report


def _recover_if_dead(instance: dg.DagsterInstance, run: dg.DagsterRun, uses: list[PoolUse]) -> RecoveredRun | None:
    procs = run_processes(instance, run.run_id)
    if not procs or any(process_alive(p) for p in procs):
        return None
    current = instance.get_run_by_id(run.run_id)
    if current is None or current.status not in IN_FLIGHT:
        return None  # finished meanwhile
    pids = tuple(sorted({p.pid for p in procs}))
    pools = tuple(sorted({u.pool for u in uses if u.run_id == run.run_id and u.holding}))
    canceling = current.status == DagsterRunStatus.CANCELING
    message = (
        f"trustlake recovery: the process running this run (pid {', '.join(map(str, pids))}) is gone, "
        f"killed or crashed, while the run was {current.status.value}. "
        f"Marked {'canceled' if canceling else 'failed'}"
        + (f" and its slot in pool {', '.join(pools)} freed" if pools else "")
        + "; re-run it to rebuild what it was building."
    )
    if canceling:
        instance.report_run_canceled(current, message)
    else:
        instance.report_run_failed(current, message)
    if instance.event_log_storage.supports_global_concurrency_limits:
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    log.info(message)
    return RecoveredRun(run.run_id, run.job_name, current.status.value, pids, pools)


def _free_orphan_slots(instance: dg.DagsterInstance, uses: list[PoolUse]) -> list[FreedSlots]:
    """Slots and queue places of runs that finished or were deleted: nothing will ever release them."""
    freed = []
    for run_id in sorted({u.run_id for u in uses}):
        run = instance.get_run_by_id(run_id)
        if run is not None and not run.is_finished:
            continue
        why = "no longer exists" if run is None else f"already ended ({run.status.value})"
        pools = tuple(sorted({u.pool for u in uses if u.run_id == run_id}))
        instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        log.info("freed pool %s held by run %s, which %s", ", ".join(pools), run_id, why)
        freed.append(FreedSlots(run_id, why, pools))
    return freed


def _describe_holder(instance: dg.DagsterInstance, use: PoolUse, local: bool) -> str:
    run = instance.get_run_by_id(use.run_id)
    job = run.job_name if run else "unknown job"
    procs = run_processes(instance, use.run_id) if local else []
    live = [p.pid for p in procs if process_alive(p)]
    record = instance.get_run_record_by_id(use.run_id)
    since = f", running for {_duration(time.time() - record.start_time)}" if record and record.start_time else ""
    who = f"process {', '.join(map(str, live))} alive" if live else "process unknown"
    return f"run {use.run_id} ({job}, step {use.step_key}; {who}{since})"


@contextmanager
def _exclusive(instance: dg.DagsterInstance):
    """One recovery at a time per Dagster home, so two starting runs do not fail a run twice."""
    if instance.is_ephemeral:
        yield
        return
    with FileLock(Path(instance.root_directory) / ".trustlake-recovery.lock"):
        yield


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# ---------------------------------------------------------------------------------------
# A run blocked on a pool says so
# ---------------------------------------------------------------------------------------
class PoolWaitWatcher(threading.Thread):
    """Watches the pools for steps of runs this process launched (`watch`) or executes, and says
    what they wait for.

    While one of them waits, it names the run holding the pool every minute, at INFO in the
    waiting run's Dagster log and through `say`; if the holder's process dies meanwhile, it
    recovers that run on the spot so the wait ends.
    """

    def __init__(
        self,
        instance: dg.DagsterInstance,
        lake: Lake,
        say: Callable[[str], None],
        pid: int | None = None,
        interval: float = WATCH_INTERVAL_SECONDS,
    ):
        super().__init__(name="trustlake-pool-watcher", daemon=True)
        self._ref = instance.get_ref() if not instance.is_ephemeral else None
        self._instance = instance
        self._lake = lake
        self._say = say
        self._pid = pid or os.getpid()
        self._interval = interval
        self._ours: dict[str, bool] = {}
        self._watched: set[str] = set()
        self._told: dict[tuple[str, str], float] = {}
        self._stopping = threading.Event()

    def run(self) -> None:
        # Its own instance object: storage connections are not shared across threads.
        instance = dg.DagsterInstance.from_ref(self._ref) if self._ref else self._instance
        last_error = None
        while not self._stopping.wait(self._interval):
            try:
                self.check(instance)
                last_error = None
            except Exception as exc:  # an advisory thread: report and keep watching, never kill the run  # noqa: BLE001
                if str(exc) != last_error:
                    self._say(f"pool watcher could not read the pools ({exc}); still watching")
                last_error = str(exc)

    def stop(self) -> None:
        self._stopping.set()

    def watch(self, run_id: str) -> None:
        """Count `run_id` as ours: a run this process launched, executed by a run worker elsewhere."""
        self._watched.add(run_id)

    def check(self, instance: dg.DagsterInstance) -> list[str]:
        """One look at the pools; returns what it said."""
        said = []
        uses = pool_uses(instance)
        for wait in (u for u in uses if not u.holding and self._is_ours(instance, u.run_id)):
            holders = [u for u in uses if u.pool == wait.pool and u.holding]
            gone = [h for h in holders if self._holder_gone(instance, h)]
            if gone:
                report = recover(instance, self._lake)
                said += [self._tell(line) for line in report.lines() if "recovered" in line or "freed" in line]
                continue
            key = (wait.run_id, wait.step_key)
            now = time.monotonic()
            if key in self._told and now - self._told[key] < REPEAT_WAIT_MESSAGE_SECONDS:
                continue
            self._told[key] = now
            held = " and ".join(_describe_holder(instance, h, local_run_storage(instance)) for h in holders)
            message = (
                f"run {wait.run_id} step {wait.step_key} is waiting for pool {wait.pool!r} "
                f"(limit {wait.limit}), held by {held or 'no run (the limit is 0)'}. "
                "It starts as soon as a slot is free."
            )
            run = instance.get_run_by_id(wait.run_id)
            if run is not None:
                instance.report_engine_event(message, run, step_key=wait.step_key)  # INFO in the run's log
            said.append(self._tell(message))
        return said

    def _tell(self, line: str) -> str:
        self._say(line)
        return line

    def _is_ours(self, instance: dg.DagsterInstance, run_id: str) -> bool:
        if run_id in self._watched:
            return True
        if run_id not in self._ours:
            procs = run_processes(instance, run_id)
            if not procs:
                return False  # not started executing yet: look again next time
            self._ours[run_id] = any(p.pid == self._pid for p in procs)
        return self._ours[run_id]

    def _holder_gone(self, instance: dg.DagsterInstance, use: PoolUse) -> bool:
        run = instance.get_run_by_id(use.run_id)
        if run is None or run.is_finished:
            return True
        return local_run_storage(instance) and run_alive(instance, use.run_id) is False


_watcher: PoolWaitWatcher | None = None


def recover_before_run(instance: dg.DagsterInstance, lake: Lake, say: Callable[[str], None]) -> RecoveryReport:
    """What `trustlake run` does first: recover, say what was done, then watch the pools while it runs."""
    global _watcher
    report = recover(instance, lake)
    for line in report.lines():
        say(line)
    if _watcher is None or not _watcher.is_alive():
        _watcher = PoolWaitWatcher(instance, lake, say)
        _watcher.start()
    return report


def watch_run(run_id: str) -> None:
    """Have the watcher `recover_before_run` started speak for `run_id` while it waits for a pool."""
    if _watcher is not None:
        _watcher.watch(run_id)
