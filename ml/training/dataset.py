"""The training set: labels joined with features, split by time and by text.

Rows are split by creation day (train on the earliest days, validate on the next, test on
the latest). Then every text belongs to exactly one split: texts whose evaluation bucket is
held out never train, and a text that appears in an earlier split is removed from the later
ones, so no text or its duplicates is ever both trained on and evaluated on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import polars as pl

from ml.taxonomy import POLICIES

SPLITS = ("train", "validation", "test")
LABEL_INDEX = {p: i for i, p in enumerate(POLICIES)}


@dataclass(frozen=True)
class SplitRule:
    validation_share: float = 0.2  # share of days, the latest after train
    test_share: float = 0.2  # share of days, the latest
    holdout_buckets_from: int = 90  # texts in buckets >= this never train


def assign_splits(labels: pl.DataFrame, rule: SplitRule = SplitRule()) -> tuple[pl.DataFrame, dict[str, int]]:
    """Add `split` to labelled rows and drop rows whose text already sits in an earlier split.

    Returns the split frame and how many rows each rule removed (reported, never silent).
    """
    days = labels["created_date"].unique().sort()
    n = len(days)
    n_test = max(1, round(n * rule.test_share))
    n_val = max(1, round(n * rule.validation_share))
    val_start, test_start = days[n - n_test - n_val], days[n - n_test]
    period = (
        pl.when(pl.col("created_date") >= test_start).then(2)
        .when(pl.col("created_date") >= val_start).then(1)
        .otherwise(0)
    )
    df = labels.with_columns(_period=period)
    held_out_train = df.filter((pl.col("_period") == 0) & (pl.col("eval_bucket") >= rule.holdout_buckets_from))
    df = df.filter(~((pl.col("_period") == 0) & (pl.col("eval_bucket") >= rule.holdout_buckets_from)))
    first = df.group_by("text_hash").agg(pl.col("_period").min().alias("_home"))
    df = df.join(first, on="text_hash")
    crossing = df.filter(pl.col("_period") != pl.col("_home"))
    df = df.filter(pl.col("_period") == pl.col("_home"))
    out = df.with_columns(split=pl.col("_period").replace_strict(dict(enumerate(SPLITS)), return_dtype=pl.String)
                          ).drop("_period", "_home")
    return out, {"held_out_bucket_rows_removed_from_train": held_out_train.height,
                 "duplicate_text_rows_removed_from_later_splits": crossing.height}


def dataset_version(frame: pl.DataFrame) -> str:
    """Content hash of the training set: the version recorded on every model trained from it."""
    h = hashlib.blake2b(digest_size=8)
    for col in sorted(frame.columns):
        h.update(col.encode())
        h.update(frame[col].hash(seed=0).to_numpy().tobytes())
    return h.hexdigest()


def label_array(frame: pl.DataFrame) -> np.ndarray:
    return frame["label"].replace_strict(LABEL_INDEX, return_dtype=pl.Int32).to_numpy()


@dataclass(frozen=True)
class TrainingSetRef:
    """What the training_set asset hands to the model assets."""

    path: str
    version: str
    rows: dict


def build_training_set(labels: pl.DataFrame, content: pl.DataFrame, author: pl.DataFrame,
                       network: pl.DataFrame, rule: SplitRule = SplitRule()) -> tuple[pl.DataFrame, dict]:
    """Labels joined with every feature table, split. Returns the frame and split facts."""
    split, removed = assign_splits(labels, rule)
    frame = (
        split.join(content.drop("created_at", "surface", "language", "text_hash"), on="content_id", how="inner")
        .join(author, on="content_id", how="inner")
        .join(network.drop("component_id"), on="content_id", how="inner")
        .sort("created_at", "content_id")
    )
    missing = split.height - frame.height
    if missing:
        raise ValueError(f"{missing} labelled content items have no feature rows: rebuild the features")
    facts = {**removed, **{f"rows_{s}": int((frame["split"] == s).sum()) for s in SPLITS}}
    return frame, facts
