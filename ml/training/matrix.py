"""Turning a training-set frame into model inputs, the same way for training and scoring."""

from __future__ import annotations

import functools

import numpy as np
import polars as pl

from ml.campaigns.features import FEATURES as CAMPAIGN_FEATURES
from ml.features.text import SIGNAL_EXPRS
from ml.matching.bank_matches import BANK_FEATURES

SURFACE_CODES = {"post": 0, "comment": 1, "video_comment": 2, "direct_message": 3}

# Numeric context every model sees; missing platform context (an external file scored by
# the CLI) is filled with the neutral defaults below.
DENSE_DEFAULTS: dict[str, float] = {
    "surface_code": np.nan,
    "has_link": 0,
    "has_phone": 0,
    "text_chars": 0,
    "text_words": 0,
    "url_count": 0,
    "phone_count": 0,
    "email_count": 0,
    "mention_count": 0,
    "hashtag_count": 0,
    "upper_ratio": 0,
    "digit_ratio": 0,
    "exclaim_count": 0,
    "repeated_char_runs": 0,
    "emoji_count": 0,
    "leetspeak_tokens": 0,
    "spaced_letter_runs": 0,
    "promo_words": 0,
    # ml/features/images.py: read from the upload itself, so known wherever the item is scored.
    "has_image": 0,
    "ocr_confidence": 0,
    "image_text_share": 0,
    "account_age_days": np.nan,
    "follower_count": np.nan,
    "verified": np.nan,
    "prior_posts": np.nan,
    "posts_last_24h": np.nan,
    "prior_reports_received": np.nan,
    "prior_enforcements": np.nan,
    "component_size": np.nan,
    "component_enforced_share": np.nan,
    "shares_fingerprints": np.nan,
    # ml/matching/bank_matches.py: the item's closest hash-bank matches, point in time.
    **dict.fromkeys(BANK_FEATURES, np.nan),
    # ml/campaigns/features.py: what the item's copies and shared artifacts showed before it was posted.
    **dict.fromkeys(CAMPAIGN_FEATURES, np.nan),
}
# New columns go at the end: a model records the columns it was trained on (`dense_columns_of`), and one
# trained before a column existed reads the first columns it knows, so a deployed model keeps scoring after
# an upgrade adds features.
DENSE_COLUMNS: tuple[str, ...] = tuple(DENSE_DEFAULTS)


def dense_columns_of(n_dense: int) -> tuple[str, ...]:
    """The dense columns of a model trained on `n_dense` of them (the first n: columns are only appended)."""
    if not 0 < n_dense <= len(DENSE_COLUMNS):
        raise ValueError(f"a model reads {n_dense} dense columns; this code knows {len(DENSE_COLUMNS)}")
    return DENSE_COLUMNS[:n_dense]


# Columns that only the platform knows (not derivable from the text itself).
CONTEXT_COLUMNS: tuple[str, ...] = (
    "surface",
    "account_age_days",
    "follower_count",
    "verified",
    "prior_posts",
    "posts_last_24h",
    "prior_reports_received",
    "prior_enforcements",
    "component_size",
    "component_enforced_share",
    "shares_fingerprints",
    *BANK_FEATURES,
    *CAMPAIGN_FEATURES,
)


def with_text_signals(frame: pl.DataFrame) -> pl.DataFrame:
    """Add the text-derived columns a frame lacks (an external file has only text)."""
    if "text_chars" in frame.columns:
        return frame
    frame = frame.with_columns(SIGNAL_EXPRS)
    extra = {}
    if "has_link" not in frame.columns:
        extra["has_link"] = (pl.col("url_count") > 0).cast(pl.Int8)
    if "has_phone" not in frame.columns:
        extra["has_phone"] = (pl.col("phone_count") > 0).cast(pl.Int8)
    return frame.with_columns(**extra) if extra else frame


def mask_context(frame: pl.DataFrame, share: float, seed: int) -> pl.DataFrame:
    """Null the platform context on a random `share` of rows, so a model also learns to score
    text whose context is unknown (an external file, an API call without context)."""
    if share <= 0:
        return frame
    rng = np.random.default_rng(seed)
    hide = pl.Series(rng.random(frame.height) < share)
    cols = [c for c in CONTEXT_COLUMNS if c in frame.columns]
    return frame.with_columns(pl.when(hide).then(None).otherwise(pl.col(c)).alias(c) for c in cols)


def dense_matrix(frame: pl.DataFrame, columns: tuple[str, ...] = DENSE_COLUMNS) -> np.ndarray:
    """float32 [rows, len(columns)] of DENSE_COLUMNS `columns`; absent ones take their default (NaN = unknown)."""
    frame = with_text_signals(frame)
    present = frozenset(frame.columns) & (DENSE_DEFAULTS.keys() | {"surface"})
    return frame.select(_dense_exprs(present, columns)).to_numpy().astype(np.float32, copy=False)


@functools.lru_cache(maxsize=64)
def _dense_exprs(present: frozenset[str], columns: tuple[str, ...]) -> tuple[pl.Expr, ...]:
    """The expressions of `dense_matrix` for a frame with these columns, built once per column set:
    building them costs more than evaluating them on the one row of an online request."""
    exprs = []
    for name in columns:
        default = DENSE_DEFAULTS[name]
        if name == "surface_code" and "surface" in present:
            col = pl.col("surface").replace_strict(SURFACE_CODES, default=None, return_dtype=pl.Float32)
        elif name in present:
            col = pl.col(name).cast(pl.Float32)
        else:
            col = pl.lit(None, dtype=pl.Float32)
        exprs.append(col.fill_null(default).alias(name))
    return tuple(exprs)


def text_inputs(frame: pl.DataFrame, columns: tuple[str, ...] = DENSE_COLUMNS) -> np.ndarray:
    """Dense inputs of a text-only model: text signals, with every platform column unknown."""
    return dense_matrix(frame.select("text"), columns)


def risk_features(
    frame: pl.DataFrame, classifier_proba: np.ndarray, columns: tuple[str, ...] = DENSE_COLUMNS
) -> np.ndarray:
    """The risk model's inputs: [content classifier probabilities | dense platform context and text signals]."""
    return np.hstack([classifier_proba.astype(np.float32), dense_matrix(frame, columns)])
