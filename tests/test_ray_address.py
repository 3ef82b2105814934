"""With RAY_ADDRESS set, a training step connects to that running cluster instead of starting one,
and leaves it running when the step ends (a real Ray cluster in a second process; loopback only)."""

import json
import os
import secrets
import subprocess
import sys

import pytest

from orchestration.settings import PROJECT_ROOT

pytestmark = pytest.mark.e2e

# The "existing cluster": the pipeline's own local resource, kept up until stdin closes.
HEAD = """
import sys
import dagster as dg
import ray
from orchestration.ray_resource import LoopbackRay

with dg.build_resources({"ray_cluster": LoopbackRay.with_cpus(1)}):
    print(ray.get_runtime_context().gcs_address, flush=True)
    sys.stdin.read()
"""

# A step's process: the resource the settings choose, set up and torn down as Dagster does it, and
# connected by the step's body as the training and image steps do (assets/resources.py connect_ray).
STEP = """
import json, sys
import dagster as dg
import ray
from assets.resources import connect_ray
from orchestration.ray_resource import ray_cluster
from orchestration.settings import Settings

settings = Settings.from_env({"TRUSTLAKE_HOME": sys.argv[1], "RAY_ADDRESS": sys.argv[2], "TRUSTLAKE_RAY_CPUS": "2"})
with dg.build_resources({"ray_cluster": ray_cluster(settings)}) as resources:
    before = ray.is_initialized()  # nothing connects until the step asks
    connect_ray(resources.ray_cluster, dg.build_asset_context())
    seen = {"resource": type(resources.ray_cluster).__name__, "cpus": ray.cluster_resources().get("CPU"),
            "connected_before": before,
            "answer": ray.get(ray.remote(lambda: 42).remote())}
seen["connected_after"] = ray.is_initialized()
print(json.dumps(seen))
"""


def test_ray_address_connects_to_the_running_cluster_and_leaves_it_running(tmp_path):
    # Both processes are on this machine, so both use Ray's single-machine mode (loopback addresses).
    # A local Ray starts with token authentication on; an explicit address connects with a token only
    # when RAY_AUTH_MODE=token says so (as against a real cluster): this test's own token, for both.
    env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [sys.executable, "-c", HEAD],
        cwd=PROJECT_ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        address = head.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), address
        step = subprocess.run(
            [sys.executable, "-c", STEP, str(tmp_path), address],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert step.returncode == 0, step.stderr[-3000:]
        seen = json.loads(step.stdout.strip().splitlines()[-1])
        assert seen["resource"] == "ExistingRayCluster" and seen["connected_before"] is False
        assert seen["cpus"] == 1  # the head's one CPU: it joined that cluster, it did not start a 2-CPU one
        assert seen["answer"] == 42
        assert seen["connected_after"] is False  # disconnected when the step's execution ended
        assert head.poll() is None  # and the cluster it used is still up
    finally:
        head.stdin.close()
        try:
            head.wait(timeout=120)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(timeout=60)


# Two 1-CPU nodes on this machine (Ray's own test cluster), up until stdin closes.
TWO_SMALL_NODES = """
import sys
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "node_ip_address": "127.0.0.1"})
cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
cluster.wait_for_nodes()
print(cluster.address, flush=True)
sys.stdin.read()
cluster.shutdown()
"""

# A training step on that cluster: the risk model's default request (1 worker x 2 CPUs) cannot be
# placed on 1-CPU nodes as it is; it is fitted to two 1-CPU workers and trains across both, and a
# 2-CPU worker asked for as it is fails within its bound, naming what it asked for and the nodes.
SIZED_STEP = """
import json, sys
import dagster as dg
import numpy as np
import ray
from assets.resources import connect_ray
from ml.training import lightgbm_model
from ml.training.lightgbm_model import LightGBMParams
from ml.training.placement import PlacementError, WorkerShape, wait_placed
from orchestration.ray_resource import ray_cluster
from orchestration.settings import Settings

settings = Settings.from_env({"TRUSTLAKE_HOME": sys.argv[1], "RAY_ADDRESS": sys.argv[2]})
rng = np.random.default_rng(0)
X, y = rng.random((4000, 8)), rng.integers(0, 5, 4000)
seen = {}
with dg.build_resources({"ray_cluster": ray_cluster(settings)}) as resources:
    connect_ray(resources.ray_cluster, dg.build_asset_context())
    params = LightGBMParams(num_workers=1, threads_per_worker=2, max_rounds=20, early_stopping_rounds=0)
    booster, info = lightgbm_model.train_ray(X[:3000], y[:3000], X[3000:], y[3000:], params)
    seen["workers"], seen["trees"] = info["workers"], booster.num_trees()
    actor = ray.remote(num_cpus=2)(lightgbm_model._Worker).remote()
    try:
        wait_placed([actor.ready.remote()], WorkerShape(1, 2), "LightGBM", timeout_s=3)
    except PlacementError as exc:
        seen["error"] = str(exc)
print(json.dumps(seen))
"""


def test_workers_fit_a_cluster_of_two_one_cpu_nodes_and_an_unplaceable_demand_fails_naming_them(tmp_path):
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [sys.executable, "-c", TWO_SMALL_NODES],
        cwd=PROJECT_ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        address = head.stdout.readline().strip()
        assert address, "the two-node cluster did not start"
        step = subprocess.run(
            [sys.executable, "-c", SIZED_STEP, str(tmp_path), address],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert step.returncode == 0, step.stderr[-3000:]
        seen = json.loads(step.stdout.strip().splitlines()[-1])
        assert seen["workers"] == 2 and seen["trees"] == 20 * 5  # trained across both nodes
        assert "1 worker(s) x 2 CPU could not be placed within 3 s" in seen["error"]
        assert seen["error"].count("with 1 CPU") == 2  # both nodes named with what they have
    finally:
        head.stdin.close()
        try:
            head.wait(timeout=120)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(timeout=60)
