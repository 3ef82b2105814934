"""The Ray Train worker loop both deep text models share.

Each worker trains on its shard (every world-size-th row), keeps the epoch whose validation
score is best, and reports once at the end: rank 0 with the checkpoint, the others without.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn


def prepare_worker(model: nn.Module, cpus: int) -> tuple[nn.Module, nn.Module]:
    """Size the CPU thread pool and wrap the model for this worker (DDP when world > 1).

    Seed torch before building the model; returns the wrapped model and the module inside it.
    """
    import ray.train.torch

    torch.set_num_threads(max(1, cpus))
    wrapped = ray.train.torch.prepare_model(model)
    return wrapped, (wrapped.module if hasattr(wrapped, "module") else wrapped)


def train_and_report(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: Callable,
    y: np.ndarray,
    validate: Callable[[nn.Module], float],
    epochs: int,
    batch_size: int,
    max_steps: int | None,
    seed: int,
) -> None:
    """`batch(rows, device)` returns the model's inputs for those rows; `validate(raw_model)` a score."""
    import ray.train
    import ray.train.torch

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    raw = model.module if hasattr(model, "module") else model
    rng = np.random.default_rng(seed + rank)
    loss_fn = nn.CrossEntropyLoss()
    mine = np.arange(rank, len(y), world)
    started, steps, seen, training_seconds = time.perf_counter(), 0, 0, 0.0
    best_score, best_state, best_epoch, loss = -1.0, None, -1, torch.zeros(())
    for epoch in range(epochs):
        model.train()
        epoch_started = time.perf_counter()
        order = rng.permutation(mine)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            loss = loss_fn(model(*batch(rows, device)), torch.as_tensor(y[rows], dtype=torch.long, device=device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps, seen = steps + 1, seen + len(rows)
            if max_steps and steps >= max_steps:
                break
        training_seconds += time.perf_counter() - epoch_started
        # Keep the epoch that ranks validation best: these models overfit within a few epochs.
        score = validate(raw)
        if score > best_score:
            best_score, best_epoch = score, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in raw.state_dict().items()}
        if max_steps and steps >= max_steps:
            break
    metrics = {
        "steps": steps,
        "examples_seen": seen,
        "train_seconds": time.perf_counter() - started,
        "best_epoch": best_epoch,
        "validation_macro_pr_auc": best_score,
        "final_loss": float(loss.item()),
        # throughput of the optimisation steps alone (validation passes excluded)
        "examples_per_second": seen * world / max(training_seconds, 1e-9),
    }
    if rank == 0:
        with tempfile.TemporaryDirectory() as tmp:
            torch.save(best_state, Path(tmp) / "model.pt")
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)
