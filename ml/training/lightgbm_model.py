"""One multiclass LightGBM model over all policies, trained data-parallel on Ray by long-lived actors.

Ray Train starts a new worker group for every `fit()` (10-15 s here, more than the risk model's
training itself), so the workers are plain Ray actors instead (a second or two to start):
`LightGBMWorkers` starts them, each holds its shard of the training matrix and the validation
split in its own memory, and every fit on them costs what LightGBM's training costs (the benchmark
fits several times on one set). `train_ray` starts a set for one fit and frees it afterwards: an
idle actor keeps its CPUs reserved, and the next Ray work in the same process (the text model's
Ray Train group, OCR tasks) would wait for them forever. With more than one
worker they train one model together over LightGBM's own socket network (data-parallel tree
learner, pre-partitioned rows): the addresses are the actors' nodes and a free port each, taken
just before every fit. Workers are sized from the cluster Ray reports (ml/training/placement.py)
and a demand the cluster cannot place fails within a bounded wait, naming the demand and the nodes.
`train_local` is the same training without Ray, for the benchmark.
"""

from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass, replace

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp

from ml.taxonomy import POLICIES
from ml.training.placement import PLACEMENT_TIMEOUT_S, WorkerShape, fit_to_cluster, wait_placed

# Below this many rows per thread a second thread costs more in synchronisation than it saves: the risk
# model's 6,521 training rows took 0.5 s on one thread and 2 to 24 s on two when the other core was busy
# (OpenMP threads wait for each other at every split). A worker trains with at most rows // this threads.
ROWS_PER_THREAD = 100_000
# OpenMP threads that wait sleep instead of spinning, so a busy core does not stall the whole fit.
WORKER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


@dataclass(frozen=True)
class LightGBMParams:
    learning_rate: float = 0.1
    num_leaves: int = 31
    min_data_in_leaf: int = 10
    feature_fraction: float = 0.3
    max_bin: int = 63
    max_rounds: int = 1000
    early_stopping_rounds: int = 30
    num_workers: int = 1
    threads_per_worker: int = 2
    seed: int = 42

    def lgb_params(self) -> dict:
        return {
            "objective": "multiclass",
            "num_class": len(POLICIES),
            "metric": "multi_logloss",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "max_bin": self.max_bin,
            "num_threads": self.threads_per_worker,
            "seed": self.seed,
            "deterministic": True,
            "verbose": -1,
        }


def _train(params: dict, X, y, X_val, y_val, max_rounds: int, early_stopping_rounds: int) -> lgb.Booster:
    train = lgb.Dataset(X, y, free_raw_data=False)
    valid = lgb.Dataset(X_val, y_val, reference=train)
    callbacks = [lgb.early_stopping(early_stopping_rounds, verbose=False)] if early_stopping_rounds else []
    return lgb.train(params, train, max_rounds, valid_sets=[valid], callbacks=callbacks)


