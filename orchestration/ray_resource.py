"""The Ray cluster the training steps use, as dagster-ray resources: a local cluster by default,
the existing cluster at `RAY_ADDRESS` when it is set.

The pipeline's resource (`ray_cluster`) connects when a step's body asks for it
(assets/resources.py `connect_ray`: `ray.init`, once per process; a step that does not ask never
starts Ray, and an in-process job such as the ingest no longer starts a cluster at the run's start
for an image step that may have nothing to read) and disconnects when the step's execution ends;
disconnecting a cluster this process started shuts it down. `LoopbackRay.with_cpus` connects as soon
as it is built, for callers outside a step (tests, benches). Assets declare
`ray_cluster: dagster_ray.RayResource`, so any dagster-ray backend (KubeRay on Kubernetes, see
docs/operations.md) can be swapped in here without touching them.

A local cluster listens on 127.0.0.1 only: Ray's servers (GCS, raylet, object manager, workers,
agents) bind to the node address, and on Linux Ray turns a requested 127.0.0.1 into the machine's
routable address unless its single-machine mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, the
macOS/Windows default) is on, so `LoopbackRay` switches that mode on and checks the address Ray chose.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from dagster_ray import Lifecycle, LocalRay, RayResource

if TYPE_CHECKING:
    from dagster_ray.types import AnyDagsterContext
    from ray._private.worker import BaseContext

    from orchestration.settings import Settings

LOOPBACK = "127.0.0.1"
# Read by ray._private.ray_constants at import, and by every Ray process this one starts.
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# Neither resource has anything to delete: disconnecting (always, when the step ends) is what shuts
# down a cluster this process started, and someone else's cluster is left as it is. The library's
# "always" would only log a deletion that did not happen. Passed explicitly, because Dagster builds
# the resource from its config schema, which takes `Lifecycle`'s own defaults and not a subclass's
# `default_factory` (measured on dagster 1.13.27 / dagster-ray 0.4.8).
NOTHING_TO_DELETE = Lifecycle(cleanup="never")
# The same, connected by the step that needs it rather than when the run or step initialises resources
# (dagster-ray's documented manual connection: `connect=False`, then `.connect`).
CONNECTED_BY_THE_STEP = Lifecycle(cleanup="never", connect=False)


def loopback_init_options(num_cpus: int) -> dict:
    """`ray.init` options of a local cluster of `num_cpus` cores that listens on 127.0.0.1 only, with no
    dashboard; `single_machine_mode()` must be on first. The training steps' resource and `trustlake
    serve --ray` both start their local cluster with these."""
    return {
        "num_cpus": num_cpus,
        "include_dashboard": False,
        "dashboard_host": LOOPBACK,
        "_node_ip_address": LOOPBACK,
        "log_to_driver": False,
    }


def single_machine_mode() -> None:
    """Switch on Ray's single-machine mode for this process and every Ray process it starts."""
    os.environ[SINGLE_MACHINE_ENV] = "0"
    from ray._private import ray_constants  # the first import of Ray reads the variable just set

    # Ray read the variable when first imported; if that happened before this call, say it again.
    ray_constants.ENABLE_RAY_CLUSTER = False


def check_loopback() -> None:
    """RuntimeError unless the Ray just started in this process chose the loopback address."""
    import ray

    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:
        raise RuntimeError(
            f"local Ray chose node address {node_ip}, not {LOOPBACK}: its ports would be reachable "
            "from the network. Set RAY_ADDRESS to use a cluster on purpose."
        )


class LoopbackRay(LocalRay):
    """dagster-ray's `LocalRay`, reachable from this machine only.

    The subclass exists because configuration cannot do this: `LocalRay` passes `ray_init_options`
    to `ray.init` (enough for the node address, the dashboard, num_cpus and log_to_driver), but Ray's
    single-machine mode is an environment variable and a module constant read when Ray is imported,
    which no `ray.init` option reaches, and nothing in `LocalRay` checks the address Ray finally chose.
    It also starts its own cluster (`address="local"`) where `LocalRay` passes no address, which
    would attach to a `RAY_ADDRESS` in the environment or the last cluster `ray start` left on the
    machine. If Ray is already running in this process, it is used as it is and left running.
    """

    @classmethod
    def with_cpus(cls, num_cpus: int) -> LoopbackRay:
        return cls(lifecycle=NOTHING_TO_DELETE, ray_init_options=loopback_init_options(num_cpus))

    @property
    def ray_address(self) -> str:  # type: ignore[override]
        return "local"

    @property
    def name(self) -> str:
        return "local Ray (loopback only)"

    def connect(self, context: AnyDagsterContext) -> BaseContext | None:  # type: ignore[override]
        single_machine_mode()  # before Ray is first imported, which reads the variable
        import ray

        if ray.is_initialized():
            # Not ours to configure or to shut down (a test's, or an earlier resource's in this process).
            context.log.info("Ray is already running in this process: using it as it is")
            return None
        ray_context = super().connect(context)
        try:
            check_loopback()
        except RuntimeError:
            ray.shutdown()
            self._context = None
            raise
        return ray_context

    def on_connect(self, context: AnyDagsterContext) -> None:
        if self.connected:  # the library's message says "via Ray Client", which a local cluster is not
            context.log.info(f"Started {self.name} with {self.ray_init_options.get('num_cpus')} CPUs")


class ExistingRayCluster(RayResource):
    """A Ray cluster that is already running, at `address` (`RAY_ADDRESS`: `ray://head:10001` for
    Ray Client, `head:6379` from inside the cluster). Nothing is created or deleted; the step connects
    when it starts and disconnects when it ends."""

    address: str

    @property
    def ray_address(self) -> str:  # type: ignore[override]
        return self.address

    @property
    def host(self) -> str:
        return self.address.split("://", 1)[-1].rsplit(":", 1)[0]

    @property
    def name(self) -> str:
        return f"Ray cluster at {self.address}"

    @property
    def created(self) -> bool:
        return True

    @property
    def ready(self) -> bool:
        return True


def ray_cluster(settings: Settings) -> RayResource:
    """The `ray_cluster` resource the settings ask for: `RAY_ADDRESS`'s cluster, else a local one."""
    if settings.ray_address:
        return ExistingRayCluster(
            address=settings.ray_address, lifecycle=CONNECTED_BY_THE_STEP, ray_init_options={"log_to_driver": False}
        )
    return LoopbackRay(lifecycle=CONNECTED_BY_THE_STEP, ray_init_options=loopback_init_options(settings.ray_cpus))
