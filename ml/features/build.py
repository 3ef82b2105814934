"""Assemble the feature tables from raw platform tables (one row per content item each)."""

from __future__ import annotations

import polars as pl

from ml.features.author import author_features
from ml.features.network import network_features
from ml.features.text import text_signals


def content_features(content: pl.DataFrame) -> pl.DataFrame:
    """Text signals plus the content's own platform context (surface, link and phone flags)."""
    base = content.select("content_id", "created_at", "surface", "language", "text_hash",
                          pl.col("has_link").cast(pl.Int8), pl.col("has_phone").cast(pl.Int8))
    return base.join(text_signals(content), on="content_id", how="left").with_columns(
        pl.col("promo_words").cast(pl.Int8))


__all__ = ["author_features", "content_features", "network_features"]
