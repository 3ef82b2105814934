"""Text normalisation and the stable hashes that deduplication and splits rely on."""

from __future__ import annotations

import hashlib
import re
import unicodedata

import polars as pl

_WS = re.compile(r"\s+")
EVAL_BUCKETS = 100


def normalise(text: str) -> str:
    """Canonical form used for dedup: NFKC, HTML entities the corpora leak, casefold, one space."""
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&#39;", "'")
    return _WS.sub(" ", text.casefold()).strip()


def text_hash(normalised: str) -> str:
    """16 hex chars of BLAKE2b over the normalised text: the identity of a text everywhere."""
    return hashlib.blake2b(normalised.encode("utf-8"), digest_size=8).hexdigest()


def eval_bucket(hash_hex: str) -> int:
    """A stable bucket in [0, 100) from the text hash, so duplicates always share a bucket."""
    return int(hash_hex[:8], 16) % EVAL_BUCKETS


def with_text_identity(df: pl.DataFrame, column: str = "text") -> pl.DataFrame:
    """Add `text_norm`, `text_hash` and `eval_bucket` columns for the texts in `column`."""
    norm = [normalise(t) for t in df[column].to_list()]
    hashes = [text_hash(n) for n in norm]
    return df.with_columns(
        pl.Series("text_norm", norm, dtype=pl.String),
        pl.Series("text_hash", hashes, dtype=pl.String),
        pl.Series("eval_bucket", [eval_bucket(h) for h in hashes], dtype=pl.Int16),
    )
