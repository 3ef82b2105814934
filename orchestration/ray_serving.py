"""`trustlake serve --ray`: the scoring service as Ray Serve replicas (ml/scoring/replicas.py), on a
local Ray cluster that listens on 127.0.0.1 only, or on the running cluster `RAY_ADDRESS` names.

What this process starts, it stops, and nothing else: its Serve application first (so each replica
runs its app's shutdown), then, on a local cluster, the cluster itself with Serve's controller and
proxy (`ray.shutdown()` in the driver that started the head stops every Ray process it started); on
`RAY_ADDRESS`'s cluster it only disconnects, leaving that cluster, Serve and anyone else's
applications running (never `ray stop`, which stops every Ray of the machine's user).

A demand the cluster cannot place (more CPUs than it has, or than its largest node has for one
replica) is refused before anything is deployed, as `ServeRefused` with one line to show.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestration.ray_resource import check_loopback, loopback_init_options, single_machine_mode
from orchestration.settings import Settings

if TYPE_CHECKING:
    from ray.serve import Application

    from ml.scoring.replicas import ReplicaConfig

APP_NAME = "trustlake-scoring"  # the Serve application: on a shared cluster, the only one this process removes


class ServeRefused(Exception):
    """Serving on Ray cannot start as asked; the message says why and what to change, in one line."""


@dataclass(frozen=True)
class Cluster:
    """The Ray cluster the replicas run on, as far as placing them goes."""

    name: str  # for people: "the local Ray cluster (...)" or "the Ray cluster at ..."
    cpus: float
    largest_node_cpus: float
    local: bool


def check_fits(replicas: ReplicaConfig, cluster: Cluster) -> None:
    """ServeRefused unless `replicas` can all be placed on `cluster` at once: Ray
    Serve would otherwise wait for CPUs that never come, and `serve.run` with it."""
    if replicas.cpus_per_replica > cluster.largest_node_cpus:
        raise ServeRefused(
            f"a replica needs {replicas.cpus_per_replica:g} CPUs but the largest node of {cluster.name} has "
            f"{cluster.largest_node_cpus:g}: lower TRUSTLAKE_SERVE_CPUS_PER_REPLICA"
        )
    if replicas.cpus > cluster.cpus:
        more = " or raise TRUSTLAKE_RAY_CPUS" if cluster.local else ""
        raise ServeRefused(
            f"{replicas.num_replicas} replicas x {replicas.cpus_per_replica:g} CPUs need {replicas.cpus:g} CPUs but "
            f"{cluster.name} has {cluster.cpus:g}: use fewer replicas (--replicas), fewer CPUs per replica "
            f"(TRUSTLAKE_SERVE_CPUS_PER_REPLICA){more}"
        )


def check_port_free(host: str, port: int) -> None:
    """ServeRefused when `host:port` cannot be bound here (in use, or not an address of this machine)."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ServeRefused(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port or --host"
        ) from None


def local_cluster(settings: Settings) -> Cluster:
    return Cluster(
        f"the local Ray cluster (TRUSTLAKE_RAY_CPUS={settings.ray_cpus})", settings.ray_cpus, settings.ray_cpus, True
    )


def _connected_cluster(address: str) -> Cluster:
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    largest = max((n.get("Resources", {}).get("CPU", 0.0) for n in nodes), default=0.0)
    return Cluster(f"the Ray cluster at {address}", ray.cluster_resources().get("CPU", 0.0), largest, False)


@contextmanager
def serving_on_ray(
    settings: Settings, application: Application, replicas: ReplicaConfig, host: str, port: int, keep_alive_s: float
) -> Iterator[str]:
    """Deploy `application` (ml.scoring.replicas.scoring_application) with Ray Serve's proxy on
    `host:port`; yields the cluster's name once every replica is running, and stops what it started
    when the block ends (also on KeyboardInterrupt or SystemExit). ServeRefused for a demand that does
    not fit or a cluster that cannot be reached."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    cluster = None if settings.ray_address else local_cluster(settings)
    if cluster is not None:
        check_fits(replicas, cluster)  # before a cluster is started for nothing
        check_port_free(host, port)  # Serve's proxy binds it on this machine; it only says so deep in a traceback
        single_machine_mode()
    import ray
    from ray import serve

    # Ray's and Serve's progress lines ("Started a local Ray instance", "Deployed app ...") are not
    # for the person running `trustlake serve`: it prints its own. Warnings still show.
    quiet = {"logging_level": logging.WARNING}
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    try:
        if cluster is not None:
            ray.init(address="local", **loopback_init_options(settings.ray_cpus), **quiet)
        else:
            ray.init(address=settings.ray_address, log_to_driver=False, **quiet)
    except Exception as exc:  # Ray raises a bare Exception too ("The current node timed out during startup")
        ray.shutdown()
        where = f"RAY_ADDRESS={settings.ray_address}" if settings.ray_address else "a local Ray cluster"
        raise ServeRefused(f"cannot start Ray ({where}): {first_line(exc)}") from None
    deployed = False
    try:
        if cluster is not None:
            try:
                check_loopback()
            except RuntimeError as exc:
                raise ServeRefused(str(exc)) from None
        else:
            cluster = _connected_cluster(settings.ray_address)
            check_fits(replicas, cluster)
            if APP_NAME in serve.status().applications:
                # Deploying would take over that service, and stopping this one would delete it.
                raise ServeRefused(
                    f"a Serve application {APP_NAME} already runs on {cluster.name}: another `trustlake serve --ray` "
                    "serves there; stop it first, or use it"
                )
        serve.start(http_options={"host": host, "port": port, "keep_alive_timeout_s": math.ceil(keep_alive_s)})
        deployed = True
        serve.run(application, name=APP_NAME, route_prefix="/")
        yield cluster.name
    finally:
        try:
            if deployed:
                _delete_application()
        finally:
            ray.shutdown()  # a local cluster's processes stop with it, Serve's controller and proxy too


def _delete_application() -> None:
    """This process's Serve application deleted, so its replicas run their app's shutdown (the scoring
    and image thread pools) before Ray stops them. Serve itself is left to the cluster: on a local one
    `ray.shutdown()` stops it (`serve.shutdown()` there only adds a failed-task warning from the
    controller it kills), on a shared one other applications may use it."""
    from ray import serve

    try:
        serve.delete(APP_NAME)
    except Exception as exc:  # noqa: BLE001  a local cluster stops anyway; on a shared one the reason is said
        logging.getLogger(__name__).warning("deleting the Ray Serve application %s: %s", APP_NAME, first_line(exc))


def first_line(exc: BaseException) -> str:
    """What went wrong, in one line: a Ray task's error is its cause's (the rest is a remote traceback)."""
    exc = getattr(exc, "cause", None) or exc
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text.splitlines()[0]}" if text else exc.__class__.__name__
