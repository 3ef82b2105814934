"""The Ray cluster as a Dagster resource: local by default, `RAY_ADDRESS` for a real cluster.

Ray starts lazily, the first time a step asks for it, once per process, and is shut down
when the run's execution ends if this resource started it.
"""

from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr


class RayResource(dg.ConfigurableResource):
    address: str = ""  # empty: start a local cluster
    num_cpus: int = 2  # local cluster size
    storage_path: str = ""  # where Ray Train keeps run state and checkpoints

    _started: bool = PrivateAttr(default=False)

    def connect(self) -> Path:
        import ray

        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
            self._started = True
        path = Path(self.storage_path)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        import ray

        if self._started and ray.is_initialized():
            ray.shutdown()
            self._started = False
