"""Score content with the champion: calibrated probabilities, an action, the model version.

Batch scoring, the offline CLI and the HTTP service all go through `score_frame`, so the
same text with the same context gets the same scores and action everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ml.features.text import distinct, hashed_ngrams
from ml.enforcement import DEFAULT_POLICY_PATH, EnforcementPolicy, load_policy
from ml.registry import Registry, RegistryError
from ml.training.artifacts import PROBA_COLUMNS, ModelArtifact
from ml.training.scorer import Scorer

OUTPUT_COLUMNS = (*PROBA_COLUMNS, "action", "model_version")


@dataclass
class Champion:
    version: str
    scorer: Scorer
    thresholds: dict[str, dict[str, float]]
    policy: EnforcementPolicy


def operating_thresholds(model_dir: Path) -> dict[str, dict[str, float]]:
    path = Path(model_dir) / "operating_points.json"
    if not path.exists():
        raise RegistryError(f"{model_dir} has no operating_points.json: evaluate the model before serving it")
    points = json.loads(path.read_text())
    return {p: {"auto_action": v["auto_action_threshold"], "review": v["review_threshold"]} for p, v in points.items()}


def load_model(model_dir: Path, policy_path: Path = DEFAULT_POLICY_PATH) -> Champion:
    artifact = ModelArtifact.read(model_dir)
    return Champion(artifact.version, Scorer(artifact), operating_thresholds(model_dir), load_policy(policy_path))


def load_champion(models_dir: Path, policy_path: Path = DEFAULT_POLICY_PATH) -> Champion:
    registry = Registry(models_dir)
    entry = registry.champion()
    if entry is None:
        raise RegistryError(f"no champion in {models_dir}: run `trustlake run` (or promote a model) first")
    return load_model(registry.artifact_dir(entry), policy_path)


def score_frame(champion: Champion, frame: pl.DataFrame, batch_size: int = 50_000,
                progress=None) -> pl.DataFrame:
    """One output row per input row, in order: p_<policy> columns, action, model_version.

    `frame` needs `text`; any platform context columns it has (surface, account_age_days, ...)
    are used and missing ones are treated as unknown. Each distinct text is featurised once
    for the whole call, since reposts are common; batches then only gather its rows.
    """
    frame = frame.with_columns(pl.col("text").cast(pl.String).fill_null(""))
    scorer = champion.scorer
    if scorer.uses_hashed_ngrams and frame.height:
        unique, rows = distinct(frame["text"].to_list())
        unique_ngrams = hashed_ngrams(unique)
    parts = []
    for start in range(0, frame.height, batch_size):
        chunk = frame.slice(start, batch_size)
        ngrams = unique_ngrams[rows[start:start + batch_size]] if scorer.uses_hashed_ngrams else None
        proba = scorer.predict_proba(chunk, ngrams)
        scores = pl.DataFrame({c: proba[:, k] for k, c in enumerate(PROBA_COLUMNS)})
        actions = champion.policy.decide(scores, champion.thresholds, chunk)
        parts.append(scores.with_columns(pl.Series("action", actions, dtype=pl.String),
                                         pl.lit(champion.version).alias("model_version")))
        if progress is not None:
            progress(chunk.height)
    if not parts:
        return pl.DataFrame(schema={**{c: pl.Float64 for c in PROBA_COLUMNS}, "action": pl.String,
                                    "model_version": pl.String})
    return pl.concat(parts)


def risk(scores: pl.DataFrame) -> np.ndarray:
    """The highest violating-policy probability of each row."""
    return scores.select([c for c in PROBA_COLUMNS if c != "p_benign"]).max_horizontal().to_numpy()
