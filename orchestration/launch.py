"""Launching Dagster jobs against the code location, and waiting for them with progress.

Every command that starts pipeline work goes through here (`trustlake run`, `trustlake land`).
A run launched here is made exactly as the UI makes one: from the code location workspace.yaml
names (so it carries that origin: it is listed under its job and on the Overview timeline, and
re-executes without a "different version" warning), started by the instance's run launcher in a
run worker of its own (the multiprocess executor and the `duckdb` pool apply), and observed only
through the instance's event log, the same record the UI reads.

Quiet by default: the code server, the run workers and everything they start (dbt, Ray,
LightGBM) write to `<DAGSTER_HOME>/logs/launch-<time>.log`; the terminal gets one line per finished
step, a heartbeat while a step runs long, every warning the run logs, and failed checks.
`verbose=True` leaves all of their output on the terminal. The run's full log stays in the UI.

    with Launcher(instance) as launcher:
        outcome = launcher.run("ingest_job", partition_range=("2026-11-01", "2026-11-30"))
    if not outcome.success:
        for line in outcome.failure_lines():
            print(line)
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
from dagster import DagsterRunStatus

from ml.lake import Lake
from orchestration.dagster_internals import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
    JobSubsetSelector,
    WorkspaceFileTarget,
    WorkspaceProcessContext,
)
from orchestration.settings import WORKSPACE_FILE

LOCATION_NAME = "trustlake"  # workspace.yaml's location_name
POLL_SECONDS = 1.0
HEARTBEAT_SECONDS = 60.0
# A run whose recorded processes have all been gone this long is recovered (marked failed, its
# pool slots freed) instead of waited for: its worker was killed or crashed.
DEAD_WORKER_GRACE_SECONDS = 10.0
CANCEL_WAIT_SECONDS = 60.0
# The longest a caller waits for one run unless told otherwise; past it the run is canceled.
RUN_TIMEOUT_SECONDS = 6 * 3600.0


class LaunchError(RuntimeError):
    """A run could not be created or launched; the message says why and what to do."""


@dataclass(frozen=True)
class StepFailure:
    step_key: str
    error: str  # the first line of the error


@dataclass(frozen=True)
class FailedCheck:
    asset: str
    check: str
    severity: str  # ERROR or WARN
    description: str

    def describe(self) -> str:
        return f"check failed ({self.severity.lower()}): {self.asset} {self.check}: {self.description}"


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    job_name: str
    status: str  # DagsterRunStatus value: SUCCESS, FAILURE, CANCELED
    seconds: float
    failed_steps: tuple[StepFailure, ...] = ()
    failed_checks: tuple[FailedCheck, ...] = ()
    error: str | None = None  # the run's own failure message when no step failed

    @property
    def success(self) -> bool:
        return self.status == DagsterRunStatus.SUCCESS.value

    def failure_lines(self) -> list[str]:
        """What a person needs to act on a failed run: its id, the failed step, the error."""
        if self.success:
            return []
        lines = [f"{self.job_name} {self.status.lower()} (run {self.run_id}); its full log is in the UI: make ui"]
        lines += [f"  failed step {f.step_key}: {f.error}" for f in self.failed_steps]
        if not self.failed_steps and self.error:
            lines.append(f"  {self.error}")
        return lines


@dataclass
class _Progress:
    job_name: str
    started: dict[str, float] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    failed_steps: list[StepFailure] = field(default_factory=list)
    failed_checks: list[FailedCheck] = field(default_factory=list)
    error: str | None = None
    last_said: float = field(default_factory=time.monotonic)


class Launcher:
    """Launches jobs of the trustlake code location and waits for them (see the module docstring).

    The code location is loaded once, in a code server process started on entering the context
    and stopped on leaving it; launch as many runs as needed in between.
    """

    def __init__(
        self,
        instance: dg.DagsterInstance,
        *,
        say: Callable[[str], None] | None = None,
        verbose: bool = False,
        workspace_file: Path = WORKSPACE_FILE,
        on_launch: Callable[[str], None] | None = None,
        lake: Lake | None = None,
        poll_seconds: float = POLL_SECONDS,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ):
        self.instance = instance
        self.say = say or (lambda line: print(line, flush=True))
        self.verbose = verbose
        self.workspace_file = Path(workspace_file)
        self.on_launch = on_launch
        self.lake = lake  # for recovering a run whose worker died (orchestration/recovery.py)
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.log_file: Path | None = None
        self._process_context = None
        self._workspace = None

    # -- the code location ---------------------------------------------------------------
    def __enter__(self) -> Launcher:

        target = WorkspaceFileTarget(paths=[str(self.workspace_file)])
        if self.verbose:
            self._process_context = WorkspaceProcessContext(self.instance, target, version=dg.__version__)
        else:
            logs = Path(self.instance.root_directory) / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            self.log_file = logs / f"launch-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%f')}.log"
            # The code server inherits this process's stdout and stderr, and the run workers and step
            # processes it starts inherit its: pointing them at the log file while it starts is enough.
            with _output_to(self.log_file):
                self._process_context = WorkspaceProcessContext(self.instance, target, version=dg.__version__)
        self._workspace = self._process_context.create_request_context()
        if self._workspace.has_code_location_error(LOCATION_NAME):
            error = self._workspace.get_code_location_error(LOCATION_NAME)
            self.__exit__(None, None, None)
            raise LaunchError(
                f"the code location {LOCATION_NAME!r} did not load: {_first_line(error.message)}"
                + (f" (details in {self.log_file})" if self.log_file else "")
            )
        return self

    def __exit__(self, *exc) -> None:
        if self._process_context is not None:
            self._process_context.__exit__(None, None, None)
            self._process_context = None

    # -- runs ----------------------------------------------------------------------------
    @property
    def asset_graph(self):
        """The code location's asset graph, as the launched runs see it (for resolving selections)."""
        if self._workspace is None:
            raise LaunchError("Launcher.asset_graph read outside `with Launcher(...)`")
        [repo] = self._workspace.get_code_location(LOCATION_NAME).get_repositories().values()
        return repo.asset_graph

    def launch(
        self,
        job_name: str,
        *,
        partition_range: tuple[str | date, str | date] | None = None,
        tags: Mapping[str, str] | None = None,
        run_config: Mapping | None = None,
        asset_selection: Sequence[dg.AssetKey] | None = None,
    ) -> str:
        """Create a run of `job_name` (over partitions `first..last`, inclusive, if given; of the
        assets in `asset_selection` only, if given) and launch it.

        Returns the run id at once; `wait` follows it.
        """
        if self._workspace is None:
            raise LaunchError("Launcher.launch called outside `with Launcher(...)`")

        location = self._workspace.get_code_location(LOCATION_NAME)
        [repo] = location.get_repositories().values()
        if not repo.has_job(job_name):
            raise LaunchError(
                f"no job {job_name!r} in the code location; it has "
                f"{', '.join(sorted(j.name for j in repo.get_all_jobs()))}"
            )
        remote_job = location.get_job(
            JobSubsetSelector(
                location_name=location.name,
                repository_name=repo.name,
                job_name=job_name,
                op_selection=None,
                asset_selection=asset_selection,
            )
        )
        run_tags = {**remote_job.tags, **(tags or {}), **_partition_tags(repo, job_name, partition_range)}
        run_config = dict(run_config or {})
        plan = location.get_execution_plan(
            remote_job, run_config, step_keys_to_execute=None, known_state=None, instance=self.instance
        )
        run = self.instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=run_config,
            resolved_op_selection=None,
            step_keys_to_execute=plan.execution_plan_snapshot.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags=run_tags,
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=frozenset(asset_selection) if asset_selection else None,
            asset_check_selection=None,
            asset_graph=repo.asset_graph,
        )
        if self.on_launch is not None:
            self.on_launch(run.run_id)
        self.instance.launch_run(run.run_id, self._workspace)
        return run.run_id

    def wait(self, run_id: str, *, timeout_seconds: float | None = RUN_TIMEOUT_SECONDS) -> RunOutcome:
        """Follow the run until it ends, saying what finishes. Bounded: past `timeout_seconds` (None:
        no limit) the run is canceled; a run whose worker died is recovered within seconds (marked
        failed, its pool slots freed) rather than waited for. Ctrl-C cancels the run."""
        run = self.instance.get_run_by_id(run_id)
        if run is None:
            raise LaunchError(f"no run {run_id}")
        progress = _Progress(run.job_name)
        started = time.monotonic()
        try:
            self._follow(run_id, progress, started, timeout_seconds)
        except KeyboardInterrupt:
            self.say(f"trustlake: interrupted: canceling run {run_id} ({run.job_name})")
            self._cancel(run_id, progress)
            raise
        final = self.instance.get_run_by_id(run_id)
        return RunOutcome(
            run_id=run_id,
            job_name=run.job_name,
            status=final.status.value,
            seconds=time.monotonic() - started,
            failed_steps=tuple(progress.failed_steps),
            failed_checks=tuple(progress.failed_checks),
            error=progress.error,
        )

    def run(
        self,
        job_name: str,
        *,
        partition_range: tuple[str | date, str | date] | None = None,
        tags: Mapping[str, str] | None = None,
        run_config: Mapping | None = None,
        asset_selection: Sequence[dg.AssetKey] | None = None,
        timeout_seconds: float | None = RUN_TIMEOUT_SECONDS,
    ) -> RunOutcome:
        """`launch` then `wait`."""
        run_id = self.launch(
            job_name, partition_range=partition_range, tags=tags, run_config=run_config, asset_selection=asset_selection
        )
        return self.wait(run_id, timeout_seconds=timeout_seconds)

    # -- following a run -----------------------------------------------------------------
    def _follow(self, run_id: str, progress: _Progress, started: float, timeout_seconds: float | None) -> None:
        from orchestration.recovery import run_alive

        cursor = None
        dead_since = None
        while True:
            finished = self.instance.get_run_by_id(run_id).is_finished
            while True:  # every event so far, in order
                conn = self.instance.get_records_for_run(run_id, cursor=cursor, limit=500)
                for record in conn.records:
                    self._on_event(record.event_log_entry, progress)
                cursor = conn.cursor
                if not conn.has_more:
                    break
            if finished:
                return
            now = time.monotonic()
            if timeout_seconds is not None and now - started > timeout_seconds:
                self.say(f"trustlake: run {run_id} still running after {_clock(timeout_seconds)}: canceling it")
                self._cancel(run_id, progress)
                return
            if run_alive(self.instance, run_id) is False:
                dead_since = dead_since or now
                if now - dead_since >= DEAD_WORKER_GRACE_SECONDS and self._recover_dead(run_id):
                    continue
            else:
                dead_since = None
            if now - progress.last_said >= self.heartbeat_seconds:
                self._heartbeat(progress, now)
            time.sleep(self.poll_seconds)

    def _on_event(self, entry, progress: _Progress) -> None:
        event = entry.dagster_event
        step = entry.step_key
        if event is None:
            if entry.level >= 30 and not self.verbose:  # WARNING and above, said once, here
                self._tell(
                    progress,
                    f"  {progress.job_name}: warning{f' in {step}' if step else ''}: {_first_line(entry.user_message)}",
                )
            return
        kind = event.event_type
        if kind == dg.DagsterEventType.STEP_START:
            progress.started[step] = entry.timestamp
        elif kind == dg.DagsterEventType.STEP_SUCCESS:
            progress.finished.add(step)
            self._tell(progress, f"  {progress.job_name}: {step} done{self._took(progress, step, entry)}")
        elif kind == dg.DagsterEventType.STEP_SKIPPED:
            progress.finished.add(step)
            self._tell(
                progress, f"  {progress.job_name}: {step} skipped (an input it reads was not materialized in this run)"
            )
        elif kind == dg.DagsterEventType.STEP_FAILURE:
            progress.finished.add(step)
            failure = StepFailure(step, _step_error(event))
            progress.failed_steps.append(failure)
            self._tell(
                progress, f"  {progress.job_name}: {step} FAILED{self._took(progress, step, entry)}: {failure.error}"
            )
        elif kind == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            ev = event.event_specific_data
            if not ev.passed:
                progress.failed_checks.append(
                    FailedCheck(
                        ev.asset_key.to_user_string(),
                        ev.check_name,
                        ev.severity.value,
                        _first_line(ev.description or ""),
                    )
                )
        elif kind == dg.DagsterEventType.RUN_FAILURE:
            progress.error = _first_line(event.message or "the run failed")
        elif kind == dg.DagsterEventType.ENGINE_EVENT and entry.level >= 30 and not self.verbose:
            self._tell(progress, f"  {progress.job_name}: {_first_line(entry.user_message)}")

    def _took(self, progress: _Progress, step: str, entry) -> str:
        began = progress.started.get(step)
        return f" in {_clock(entry.timestamp - began)}" if began else ""

    def _tell(self, progress: _Progress, line: str) -> None:
        self.say(line)
        progress.last_said = time.monotonic()

    def _heartbeat(self, progress: _Progress, now: float) -> None:
        running = [s for s in progress.started if s not in progress.finished]
        wall = time.time()
        if running:
            what = ", ".join(f"{s} ({_clock(wall - progress.started[s])})" for s in running)
            self._tell(progress, f"  {progress.job_name}: still running: {what}")
        else:
            self._tell(progress, f"  {progress.job_name}: waiting for the next step to start")

    def _recover_dead(self, run_id: str) -> bool:
        from orchestration.recovery import recover

        if self.lake is None:
            return False
        report = recover(self.instance, self.lake)
        for line in report.lines():
            if "recovered" in line or "freed" in line:
                self.say(f"trustlake: {line}")
        return any(r.run_id == run_id for r in report.recovered_runs)

    def _cancel(self, run_id: str, progress: _Progress) -> None:
        try:
            self.instance.run_launcher.terminate(run_id)
        except Exception as exc:  # noqa: BLE001  the run may have ended meanwhile; say so and go on
            self.say(f"trustlake: could not cancel run {run_id}: {_first_line(str(exc))}")
            return
        deadline = time.monotonic() + CANCEL_WAIT_SECONDS
        while time.monotonic() < deadline:
            run = self.instance.get_run_by_id(run_id)
            if run is None or run.is_finished:
                return
            time.sleep(self.poll_seconds)
        self.say(
            f"trustlake: run {run_id} did not stop within {CANCEL_WAIT_SECONDS:.0f} s; the next "
            "`trustlake run` recovers it if its process is gone"
        )


