"""A compact neural text classifier, trained with Ray's TorchTrainer (GPU when the cluster has one).

The text enters as the hashed word and character n-grams of `ml.features.text` through an
EmbeddingBag (a fastText-style bag of n-gram embeddings, weighted by the hashed counts);
the numeric platform context enters through a small normalised dense branch. Both meet in
an MLP that emits one logit per policy; a temperature fitted on validation calibrates them.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from ml.features.text import NGRAM_DIM
from ml.taxonomy import POLICIES
from ml.training.placement import WorkerShape, fit_to_cluster
from ml.training.text_model_params import TextModelParams


class TextClassifier(nn.Module):
    def __init__(self, n_dense: int, embedding_dim: int, hidden_dim: int, n_classes: int = len(POLICIES)):
        super().__init__()
        self.ngrams = nn.EmbeddingBag(NGRAM_DIM, embedding_dim, mode="sum")
        # The wide part: a linear model straight on the n-grams, as strong as logistic
        # regression on its own; the deep part adds interactions with platform context.
        self.wide = nn.EmbeddingBag(NGRAM_DIM, n_classes, mode="sum")
        nn.init.zeros_(self.wide.weight)  # start from "no opinion", not random logits
        nn.init.normal_(self.ngrams.weight, std=0.05)
        self.dense = nn.Sequential(nn.Linear(n_dense, hidden_dim // 2), nn.ReLU())
        self.head = nn.Sequential(
            nn.Linear(embedding_dim + hidden_dim // 2, hidden_dim),
            nn.ReLU(),
            nn.Dropout(0.2),
            nn.Linear(hidden_dim, n_classes),
        )
        self.register_buffer("dense_mean", torch.zeros(n_dense))
        self.register_buffer("dense_std", torch.ones(n_dense))

    def forward(self, ids, offsets, weights, dense):
        text = self.ngrams(ids, offsets, per_sample_weights=weights)
        d = self.dense((squash(dense) - self.dense_mean) / self.dense_std)
        return self.head(torch.cat([text, d], dim=1)) + self.wide(ids, offsets, per_sample_weights=weights)


def squash(x):
    """Signed log1p: counts that grow with history (prior posts, reports) stay comparable over time."""
    return torch.sign(x) * torch.log1p(torch.abs(x))


def batch_tensors(ngrams: sp.csr_matrix, dense: np.ndarray, rows: np.ndarray, device="cpu"):
    sub = ngrams[rows]
    return (
        torch.as_tensor(sub.indices, dtype=torch.long, device=device),
        torch.as_tensor(sub.indptr[:-1], dtype=torch.long, device=device),
        torch.as_tensor(sub.data, dtype=torch.float32, device=device),
        torch.as_tensor(np.nan_to_num(dense[rows], nan=-1.0), dtype=torch.float32, device=device),
    )


def predict_logits(model: TextClassifier, ngrams: sp.csr_matrix, dense: np.ndarray, batch: int = 4096) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, ngrams.shape[0], batch):
            rows = np.arange(start, min(start + batch, ngrams.shape[0]))
            out.append(model(*batch_tensors(ngrams, dense, rows, device)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(POLICIES)), np.float32)


def build_model(dense: np.ndarray, params: TextModelParams) -> TextClassifier:
    model = TextClassifier(dense.shape[1], params.embedding_dim, params.hidden_dim)
    filled = squash(torch.as_tensor(np.nan_to_num(dense, nan=-1.0)))
    model.dense_mean.copy_(filled.mean(dim=0))
    model.dense_std.copy_(filled.std(dim=0) + 1e-3)
    return model


def validation_score(model: TextClassifier, ngrams: sp.csr_matrix, dense: np.ndarray, y: np.ndarray) -> float:
    from ml.training.calibration import softmax
    from ml.training.metrics import macro_pr_auc, pr_auc_by_policy

    was_training = model.training
    proba = softmax(predict_logits(model, ngrams, dense))
    model.train(was_training)
    return macro_pr_auc(pr_auc_by_policy(y, proba))


def _train_worker(config: dict) -> None:
    import ray

    from ml.training.torch_loop import prepare_worker, train_and_report

    ngrams, dense, y = ray.get(config["train"])
    val_ngrams, val_dense, val_y = ray.get(config["validation"])
    p = TextModelParams(**config["params"])
    torch.manual_seed(p.seed)  # the embedding initialisation draws from it
    model, raw = prepare_worker(build_model(dense, p), p.cpus_per_worker)
    wide = [q for n, q in raw.named_parameters() if n.startswith("wide.")]
    deep = [q for n, q in raw.named_parameters() if not n.startswith("wide.")]
    opt = torch.optim.AdamW(
        [
            {"params": wide, "lr": p.wide_learning_rate, "weight_decay": 0.0},
            {"params": deep, "lr": p.learning_rate, "weight_decay": p.weight_decay},
        ]
    )
    train_and_report(
        model,
        opt,
        lambda rows, device: batch_tensors(ngrams, dense, rows, device),
        y,
        lambda m: validation_score(m, val_ngrams, val_dense, val_y),
        p.epochs,
        p.batch_size,
        p.max_steps,
        p.seed,
    )


def cluster_has_gpu() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def train_ray(
    ngrams: sp.csr_matrix,
    dense: np.ndarray,
    y: np.ndarray,
    validation: tuple,
    params: TextModelParams,
    storage_path: Path,
) -> tuple[TextClassifier, dict]:
    """Train on the connected Ray cluster; `use_gpu` is whatever the cluster has."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    use_gpu = cluster_has_gpu()
    # Workers sized to the nodes Ray reports: a 2-CPU worker on 1-CPU nodes would wait forever.
    shape = fit_to_cluster(WorkerShape(params.num_workers, params.cpus_per_worker, 1.0 if use_gpu else 0.0))
    params = replace(params, num_workers=shape.workers, cpus_per_worker=shape.cpus_per_worker)
    started = time.perf_counter()
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config={
            "train": ray.put((ngrams, dense, y)),
            "validation": ray.put(validation),
            "params": asdict(params),
        },
        scaling_config=ScalingConfig(
            num_workers=params.num_workers, use_gpu=use_gpu, resources_per_worker={"CPU": params.cpus_per_worker}
        ),
        run_config=RunConfig(storage_path=str(storage_path), name=f"text-model-{int(time.time() * 1000)}"),
    )
    result = trainer.fit()
    model = build_model(dense, params)
    with result.checkpoint.as_directory() as ckpt:
        model.load_state_dict(torch.load(Path(ckpt) / "model.pt", map_location="cpu"))
    info = {
        **result.metrics,
        "use_gpu": use_gpu,
        "wall_seconds": time.perf_counter() - started,
        "params": asdict(params),
    }
    return model, info
