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

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import normalize

from ml.features.text import SIGNAL_EXPRS, distinct
from ml.lake import atomic_write
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
    return signal_block(pl.DataFrame({"text": texts}, schema={"text": pl.String}).select(SIGNAL_EXPRS))


def signal_block(signals: pl.DataFrame) -> np.ndarray:
    """`signal_matrix` of texts whose signal columns (`SIGNAL_EXPRS`) are already computed: the serving
    path computes them once for the classifier and the risk model's inputs (ml/scoring/compiled.py)."""
    frame = signals.select(SIGNAL_COLUMNS)
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
    once is most of what makes those evaluations affordable on two cores. The training set's cache
    is saved beside it (`save`, `load`), so each training step reads it instead of featurising again.
    """

    def __init__(self, frame: pl.DataFrame | None = None):
        if frame is None:
            return
        texts = frame.select("text_hash", "text").unique("text_hash", keep="first", maintain_order=True)
        self._hashes = texts["text_hash"].to_list()
        self._index = {h: i for i, h in enumerate(self._hashes)}
        self._matrix = TextMatrix.of(texts["text"].to_list())

    def rows(self, frame: pl.DataFrame) -> TextMatrix:
        """The TextMatrix of `frame`'s rows (every text hash must be one the cache was built from)."""
        try:
            return self._matrix.take(
                np.fromiter((self._index[h] for h in frame["text_hash"].to_list()), dtype=np.int64, count=frame.height)
            )
        except KeyError as exc:
            raise KeyError(f"text hash {exc.args[0]} is not in the feature cache") from None

    def save(self, path: Path) -> Path:
        c = self._matrix.counts
        arrays = {
            "data": c.data,
            "indices": c.indices,
            "indptr": c.indptr,
            "shape": np.array(c.shape),
            "signals": self._matrix.signals,
            "hashes": np.array(self._hashes, dtype=object).astype("U16"),
        }
        with atomic_write(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path: Path) -> TextFeatureCache:
        with np.load(path) as z:
            counts = sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=tuple(z["shape"]))
            cache = cls()
            cache._hashes = z["hashes"].tolist()
            cache._matrix = TextMatrix(counts, z["signals"])
        cache._index = {h: i for i, h in enumerate(cache._hashes)}
        return cache


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


def default_threads() -> int:
    """Threads for fitting: the cores this process may run on. scikit-learn's SGD releases the GIL
    while it fits, so one-vs-rest fits in threads use every core with no copy of the design matrix."""
    return max(1, len(os.sched_getaffinity(0)))


def run_fits(jobs: list[Callable[[], None]], threads: int | None = None) -> None:
    """Run independent fitting jobs (closures that store their own result) on `threads` threads."""
    threads = min(len(jobs), threads or default_threads())
    if threads <= 1:
        for job in jobs:
            job()
        return
    with ThreadPoolExecutor(threads, thread_name_prefix="fit") as pool:
        for future in [pool.submit(job) for job in jobs]:
            future.result()  # re-raises a failed fit here


def tfidf(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """Sublinear TF times IDF, each row L2-normalised. Scales the stored values in place of a
    product with a diagonal matrix: the same numbers, a fifth of a recipe fit's time."""
    tf = counts.copy()
    tf.data = (1.0 + np.log(tf.data)) * idf[tf.indices]
    return normalize(tf)


def fitted_idf(counts: sp.csr_matrix) -> np.ndarray:
    n = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1])
    return (np.log((1 + n) / (1 + df)) + 1.0).astype(np.float32)


