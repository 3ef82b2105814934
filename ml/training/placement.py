"""Fitting Ray worker requests to the cluster Ray reports, and failing clearly when they cannot be placed.

A training step asks for workers of some size (settings: LightGBM 1 worker x 2 threads by default).
A cluster of another shape, two 1-CPU nodes say, could never place a 2-CPU worker: Ray would wait
forever with nothing in the run's output. So a request is fitted to the cluster first (a worker asks
for at most the CPUs of the largest node, and more workers keep the total the settings asked for),
and the wait for the workers to start is bounded: past it the step fails, naming what it asked for
and what each node has.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

# A worker process imports its libraries when it starts: on a busy two-core machine that takes seconds.
PLACEMENT_TIMEOUT_S = 120.0


class PlacementError(RuntimeError):
    """Workers the cluster cannot place; the message names the demand and the nodes."""


@dataclass(frozen=True)
class WorkerShape:
    workers: int
    cpus_per_worker: int
    gpus_per_worker: float = 0.0

    def describe(self) -> str:
        gpus = f" + {self.gpus_per_worker:g} GPU" if self.gpus_per_worker else ""
        return f"{self.workers} worker(s) x {self.cpus_per_worker} CPU{gpus}"


@dataclass(frozen=True)
class Node:
    address: str
    cpus: float
    gpus: float


def cluster_nodes() -> list[Node]:
    """The alive nodes of the connected Ray cluster with their CPUs and GPUs."""
    import ray

    return [
        Node(n["NodeManagerAddress"], n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0))
        for n in ray.nodes()
        if n.get("Alive")
    ]


def describe_nodes(nodes: list[Node]) -> str:
    return "; ".join(f"{n.address} with {n.cpus:g} CPU, {n.gpus:g} GPU" for n in nodes) or "none"


def fit_to_cluster(shape: WorkerShape, nodes: list[Node] | None = None) -> WorkerShape:
    """`shape` made placeable on the cluster: a worker asks for at most the largest node's CPUs, and
    the number of workers grows so the total CPUs stay what was asked (as far as the cluster holds
    them). A GPU demand no node can meet fails here."""
    nodes = cluster_nodes() if nodes is None else nodes
    if not nodes:
        raise PlacementError(f"{shape.describe()} asked for, but the Ray cluster reports no alive node")
    if shape.gpus_per_worker and not any(n.gpus >= shape.gpus_per_worker for n in nodes):
        raise PlacementError(f"{shape.describe()} asked for, but no node has a GPU: {describe_nodes(nodes)}")
    largest = int(max(n.cpus for n in nodes))
    if largest < 1:
        raise PlacementError(f"{shape.describe()} asked for, but no node has a whole CPU: {describe_nodes(nodes)}")
    cpus = min(shape.cpus_per_worker, largest)
    total = shape.workers * shape.cpus_per_worker
    holds = sum(int(n.cpus // cpus) for n in nodes)
    workers = max(1, min(-(-total // cpus), holds))
    fitted = WorkerShape(workers, cpus, shape.gpus_per_worker)
    if fitted != shape:
        log.warning(
            "asked for %s; the cluster (%s) places %s instead",
            shape.describe(),
            describe_nodes(nodes),
            fitted.describe(),
        )
    return fitted


def wait_placed(ready_refs: list, shape: WorkerShape, what: str, timeout_s: float = PLACEMENT_TIMEOUT_S) -> None:
    """Wait (in short steps, so an interrupt gets through) until every worker answered; fail past the bound."""
    import time

    import ray

    deadline = time.monotonic() + timeout_s
    pending = list(ready_refs)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise PlacementError(
                f"{what}: {shape.describe()} could not be placed within {timeout_s:.0f} s "
                f"({len(ready_refs) - len(pending)} of {len(ready_refs)} started). The cluster's nodes: "
                f"{describe_nodes(cluster_nodes())}; free now: {ray.available_resources().get('CPU', 0):g} CPU. "
                "Free CPUs on the cluster, or ask for smaller workers."
            )
        done, pending = ray.wait(pending, num_returns=len(pending), timeout=min(1.0, left))
        ray.get(done)  # a worker that failed to start raises here, with its own error
