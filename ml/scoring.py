"""Score content with the champion: calibrated probabilities, an action, the model version.

Batch scoring, the offline CLI and the HTTP service all go through `score_frame`, so the
same text with the same context gets the same scores and action everywhere. Memory is bounded
by the batch size, never by the input: hashed n-grams (several KB per text) are built one
batch at a time and dropped before the next.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ml.enforcement import DEFAULT_POLICY_PATH, EnforcementPolicy, load_policy
from ml.features.text import hashed_ngrams
from ml.registry import Registry, RegistryError
from ml.training.artifacts import PROBA_COLUMNS, ModelArtifact
from ml.training.scorer import Scorer

# Why a row's score deserves a second look; null when nothing is wrong with the input text.
# "empty_text": the text is missing, empty or only whitespace; it is scored like any text (the
#   model then answers from context alone, usually `allow`), but that answer says nothing about
#   content nobody wrote, so callers can route it separately.
# "invalid_utf8": the text held bytes that are not UTF-8 and was scored with U+FFFD in their
#   place (set by `ml.scoring_io.score_file`, the only path that reads raw bytes).
TEXT_FLAGS = ("empty_text", "invalid_utf8")
OUTPUT_COLUMNS = (*PROBA_COLUMNS, "action", "model_version", "text_flag")
OUTPUT_SCHEMA = {**{c: pl.Float64 for c in PROBA_COLUMNS}, "action": pl.String, "model_version": pl.String,
                 "text_flag": pl.String}


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
    entry = Registry(models_dir).champion()
    if entry is None:
        raise RegistryError(f"no champion in {models_dir}: run `trustlake run` (or promote a model) first")
    return load_model(Path(entry["path"]), policy_path)


def score_frame(champion: Champion, frame: pl.DataFrame, batch_size: int = 20_000,
                progress=None) -> pl.DataFrame:
    """One output row per input row, in order: p_<policy> columns, action, model_version, text_flag.

    `frame` needs `text`; any platform context columns it has (surface, account_age_days, ...)
    are used and missing ones are treated as unknown. Hashed n-grams are built per batch of
    `batch_size` rows (each distinct text once within its batch, since reposts are common), so
    peak memory depends on the batch size and not on how many texts the call has.
    """
    frame = frame.with_columns(pl.col("text").cast(pl.String).fill_null(""))
    scorer = champion.scorer
    parts = []
    for start in range(0, frame.height, batch_size):
        chunk = frame.slice(start, batch_size)
        ngrams = hashed_ngrams(chunk["text"].to_list()) if scorer.uses_hashed_ngrams else None
        proba = scorer.predict_proba(chunk, ngrams)
        del ngrams  # the largest object of the batch: free it before the next one is built
        scores = pl.DataFrame({c: proba[:, k] for k, c in enumerate(PROBA_COLUMNS)})
        actions = champion.policy.decide(scores, champion.thresholds, chunk)
        empty = chunk["text"].str.strip_chars().str.len_chars() == 0
        parts.append(scores.with_columns(
            pl.Series("action", actions, dtype=pl.String),
            pl.lit(champion.version, dtype=pl.String).alias("model_version"),
            pl.when(empty).then(pl.lit("empty_text")).otherwise(pl.lit(None, dtype=pl.String)).alias("text_flag"),
        ))
        if progress is not None:
            progress(chunk.height)
    if not parts:
        return pl.DataFrame(schema=OUTPUT_SCHEMA)
    return pl.concat(parts)


def risk(scores: pl.DataFrame) -> np.ndarray:
    """The highest violating-policy probability of each row."""
    return scores.select([c for c in PROBA_COLUMNS if c != "p_benign"]).max_horizontal().to_numpy()
