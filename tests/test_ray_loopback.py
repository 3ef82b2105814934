"""The local Ray cluster trustlake starts (orchestration/ray_resource.py's LoopbackRay, a dagster-ray
LocalRay) is reachable from this machine only: every TCP port its processes listen on is bound to the
loopback address, none to all interfaces. It is shut down when the resource's execution ends, and a
Ray that was already running is left running."""

import os
from pathlib import Path

import dagster as dg
import pytest

from orchestration.ray_resource import LoopbackRay

pytestmark = pytest.mark.e2e
# /proc/net/tcp{,6} local addresses of loopback: 127.0.0.1, ::ffff:127.0.0.1 and ::1.
LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


def descendants(root: int) -> set[int]:
    parent_of = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent_of[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        kids = [p for p, parent in parent_of.items() if parent == pid and p not in found]
        found.update(kids)
        todo.extend(kids)
    return found


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def listening() -> dict[str, tuple[str, int]]:
    """Every listening TCP socket on the machine: inode -> (hex local address, port)."""
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                address, port = fields[1].split(":")
                out[fields[9]] = (address, int(port, 16))
    return out


@pytest.fixture(scope="module")
def ray_run():
    """What a step sees: the resource set up as Dagster sets it up, and torn down again."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    before = socket_inodes(os.getpid())
    seen = {}
    try:
        with dg.build_resources({"ray_cluster": LoopbackRay.with_cpus(1)}):
            assert ray.get(ray.remote(lambda: 42).remote()) == 42  # a worker process is up and listening too
            sockets = listening()
            mine = socket_inodes(os.getpid()) - before  # the driver's own Ray servers
            by_process = {os.getpid(): mine} | {pid: socket_inodes(pid) for pid in descendants(os.getpid())}
            seen["listeners"] = [
                (pid, *sockets[inode]) for pid, inodes in by_process.items() for inode in inodes if inode in sockets
            ]
            seen["programs"] = {
                pid: Path(f"/proc/{pid}/comm").read_text().strip()
                for pid, _, _ in seen["listeners"]
                if Path(f"/proc/{pid}").exists()
            }
            # A second resource in the same process finds Ray running: it uses it and does not stop it.
            with dg.build_resources({"ray_cluster": LoopbackRay.with_cpus(1)}):
                pass
            seen["running_after_second_resource"] = ray.is_initialized()
        seen["running_after_teardown"] = ray.is_initialized()
        yield seen
    finally:
        ray.shutdown()


def test_local_ray_listens_on_loopback_only(ray_run):
    programs = ray_run["programs"]
    assert {"gcs_server", "raylet"} <= set(programs.values()), programs  # the cluster's servers were seen
    exposed = [
        (programs.get(pid), address, port) for pid, address, port in ray_run["listeners"] if address not in LOOPBACK
    ]
    assert exposed == [], f"Ray ports open beyond this machine: {exposed}"


def test_the_resource_stops_only_the_ray_it_started(ray_run):
    assert ray_run["running_after_second_resource"] is True
    assert ray_run["running_after_teardown"] is False
