"""PSI on bins fixed when the champion's reference is built.

Calibrated scores in ten equal bands of [0, 1] and account age in day/week/month/quarter/year bands
(FIXED_EDGES says why); any other numeric column with more than PSI_BINS distinct reference values at
the reference's deciles (interior cut points only, ties merged, open-ended outer bins); every other
column (flags, small counts, surface, language) one bin per reference value and one more for values
the reference never had. Shares are floored at PSI_FLOOR before the log, so a bin empty on one side
costs a large but finite amount.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import polars as pl

from ml.taxonomy import VIOLATING

PSI_BINS = 10
PSI_FLOOR = 1e-4
SCORE_COLUMNS: tuple[str, ...] = (*(f"p_{p}" for p in VIOLATING), "risk")
# The model inputs whose drift is watched: behaviour, network and text signals of platform content. Counts
# over an author's whole history (prior posts, reports, enforcements, and the enforced share of a ring) are
# not: they only grow as the platform's history does, so against any past window they drift by design.
NUMERIC_FEATURES: tuple[str, ...] = (
    "account_age_days",
    "follower_count",
    "posts_last_24h",
    "component_size",
    "text_chars",
    "text_words",
    "url_count",
    "phone_count",
    "mention_count",
    "hashtag_count",
    "upper_ratio",
    "digit_ratio",
    "exclaim_count",
    "emoji_count",
    "leetspeak_tokens",
    "has_link",
    "has_phone",
    "promo_words",
    "verified",
    "shares_fingerprints",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("surface", "language")
# Columns cut at fixed points rather than the reference's deciles. Calibrated scores: ten equal bands of
# [0, 1], so that a shift inside the bottom band, where most content and no decision lies, is no drift. Account
# age: the bands trust-and-safety teams read (day, week, month, quarter, year), so that accounts growing a
# week older is no drift but a wave of new accounts is.
FIXED_EDGES: dict[str, tuple[float, ...]] = {
    **{c: tuple(k / PSI_BINS for k in range(1, PSI_BINS)) for c in SCORE_COLUMNS},
    "account_age_days": (1.0, 7.0, 30.0, 90.0, 365.0),
}
# The binning rules' identity: a reference binned by other rules (older code) is binned again from its
# scored rows when it is next used, so a change of rules never compares a day with stale bins.
BINNING = hashlib.blake2b(
    repr(
        (PSI_BINS, PSI_FLOOR, SCORE_COLUMNS, NUMERIC_FEATURES, CATEGORICAL_FEATURES, sorted(FIXED_EDGES.items()))
    ).encode(),
    digest_size=6,
).hexdigest()


@dataclass(frozen=True)
class Bins:
    """How one column is binned for PSI, and the reference's share of rows in each bin."""

    column: str
    shares: tuple[float, ...]
    edges: tuple[float, ...] = ()  # numeric: interior cut points; bin i is [edges[i-1], edges[i])
    values: tuple[str, ...] = ()  # by value: the reference's values; one more bin for any other

    @property
    def by_value(self) -> bool:
        return not self.edges

    def counts(self, column: pl.Series) -> np.ndarray:
        """Rows of `column` in each bin (nulls and non-finite numbers are left out)."""
        if self.by_value:
            index = {v: i for i, v in enumerate(self.values)}
            at = _keys(column).replace_strict(index, default=len(self.values), return_dtype=pl.Int64).to_numpy()
            return np.bincount(at, minlength=len(self.values) + 1)
        x = _finite_floats(column)
        return np.bincount(np.searchsorted(np.array(self.edges), x, side="right"), minlength=len(self.edges) + 1)


def _is_number(column: pl.Series) -> bool:
    return column.dtype.is_numeric() or column.dtype == pl.Boolean


def _finite_floats(column: pl.Series) -> np.ndarray:
    x = column.drop_nulls().cast(pl.Float64).to_numpy()
    return x[np.isfinite(x)]


def _keys(column: pl.Series) -> pl.Series:
    """A column's values as bin keys: numbers (and flags) in one canonical spelling, text as is."""
    if _is_number(column):
        return pl.Series(_finite_floats(column)).cast(pl.String)
    return column.drop_nulls().cast(pl.String)


def fit_bins(name: str, column: pl.Series) -> Bins:
    """The reference's bins for `column` (see the module docstring for the rule)."""
    if name in FIXED_EDGES:
        edges = FIXED_EDGES[name]
        return Bins(name, _shares(Bins(name, (), edges=edges).counts(column)), edges=edges)
    if _is_number(column):
        x = _finite_floats(column)
        if len(np.unique(x)) > PSI_BINS:
            edges = tuple(float(e) for e in np.unique(np.quantile(x, np.arange(1, PSI_BINS) / PSI_BINS)))
            return Bins(name, _shares(Bins(name, (), edges=edges).counts(column)), edges=edges)
    values = tuple(sorted(_keys(column).unique().to_list()))
    return Bins(name, _shares(Bins(name, (), values=values).counts(column)), values=values)


def _shares(counts: np.ndarray) -> tuple[float, ...]:
    total = counts.sum()
    return tuple(float(c) for c in (counts / total if total else counts.astype(float)))


def psi(bins: Bins, column: pl.Series) -> float:
    """Population stability index of `column` against the reference shares of `bins`."""
    counts = bins.counts(column)
    if counts.sum() == 0:
        return 0.0
    actual = np.clip(counts / counts.sum(), PSI_FLOOR, None)
    expected = np.clip(np.array(bins.shares), PSI_FLOOR, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def with_risk(scores: pl.DataFrame) -> pl.DataFrame:
    return scores.with_columns(risk=pl.max_horizontal(*(f"p_{p}" for p in VIOLATING)))


def reference_bins(scored: pl.DataFrame) -> dict[str, Bins]:
    """The bins of every watched column `scored` (the reference rows) has, by the current rules."""
    frame = with_risk(scored)
    columns = [c for c in (*SCORE_COLUMNS, *NUMERIC_FEATURES, *CATEGORICAL_FEATURES) if c in frame.columns]
    return {c: fit_bins(c, frame[c]) for c in columns}
