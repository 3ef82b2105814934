"""The Ray cluster as a Dagster resource: local by default, `RAY_ADDRESS` for a real cluster.

Ray starts lazily, the first time a step asks for it, once per process, and is shut down
when the run's execution ends if this resource started it. A local cluster listens on
127.0.0.1 only: Ray's servers (GCS, raylet, object manager, workers, agents) bind to the node
address, and on Linux Ray turns a requested 127.0.0.1 into the machine's routable address
unless its single-machine mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, the macOS/Windows
default) is on, so the resource switches that mode on and checks the address Ray chose.
"""

import os
from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr

LOOPBACK = "127.0.0.1"
# Read by ray._private.ray_constants at import, and by every Ray process this one starts.
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class RayResource(dg.ConfigurableResource):
    address: str = ""  # empty: start a local cluster
    num_cpus: int = 2  # local cluster size
    storage_path: str = ""  # where Ray Train keeps run state and checkpoints

    _started: bool = PrivateAttr(default=False)

    def connect(self) -> Path:
        if self.address:
            import ray

            if not ray.is_initialized():
                ray.init(address=self.address, log_to_driver=False)
                self._started = True
        elif start_local_ray(self.num_cpus):
            self._started = True
        path = Path(self.storage_path)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        import ray

        if self._started and ray.is_initialized():
            ray.shutdown()
            self._started = False


def start_local_ray(num_cpus: int) -> bool:
    """Start this process's local Ray cluster, reachable from this machine only; False if one runs."""
    os.environ[SINGLE_MACHINE_ENV] = "0"
    import ray
    from ray._private import ray_constants

    if ray.is_initialized():
        return False
    # Ray read the variable when first imported; if that happened before this call, say it again.
    ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(num_cpus=num_cpus, include_dashboard=False, dashboard_host=LOOPBACK, _node_ip_address=LOOPBACK,
             log_to_driver=False)
    node_ip = ray.util.get_node_ip_address()
    if node_ip != LOOPBACK:
        ray.shutdown()
        raise RuntimeError(f"local Ray chose node address {node_ip}, not {LOOPBACK}: its ports would be reachable "
                           "from the network. Set RAY_ADDRESS to use a cluster on purpose.")
    return True