class LinearTextClassifier:
    """Fitted on a TextMatrix; `proba` returns rows summing to one over POLICIES."""

    def __init__(self, params: ClassifierParams):
        self.params = params
        self.idf: np.ndarray | None = None
        self.tfidf_models: list[SGDClassifier | None] = []
        self.nb_ratios: list[np.ndarray] = []
        self.nb_models: list[SGDClassifier | None] = []

    def _tfidf(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        return tfidf(counts, self.idf)

    def _design(self, x: TextMatrix, T: sp.csr_matrix | None = None) -> sp.csr_matrix:
        X = self._tfidf(x.counts) if T is None else T
        if self.params.signals:
            X = sp.hstack([X, sp.csr_matrix(x.signals * self.params.signal_scale)], format="csr")
        return X

    def fit(
        self, x: TextMatrix, y: np.ndarray, weight: np.ndarray | None = None, threads: int | None = None
    ) -> LinearTextClassifier:
        run_fits(self.fit_jobs(x, y, weight), threads)
        return self

    def fit_jobs(
        self, x: TextMatrix, y: np.ndarray, weight: np.ndarray | None = None, designs: DesignCache | None = None
    ) -> list[Callable[[], None]]:
        """Prepare the fit (IDF, design matrices, naive-Bayes ratios) and return one job per
        one-vs-rest model; the model is fitted once every job has run. `designs` shares the
        TF-IDF matrix between members fitted on the same rows."""
        n = len(x)
        weight = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
        designs = designs or DesignCache(x)
        self.idf, T = designs.tfidf()
        X = designs.design(self.params.signals, self.params.signal_scale) if "tfidf" in self.params.views else None
        policies = range(len(POLICIES))
        self.tfidf_models = [None] * len(POLICIES) if "tfidf" in self.params.views else []
        self.nb_models = [None] * len(POLICIES) if "nb" in self.params.views else []
        self.nb_ratios = []
        jobs: list[Callable[[], None]] = []

        def job(models: list, k: int, design: sp.csr_matrix, target: np.ndarray) -> Callable[[], None]:
            def fit() -> None:
                models[k] = _sgd(self.params).fit(design, target, sample_weight=weight)

            return fit

        present = (x.counts > 0).astype(np.float32) if "nb" in self.params.views else None
        for k in policies:
            yk = y == k
            if "tfidf" in self.params.views and yk.any():
                jobs.append(job(self.tfidf_models, k, X, yk))
            if "nb" in self.params.views:
                # Smoothed, weighted log-count ratio of each n-gram for this policy against the rest.
                pos = np.asarray(present[yk].T @ weight[yk]).ravel() + 1.0
                neg = np.asarray(present[~yk].T @ weight[~yk]).ravel() + 1.0
                ratio = np.log((pos / pos.sum()) / (neg / neg.sum())).astype(np.float32)
                self.nb_ratios.append(ratio)
                if yk.any():
                    jobs.append(job(self.nb_models, k, _scaled(T, ratio), yk))
        return jobs

    def proba(self, x: TextMatrix) -> np.ndarray:
        views = []
        T = self._tfidf(x.counts)
        if self.tfidf_models:
            X = self._design(x, T)
            views.append(_ovr(self.tfidf_models, lambda k: X, len(x)))
        if self.nb_models:
            views.append(_ovr(self.nb_models, lambda k: _scaled(T, self.nb_ratios[k]), len(x)))
        p = np.mean(views, axis=0)
        return p / p.sum(axis=1, keepdims=True)

    def describe(self) -> dict:
        return asdict(self.params)


class DesignCache:
    """The design matrices of one set of training rows, built once and shared by every member fitted
    on those rows (members that read the same rows differ in labels and weights, not in n-grams)."""

    def __init__(self, x: TextMatrix):
        self.x = x
        self._tfidf: tuple[np.ndarray, sp.csr_matrix] | None = None
        self._designs: dict[tuple[bool, float], sp.csr_matrix] = {}

    def tfidf(self) -> tuple[np.ndarray, sp.csr_matrix]:
        if self._tfidf is None:
            idf = fitted_idf(self.x.counts)
            self._tfidf = idf, tfidf(self.x.counts, idf)
        return self._tfidf

    def design(self, signals: bool, scale: float) -> sp.csr_matrix:
        key = (signals, scale if signals else 0.0)
        if key not in self._designs:
            T = self.tfidf()[1]
            self._designs[key] = sp.hstack([T, sp.csr_matrix(self.x.signals * scale)], format="csr") if signals else T
        return self._designs[key]


def _scaled(T: sp.csr_matrix, ratio: np.ndarray) -> sp.csr_matrix:
    """The naive-Bayes view: TF-IDF columns scaled by a policy's log-count ratio, rows re-normalised."""
    X = T.copy()
    X.data = X.data * ratio[X.indices]
    return normalize(X)


def _ovr(models: list, design, rows: int) -> np.ndarray:
    cols = [np.full(rows, 1e-6) if m is None else m.predict_proba(design(k))[:, 1] for k, m in enumerate(models)]
    p = np.clip(np.column_stack(cols), 1e-6, None)
    return p / p.sum(axis=1, keepdims=True)


def group_folds(groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A fold number in [0, k) per row; rows sharing a group (a text hash) share a fold."""
    unique, inverse = np.unique(groups, return_inverse=True)
    fold_of_group = np.random.default_rng(seed).integers(0, k, size=len(unique))
    return fold_of_group[inverse]
