"""What the deep text models are asked to do, without importing PyTorch: the compact model's parameters,
which profile trains, and whether it trains at all this run. Settings and the training asset read
these in processes that must start fast (the code server, every run worker); ml/training/text_model.py
holds the model itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TextModelParams:
    embedding_dim: int = 64
    hidden_dim: int = 128
    epochs: int = 3
    batch_size: int = 512  # 4x fewer steps than 128: the dense embedding-table update dominates a step on CPU
    learning_rate: float = 1e-3  # deep part
    wide_learning_rate: float = 1e-2  # the linear n-gram part converges slower
    weight_decay: float = 1e-4
    num_workers: int = 1
    cpus_per_worker: int = 2
    seed: int = 42
    max_steps: int | None = None  # cap for smoke tests


PROFILES = ("auto", "compact", "minilm")
# When the deep model trains: `auto` where the Ray cluster has a GPU, `on` always, `off` never. On two
# CPU cores it took 3 min 40 s of a 9-minute run and never passed its gates (docs/models.md), so a CPU
# run trains it only when asked.
TRAINING_MODES = ("auto", "on", "off")


def why_not_trained(mode: str, has_gpu: bool) -> str | None:
    """None when the deep model trains this run, else why not (said in the run's output)."""
    if mode not in TRAINING_MODES:
        raise ValueError(f"unknown text model training mode {mode!r}; expected one of {', '.join(TRAINING_MODES)}")
    if mode == "off":
        return "TRUSTLAKE_TEXT_MODEL_TRAINING=off"
    if mode == "auto" and not has_gpu:
        return (
            "the Ray cluster has no GPU (TRUSTLAKE_TEXT_MODEL_TRAINING=auto trains it only on a GPU; "
            "TRUSTLAKE_TEXT_MODEL_TRAINING=on trains it on the CPU, about 4 minutes on two cores)"
        )
    return None


def resolve_text_profile(profile: str, has_gpu: bool) -> str:
    """`auto` fine-tunes MiniLM where a GPU is visible and trains the compact model otherwise."""
    if profile not in PROFILES:
        raise ValueError(f"unknown text model profile {profile!r}; expected one of {', '.join(PROFILES)}")
    if profile == "auto":
        return "minilm" if has_gpu else "compact"
    return profile
