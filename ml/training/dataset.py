"""The training set: every label source joined with platform features, split by text and time.

The text decides the split, for every source: the evaluation bucket of a text's near-duplicate family
(`text_family`: the smallest text hash of its connected component of near-duplicates, from the matching
module's MinHash/LSH, ml/campaigns/links.py `text_families`; a text with none is its own family) puts it
in train (buckets below 80), validation (80-89) or test (90-99). Every copy of a text, on the platform or
in a reference set, and every variant of it (a spam template with another number, a ring's reworded
post) shares it: no text or its near-duplicates is ever both trained on and evaluated on.
Leave-one-source-out holds out whole families too; the out-of-fold scores group exact copies only
(ml/training/content.py `out_of_fold_proba` says why). Platform content is split by time as well, so the context-aware
risk model is trained on the past and judged on the future: platform rows train only from the
earlier days and are evaluated only from the later ones; the rows each rule removes are
counted and reported, never silent.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import polars as pl

from ml.taxonomy import POLICIES
from ml.text import EVAL_BUCKETS

SPLITS = ("train", "validation", "test")
LABEL_INDEX = {p: i for i, p in enumerate(POLICIES)}
FAMILY = "text_family"  # the near-duplicate family of a row's text: the unit every holdout keeps together


@dataclass(frozen=True)
class SplitRule:
    validation_buckets_from: int = 80  # texts in buckets >= this never train
    test_buckets_from: int = 90
    evaluation_days_share: float = 0.4  # platform content: the latest share of days is evaluated


def text_split(bucket: pl.Expr, rule: SplitRule) -> pl.Expr:
    return (
        pl.when(bucket >= rule.test_buckets_from)
        .then(pl.lit("test"))
        .when(bucket >= rule.validation_buckets_from)
        .then(pl.lit("validation"))
        .otherwise(pl.lit("train"))
    )


def family_bucket(family: pl.Expr) -> pl.Expr:
    """The evaluation bucket of a family's hash: ml.text.eval_bucket, as a Polars expression."""
    return (family.str.slice(0, 8).str.to_integer(base=16) % EVAL_BUCKETS).cast(pl.Int16)


def with_families(labels: pl.DataFrame, families: pl.DataFrame | None) -> pl.DataFrame:
    """`labels` with FAMILY: from `families` (text_hash, text_family), else the text's own hash."""
    if families is not None:
        labels = labels.join(families.select("text_hash", FAMILY), on="text_hash", how="left", maintain_order="left")
    own = pl.col("text_hash")
    return labels.with_columns((pl.col(FAMILY).fill_null(own) if FAMILY in labels.columns else own).alias(FAMILY))


def without_families(frame: pl.DataFrame, held: pl.DataFrame) -> pl.DataFrame:
    """The rows of `frame` in none of the near-duplicate families of the `held` rows."""
    return frame.filter(~pl.col(FAMILY).is_in(held[FAMILY].unique().implode()))


def assign_splits(
    labels: pl.DataFrame, rule: SplitRule = SplitRule(), families: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Add FAMILY (`families`: text_hash, text_family; None: each text its own) and `split` to every label
    row; drop platform rows whose text split and time disagree.

    Returns the split frame and how many rows each rule removed.
    """
    df = with_families(labels, families)
    df = df.with_columns(split=text_split(family_bucket(pl.col(FAMILY)), rule))
    platform = pl.col("content_id").is_not_null()
    days = df.filter(platform)["created_date"].unique().sort()
    if len(days):
        n_eval = max(2, round(len(days) * rule.evaluation_days_share)) if len(days) > 2 else 1
        cut = days[max(len(days) - n_eval, 0)]
        late = pl.col("created_date") >= cut
        keep = ~platform | ((pl.col("split") == "train") & ~late) | ((pl.col("split") != "train") & late)
    else:
        keep = pl.lit(True)
    removed = df.filter(~keep)
    out = df.filter(keep)
    facts = {
        "platform_rows_removed_late_train_text": removed.filter(pl.col("split") == "train").height,
        "platform_rows_removed_early_evaluation_text": removed.filter(pl.col("split") != "train").height,
    }
    return out, facts


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
    # The TextFeatureCache of every distinct text, saved beside the frame ("" for a set saved before it was).
    text_features: str = ""


def build_training_set(
    labels: pl.DataFrame,
    content: pl.DataFrame,
    author: pl.DataFrame,
    network: pl.DataFrame,
    rule: SplitRule = SplitRule(),
    bank: pl.DataFrame | None = None,
    campaign: pl.DataFrame | None = None,
    families: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, dict]:
    """Every label joined with the platform features of its content (null for reference records),
    split. `bank`: each content item's hash-bank match features (ml.matching.bank_matches
    `bank_match_features`); `campaign`: its campaign features (ml.features.build.campaign_features);
    `families`: each text's near-duplicate family (`assign_splits`). Returns the frame and split facts."""
    split, removed = assign_splits(labels, rule, families)
    frame = (
        split.join(content.drop("created_at", "surface", "language", "text_hash"), on="content_id", how="left")
        .join(author, on="content_id", how="left")
        .join(network.drop("component_id"), on="content_id", how="left")
    )
    if bank is not None:
        frame = frame.join(bank, on="content_id", how="left")
    if campaign is not None:
        frame = frame.join(campaign, on="content_id", how="left")
    frame = frame.sort("label_id")
    missing = frame.filter(pl.col("content_id").is_not_null() & pl.col("account_age_days").is_null()).height
    if missing:
        raise ValueError(f"{missing} labelled content items have no feature rows: rebuild the features")
    facts = {
        **removed,
        **{f"rows_{s}": int((frame["split"] == s).sum()) for s in SPLITS},
        "platform_rows": int(frame["content_id"].is_not_null().sum()),
        "reference_rows": int(frame["content_id"].is_null().sum()),
        "distinct_texts": frame["text_hash"].n_unique(),
        "text_families": frame[FAMILY].n_unique(),
    }
    return frame, facts


def platform_rows(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("content_id").is_not_null())


def held_out_texts(frame: pl.DataFrame, split: str = "test") -> pl.DataFrame:
    """One row per distinct text of a split, with its resolved label: the text-only evaluation set.

    Copies of a text from several sources keep the most specific label (ml.taxonomy.CONFLICT_PRECEDENCE:
    smishing's "scam" over the SMS set's "spam" for the same message), then the most trusted one.
    """
    from ml.taxonomy import CONFLICT_PRECEDENCE

    rank = pl.col("label").replace_strict(CONFLICT_PRECEDENCE, return_dtype=pl.Int8)
    return (
        frame.filter(pl.col("split") == split)
        .with_columns(_rank=rank)
        .sort("_rank", "confidence", "label_id", descending=[True, True, False])
        .unique("text_hash", keep="first", maintain_order=True)
        .drop("_rank")
        .sort("label_id")
    )