def threads_for(rows: int, cpus: int) -> int:
    """Threads a worker trains `rows` rows with: its CPUs, fewer for small data (ROWS_PER_THREAD)."""
    return max(1, min(cpus, rows // ROWS_PER_THREAD))


def train_local(X: sp.csr_matrix | np.ndarray, y: np.ndarray, X_val, y_val, params: LightGBMParams) -> lgb.Booster:
    """Plain `lightgbm.train` with the same parameters and early stopping (one process)."""
    lgb_params = {**params.lgb_params(), "num_threads": threads_for(X.shape[0], params.threads_per_worker)}
    return _train(lgb_params, X, y, X_val, y_val, params.max_rounds, params.early_stopping_rounds)


class _Worker:
    """One LightGBM worker: holds a shard and the validation split, trains when asked (a Ray actor)."""

    def __init__(self):
        self.shard = None

    def ready(self) -> bool:
        return True

    def load(self, shard, validation) -> int:
        self.shard, self.validation = shard, validation
        return int(shard[0].shape[0])

    def address(self) -> tuple[str, int]:
        """This node's address and a port free right now, for LightGBM's network."""
        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def train(self, params: dict, max_rounds: int, early_stopping_rounds: int) -> dict:
        X, y = self.shard
        X_val, y_val = self.validation
        started = time.perf_counter()
        booster = _train(params, X, y, X_val, y_val, max_rounds, early_stopping_rounds)
        return {
            "model": booster.model_to_string(num_iteration=booster.best_iteration or None),
            "best_iteration": booster.best_iteration,
            "train_seconds": time.perf_counter() - started,
        }


class LightGBMWorkers:
    """Long-lived LightGBM workers on the connected Ray cluster (see the module docstring).

    `load` ships a training matrix once; `fit` trains on it as often as asked. Close (or use as a
    context manager) to free the actors and the CPUs they hold.
    """

    def __init__(self, shape: WorkerShape, timeout_s: float = PLACEMENT_TIMEOUT_S):
        import ray

        self.shape = shape
        actor = ray.remote(num_cpus=shape.cpus_per_worker, runtime_env={"env_vars": WORKER_ENV})(_Worker)
        self.actors = [actor.remote() for _ in range(shape.workers)]
        try:
            wait_placed([a.ready.remote() for a in self.actors], shape, "LightGBM", timeout_s)
        except BaseException:
            self.close()
            raise
        self.rows: int | None = None

    def load(self, X, y: np.ndarray, X_val, y_val: np.ndarray) -> None:
        """Give each worker its contiguous share of the rows and the whole validation split."""
        import ray

        bounds = np.linspace(0, X.shape[0], self.shape.workers + 1).astype(int)
        validation = ray.put((X_val, y_val))
        loads = [
            a.load.remote(ray.put((X[bounds[i] : bounds[i + 1]], y[bounds[i] : bounds[i + 1]])), validation)
            for i, a in enumerate(self.actors)
        ]
        self.rows = sum(_get(loads))

    def fit(self, params: LightGBMParams) -> tuple[lgb.Booster, dict]:
        if self.rows is None:
            raise RuntimeError("LightGBMWorkers.fit before load: ship the training matrix first")
        started = time.perf_counter()
        threads = threads_for(self.rows // self.shape.workers, self.shape.cpus_per_worker)
        lgb_params = {**params.lgb_params(), "num_threads": threads}
        if self.shape.workers > 1:
            addresses = _get([a.address.remote() for a in self.actors])
            machines = ",".join(f"{ip}:{port}" for ip, port in addresses)
            runs = [
                a.train.remote(
                    {
                        **lgb_params,
                        "tree_learner": "data_parallel",
                        "pre_partition": True,
                        "num_machines": self.shape.workers,
                        "machines": machines,
                        "local_listen_port": port,
                        "time_out": 5,  # minutes LightGBM waits for its peers
                    },
                    params.max_rounds,
                    params.early_stopping_rounds,
                )
                for a, (_, port) in zip(self.actors, addresses)
            ]
        else:
            runs = [self.actors[0].train.remote(lgb_params, params.max_rounds, params.early_stopping_rounds)]
        results = _get(runs)
        booster = lgb.Booster(model_str=results[0]["model"])
        info = {
            "best_iteration": results[0]["best_iteration"],
            "train_seconds": max(r["train_seconds"] for r in results),
            "wall_seconds": time.perf_counter() - started,
            "workers": self.shape.workers,
            "threads_per_worker": threads,
            "params": asdict(params),
        }
        return booster, info

    def close(self) -> None:
        import ray

        for a in self.actors:
            ray.kill(a)
        self.actors = []

    def __enter__(self) -> LightGBMWorkers:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _get(refs: list) -> list:
    """`ray.get` in short waits, so Ctrl-C or a canceled Dagster run interrupts it between them."""
    import ray

    pending, done = list(refs), {}
    while pending:
        ready, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
        for ref in ready:
            done[ref] = ray.get(ref)
    return [done[r] for r in refs]


def train_ray(
    X: sp.csr_matrix | np.ndarray, y: np.ndarray, X_val, y_val, params: LightGBMParams
) -> tuple[lgb.Booster, dict]:
    """Data-parallel training on workers started on the connected Ray cluster for this fit and freed after
    it (sized to the cluster); the booster and run facts."""
    shape = fit_to_cluster(WorkerShape(params.num_workers, params.threads_per_worker))
    with LightGBMWorkers(shape) as workers:
        workers.load(X, y, X_val, y_val)
        return workers.fit(replace(params, num_workers=shape.workers))
