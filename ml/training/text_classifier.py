"""Linear text classifiers over hashed n-grams: the building block of the content classifier and the baseline.

A `LinearTextClassifier` is logistic regression per policy (one-vs-rest, fitted by SGD so a fit
takes seconds: leave-one-source-out and out-of-fold scores need a few dozen fits per training run)
on TF-IDF weighted hashed word 1-2-grams and character 2-5-grams, optionally with:
- view `nb`: the same n-grams scaled by each policy's naive-Bayes log-count ratio (NB-LR, Wang &
  Manning 2012), averaged with the TF-IDF view;
- `signals`: a small block of text signals (length, URL, phone and e-mail counts, casing, digits,
  repeated characters, emoji, leetspeak, spaced letters, promotional words), computed from the
  text alone so it is there at serving time too. Mention and hashtag counts are left out: they
  mostly say which corpus a text came from (OLID replaced every user by "@USER").
Inputs are a `TextMatrix` (n-gram counts plus signals), built once per distinct text.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import normalize

from ml.features.text import SIGNAL_EXPRS, distinct
from ml.taxonomy import POLICIES

_WORDS = HashingVectorizer(
    n_features=1 << 17,
    analyzer="word",
    ngram_range=(1, 2),
    alternate_sign=False,
    norm=None,
    lowercase=True,
    token_pattern=r"(?u)\b\w+\b",
)
_CHARS = HashingVectorizer(
    n_features=1 << 18, analyzer="char_wb", ngram_range=(2, 5), alternate_sign=False, norm=None, lowercase=True
)
# Text signals a classifier may read (ml.features.text); mention and hashtag counts are corpus artefacts.
SIGNAL_COLUMNS: tuple[str, ...] = (
    "text_chars",
    "text_words",
    "url_count",
    "phone_count",
    "email_count",
    "upper_ratio",
    "digit_ratio",
    "exclaim_count",
    "repeated_char_runs",
    "emoji_count",
    "leetspeak_tokens",
    "spaced_letter_runs",
    "promo_words",
)
_SHARES = ("upper_ratio", "digit_ratio", "promo_words")  # already in [0, 1]; counts are log-squashed


def ngram_counts(texts: list[str]) -> sp.csr_matrix:
    """Raw hashed n-gram counts [words | chars]; each distinct text is featurised once."""
    unique, rows = distinct(texts)
    counts = sp.hstack([_WORDS.transform(unique), _CHARS.transform(unique)], format="csr", dtype=np.float32)
    return counts if len(unique) == len(texts) else counts[rows]


def signal_matrix(texts: list[str]) -> np.ndarray:
    """float32 [rows, len(SIGNAL_COLUMNS)]: shares as they are, counts as log1p(count) / 3 (about [0, 2])."""
    frame = pl.DataFrame({"text": texts}, schema={"text": pl.String}).select(SIGNAL_EXPRS).select(SIGNAL_COLUMNS)
    out = frame.with_columns(pl.col("promo_words").cast(pl.Float32)).to_numpy().astype(np.float32)
    counts = [i for i, c in enumerate(SIGNAL_COLUMNS) if c not in _SHARES]
    out[:, counts] = np.log1p(out[:, counts]) / 3.0
    return out


@dataclass(frozen=True)
class TextMatrix:
    """What a linear text classifier reads: hashed n-gram counts and text signals, row-aligned."""

    counts: sp.csr_matrix
    signals: np.ndarray

    @classmethod
    def of(cls, texts: list[str]) -> TextMatrix:
        unique, rows = distinct(texts)
        m = cls(ngram_counts(unique), signal_matrix(unique))
        return m if len(unique) == len(texts) else m.take(rows)

    def take(self, rows: np.ndarray) -> TextMatrix:
        return TextMatrix(self.counts[rows], self.signals[rows])

    def __len__(self) -> int:
        return self.counts.shape[0]


class TextFeatureCache:
    """The TextMatrix of every distinct text of a frame, built once and looked up by text hash.

    Leave-one-source-out and out-of-fold fits reuse the same texts a dozen times; featurising them
    once is most of what makes those evaluations affordable on two cores.
    """

    def __init__(self, frame: pl.DataFrame):
        texts = frame.select("text_hash", "text").unique("text_hash", keep="first", maintain_order=True)
        self._index = {h: i for i, h in enumerate(texts["text_hash"].to_list())}
        self._matrix = TextMatrix.of(texts["text"].to_list())

    def rows(self, frame: pl.DataFrame) -> TextMatrix:
        """The TextMatrix of `frame`'s rows (every text hash must be one the cache was built from)."""
        try:
            return self._matrix.take(
                np.fromiter((self._index[h] for h in frame["text_hash"].to_list()), dtype=np.int64, count=frame.height)
            )
        except KeyError as exc:
            raise KeyError(f"text hash {exc.args[0]} is not in the feature cache") from None


