"""The one place trustlake reaches into Dagster's private modules, and why each name is needed.

Everything else imports Dagster's public API (`import dagster as dg`). Each name below has no
public equivalent in Dagster 1.13 (pinned <1.14 in pyproject.toml); when one appears, the name
moves out of here and the import goes away.

- Launching a run of the code location as the UI does (orchestration/launch.py): `trustlake run`
  loads the code location in a code server (`WorkspaceProcessContext`, `WorkspaceFileTarget`),
  resolves a job subset (`JobSubsetSelector`) and launches the run with `DagsterInstance.launch_run`.
  The public routes, the GraphQL client (`DagsterGraphQLClient.submit_job_execution`) and
  `dagster job launch`, both *submit* runs to the instance's run coordinator; trustlake's instance
  queues runs (`concurrency.runs.max_concurrent_runs` in dagster.yaml, for the daemon's schedules
  and sensors), so a submitted run waits for a daemon, and starting the daemon for a command-line
  run would start the schedules and sensors too (the automation sensor re-scores after a promotion,
  duplicating the score run `trustlake run` launches). The GraphQL route would also need a webserver
  process next to the code server. Launching directly keeps one code server and no daemon.
- Partition tags (`ASSET_PARTITION_RANGE_*_TAG`, `PARTITION_NAME_TAG`): the tag names Dagster itself
  reads to target a partition range; a run launched or read by trustlake must use exactly these.
- Run storage classes (`SqliteRunStorage`, `InMemoryRunStorage`): recovery trusts recorded process
  ids only when the runs are stored on this host (orchestration/recovery.py).
- For tests that stage what a run launcher records: `EngineEventData` (the event that records a run
  worker's process id, which recovery reads) and `InstanceRef` (an instance opened from a home's
  directory without setting DAGSTER_HOME in the test process).
"""

from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.events import EngineEventData
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.runs import InMemoryRunStorage, SqliteRunStorage
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import WorkspaceFileTarget

__all__ = [
    "ASSET_PARTITION_RANGE_END_TAG",
    "ASSET_PARTITION_RANGE_START_TAG",
    "PARTITION_NAME_TAG",
    "EngineEventData",
    "InMemoryRunStorage",
    "InstanceRef",
    "JobSubsetSelector",
    "SqliteRunStorage",
    "WorkspaceFileTarget",
    "WorkspaceProcessContext",
]
