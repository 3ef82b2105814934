"""Text signals and the hashed n-gram representation of content text.

The representation is label-free (hashed word 1-2-grams and character 2-4-grams), so it can
be computed for every text once, before any split exists, without leaking labels; a tree
model reads it as sparse columns. docs/features.md explains the choice and the measurement.
"""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer

WORD_BUCKETS = 1 << 14
CHAR_BUCKETS = 1 << 15
_EMOJI = r"[\x{1F300}-\x{1FAFF}\x{2600}-\x{27BF}\x{1F1E6}-\x{1F1FF}]"
# Rust regex has no backreferences: spell out "the same character three or more times".
_REPEATS = "|".join(f"{re.escape(ch)}{{3,}}" for ch in "abcdefghijklmnopqrstuvwxyz0123456789!?.*$")
_LEET = r"[a-z]+[0-9@$!|]+[a-z]+"  # h4te, fr33, w!n: digits or symbols inside words


def _signal_exprs() -> list[pl.Expr]:
    t = pl.col("text")
    lower = t.str.to_lowercase()
    n_chars = t.str.len_chars()
    return [
        n_chars.cast(pl.Int32).alias("text_chars"),
        t.str.count_matches(r"\S+").cast(pl.Int32).alias("text_words"),
        t.str.count_matches(r"(?i)https?://\S+|www\.\S+|\bURL\b|\b[a-z0-9-]+\.(?:com|net|org|co|info|ly|uk)\b")
        .cast(pl.Int32)
        .alias("url_count"),
        t.str.count_matches(r"\+?\d[\d\s\-]{7,}\d").cast(pl.Int32).alias("phone_count"),
        t.str.count_matches(r"[\w.+-]+@[\w-]+\.[\w.]+").cast(pl.Int32).alias("email_count"),
        t.str.count_matches(r"@\w+").cast(pl.Int32).alias("mention_count"),
        t.str.count_matches(r"#\w+").cast(pl.Int32).alias("hashtag_count"),
        (t.str.count_matches(r"[A-Z]") / n_chars.clip(lower_bound=1)).cast(pl.Float32).alias("upper_ratio"),
        (t.str.count_matches(r"\d") / n_chars.clip(lower_bound=1)).cast(pl.Float32).alias("digit_ratio"),
        t.str.count_matches(r"[!?]").cast(pl.Int32).alias("exclaim_count"),
        lower.str.count_matches(_REPEATS).cast(pl.Int32).alias("repeated_char_runs"),
        t.str.count_matches(_EMOJI).cast(pl.Int32).alias("emoji_count"),
        lower.str.count_matches(_LEET).cast(pl.Int32).alias("leetspeak_tokens"),
        t.str.count_matches(r"\b(?:\w ){3,}\w\b").cast(pl.Int32).alias("spaced_letter_runs"),
        lower.str.contains(r"\b(?:free|win|won|prize|claim|urgent|cash|call|txt|text)\b").alias("promo_words"),
    ]


SIGNAL_EXPRS: list[pl.Expr] = _signal_exprs()


def text_signals(content: pl.DataFrame) -> pl.DataFrame:
    """One row per content item: lengths, counts and obfuscation signals of its text."""
    return content.select("content_id", *SIGNAL_EXPRS)


_WORDS = HashingVectorizer(
    n_features=WORD_BUCKETS,
    analyzer="word",
    ngram_range=(1, 2),
    alternate_sign=False,
    norm="l2",
    lowercase=True,
    token_pattern=r"(?u)\b\w+\b",
)
_CHARS = HashingVectorizer(
    n_features=CHAR_BUCKETS, analyzer="char_wb", ngram_range=(2, 4), alternate_sign=False, norm="l2", lowercase=True
)


def distinct(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """The distinct texts in first-seen order, and each input's index into them."""
    index: dict[str, int] = {}
    rows = np.fromiter((index.setdefault(t, len(index)) for t in texts), dtype=np.int64, count=len(texts))
    return list(index), rows


def hashed_ngrams(texts: list[str]) -> sp.csr_matrix:
    """Sparse [word 1-2-grams | char 2-4-grams] hashed counts, L2-normalised per block.

    Each distinct text is featurised once (reposts are common) and its row reused.
    """
    unique, rows = distinct(texts)
    matrix = sp.hstack([_WORDS.transform(unique), _CHARS.transform(unique)], format="csr", dtype=np.float32)
    return matrix if len(unique) == len(texts) else matrix[rows]


NGRAM_DIM = WORD_BUCKETS + CHAR_BUCKETS