# ---------------------------------------------------------------------------------------
def _partition_tags(repo, job_name: str, partition_range) -> dict[str, str]:
    """The tags that make a run target `first..last`; both must be partitions the job has now."""
    if partition_range is None:
        return {}
    sets = [ps for ps in repo.get_partition_sets() if ps.job_name == job_name and ps.has_partitions_definition()]
    if not sets:
        raise LaunchError(f"{job_name} is not partitioned: launch it without a partition range")
    first, last = (d.isoformat() if isinstance(d, date) else str(d) for d in partition_range)
    keys = sets[0].get_partitions_definition().get_partition_keys()
    missing = [k for k in (first, last) if k not in keys]
    if first > last or missing:
        window = f"{keys[0]} .. {keys[-1]}" if keys else "none yet"
        raise LaunchError(
            f"{job_name} has no partition {', '.join(missing) or f'range {first} .. {last}'} "
            f"(its partitions: {window}; the last one is yesterday, UTC)"
        )
    if first == last:
        return {PARTITION_NAME_TAG: first}
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def _step_error(event) -> str:
    data = event.step_failure_data
    if data is None:
        return _first_line(event.message or "failed")
    if data.user_failure_data is not None and data.user_failure_data.description:
        return _first_line(data.user_failure_data.description)
    error = data.error
    # Dagster wraps what the asset raised ("Error occurred while executing op ..."): say the cause.
    while (
        error is not None
        and error.cause is not None
        and error.cls_name in ("DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError")
    ):
        error = error.cause
    if error is None:
        return _first_line(event.message or "failed")
    return f"{error.cls_name}: {_first_line(error.message.split(': ', 1)[-1] if error.cls_name else error.message)}"


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds}s" if seconds < 60 else f"{seconds // 60}m{seconds % 60:02d}s"


@contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """Point this process's fds 1 and 2 at `path` for the block (children started inside inherit it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
