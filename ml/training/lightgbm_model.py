"""One multiclass LightGBM model over all policies, trained data-parallel with Ray Train V2.

Each Ray worker takes its shard of the training matrix from the object store, joins the
LightGBM network through `get_network_params()`, and trains with early stopping on the
full validation split. Only rank 0 reports, once, at the end (reporting each round costs
about 2 s here). `train_local` is the same training without Ray, for the benchmark.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import scipy.sparse as sp

from ml.taxonomy import POLICIES


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


def train_local(X: sp.csr_matrix | np.ndarray, y: np.ndarray, X_val, y_val, params: LightGBMParams) -> lgb.Booster:
    """Plain `lightgbm.train` with the same parameters and early stopping (one process)."""
    train = lgb.Dataset(X, y, free_raw_data=False)
    valid = lgb.Dataset(X_val, y_val, reference=train)
    return lgb.train(
        params.lgb_params(),
        train,
        params.max_rounds,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )


def _train_worker(config: dict) -> None:
    import ray
    import ray.train
    from ray.train.lightgbm import get_network_params

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    X, y = ray.get(config["shards"][rank])
    X_val, y_val = ray.get(config["validation"])
    params = dict(config["lgb_params"])
    if world > 1:
        params.update(tree_learner="data_parallel", pre_partition=True, **get_network_params())
    started = time.perf_counter()
    train = lgb.Dataset(X, y)
    valid = lgb.Dataset(X_val, y_val, reference=train)
    booster = lgb.train(
        params,
        train,
        config["max_rounds"],
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(config["early_stopping_rounds"], verbose=False)],
    )
    metrics = {
        "best_iteration": booster.best_iteration,
        "train_seconds": time.perf_counter() - started,
        "valid_multi_logloss": float(booster.best_score["valid_0"]["multi_logloss"]),
    }
    if rank == 0:
        with tempfile.TemporaryDirectory() as tmp:
            booster.save_model(str(Path(tmp) / "model.txt"), num_iteration=booster.best_iteration)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)


def train_ray(
    X: sp.csr_matrix | np.ndarray, y: np.ndarray, X_val, y_val, params: LightGBMParams, storage_path: Path
) -> tuple[lgb.Booster, dict]:
    """Data-parallel training on the connected Ray cluster; returns the booster and run facts."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.lightgbm import LightGBMTrainer

    n = params.num_workers
    bounds = np.linspace(0, X.shape[0], n + 1).astype(int)
    shards = [ray.put((X[bounds[i] : bounds[i + 1]], y[bounds[i] : bounds[i + 1]])) for i in range(n)]
    started = time.perf_counter()
    trainer = LightGBMTrainer(
        _train_worker,
        train_loop_config={
            "shards": shards,
            "validation": ray.put((X_val, y_val)),
            "lgb_params": params.lgb_params(),
            "max_rounds": params.max_rounds,
            "early_stopping_rounds": params.early_stopping_rounds,
        },
        scaling_config=ScalingConfig(num_workers=n, resources_per_worker={"CPU": params.threads_per_worker}),
        run_config=RunConfig(storage_path=str(storage_path), name=f"lightgbm-{int(time.time() * 1000)}"),
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as ckpt:
        booster = lgb.Booster(model_file=str(Path(ckpt) / "model.txt"))
    info = {**result.metrics, "wall_seconds": time.perf_counter() - started, "params": asdict(params)}
    return booster, info