@dataclass(frozen=True)
class ClassifierParams:
    alpha: float = 3e-6  # L2 strength (chosen on the validation split, docs/models.md)
    epochs: int = 10
    views: tuple[str, ...] = ("tfidf",)  # ("tfidf", "nb") adds the NB-LR view
    signals: bool = False  # append the text-signal block to the TF-IDF view
    signal_scale: float = 1.0  # the block's scale against unit-norm TF-IDF rows
    seed: int = 42

    @classmethod
    def from_dict(cls, d: dict) -> ClassifierParams:
        return cls(**{**d, "views": tuple(d.get("views", ("tfidf",)))})


def _sgd(params: ClassifierParams) -> SGDClassifier:
    return SGDClassifier(
        loss="log_loss", alpha=params.alpha, max_iter=params.epochs, tol=None, random_state=params.seed
    )


class LinearTextClassifier:
    """Fitted on a TextMatrix; `proba` returns rows summing to one over POLICIES."""

    def __init__(self, params: ClassifierParams):
        self.params = params
        self.idf: np.ndarray | None = None
        self.tfidf_models: list[SGDClassifier | None] = []
        self.nb_ratios: list[np.ndarray] = []
        self.nb_models: list[SGDClassifier | None] = []

    def _tfidf(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        tf = counts.copy()
        tf.data = 1.0 + np.log(tf.data)  # sublinear term frequency
        return normalize(tf @ sp.diags(self.idf))

    def _design(self, x: TextMatrix) -> sp.csr_matrix:
        X = self._tfidf(x.counts)
        if self.params.signals:
            X = sp.hstack([X, sp.csr_matrix(x.signals * self.params.signal_scale)], format="csr")
        return X

    def fit(self, x: TextMatrix, y: np.ndarray, weight: np.ndarray | None = None) -> LinearTextClassifier:
        n = len(x)
        weight = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
        df = np.bincount(x.counts.indices, minlength=x.counts.shape[1])
        self.idf = (np.log((1 + n) / (1 + df)) + 1.0).astype(np.float32)
        X = self._design(x)
        if "nb" in self.params.views:
            present = (x.counts > 0).astype(np.float32)
            T = X if X.shape[1] == x.counts.shape[1] else self._tfidf(x.counts)
        for k in range(len(POLICIES)):
            yk = y == k
            if "tfidf" in self.params.views:
                self.tfidf_models.append(_sgd(self.params).fit(X, yk, sample_weight=weight) if yk.any() else None)
            if "nb" in self.params.views:
                # Smoothed, weighted log-count ratio of each n-gram for this policy against the rest.
                pos = np.asarray(present[yk].T @ weight[yk]).ravel() + 1.0
                neg = np.asarray(present[~yk].T @ weight[~yk]).ravel() + 1.0
                ratio = np.log((pos / pos.sum()) / (neg / neg.sum())).astype(np.float32)
                self.nb_ratios.append(ratio)
                Xnb = normalize(T @ sp.diags(ratio))
                self.nb_models.append(_sgd(self.params).fit(Xnb, yk, sample_weight=weight) if yk.any() else None)
        return self

    def proba(self, x: TextMatrix) -> np.ndarray:
        views = []
        if self.tfidf_models:
            X = self._design(x)
            views.append(_ovr(self.tfidf_models, lambda k: X, len(x)))
        if self.nb_models:
            T = self._tfidf(x.counts)
            views.append(_ovr(self.nb_models, lambda k: normalize(T @ sp.diags(self.nb_ratios[k])), len(x)))
        p = np.mean(views, axis=0)
        return p / p.sum(axis=1, keepdims=True)

    def describe(self) -> dict:
        return asdict(self.params)


def _ovr(models: list, design, rows: int) -> np.ndarray:
    cols = [np.full(rows, 1e-6) if m is None else m.predict_proba(design(k))[:, 1] for k, m in enumerate(models)]
    p = np.clip(np.column_stack(cols), 1e-6, None)
    return p / p.sum(axis=1, keepdims=True)


def group_folds(groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A fold number in [0, k) per row; rows sharing a group (a text hash) share a fold."""
    unique, inverse = np.unique(groups, return_inverse=True)
    fold_of_group = np.random.default_rng(seed).integers(0, k, size=len(unique))
    return fold_of_group[inverse]
