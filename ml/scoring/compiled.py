"""The champion compiled for serving: the numbers of `ml.training.scorer.Scorer` in the fewest operations.

The content classifier is an ensemble of linear members (ml/training/text_classifier.py), each a
one-vs-rest logistic model per policy over TF-IDF rows (and, in some members, a naive-Bayes view
and a text-signal block). Scored as trained, one request costs four featurisations' worth of
sparse work: per member a TF-IDF matrix, per view and policy a product, per naive-Bayes policy a
rescaled copy of the matrix, about 35 sparse operations and format conversions in all, which is
nearly all of a single request's time. Compiled at load, the same numbers come from:

- one featurisation per batch: hashed n-gram counts and the text signals of each distinct text;
- one sparse x dense product per view kind. With L the log-scaled counts (1 + ln count), a member's
  TF-IDF row is L * idf / ||L * idf|| and its naive-Bayes row for policy k is T * r_k / ||T * r_k||,
  so every decision value is (L @ w') / sqrt((L * L) @ q') + signals @ w_s + b, where w' folds the
  member's idf (and r_k) into the weights and q' is the matching squared scale. Every member's
  weights for every policy are the columns of one dense matrix (W), and every norm one column of
  another (Q): two products per batch whatever the ensemble's size;
- the sigmoid, the per-view and per-member normalisation, the members' votes (`combine`) and the
  per-policy calibration as vector operations on the [rows, blocks, policies] result;
- the risk model's inputs built once: the text signals computed for the classifier are the same
  columns `dense_matrix` reads, and LightGBM predicts on one thread for small batches (OpenMP
  threads on a busy 2-core machine cost far more than they save on a few rows).

Scores equal the uncompiled `Scorer`'s to float rounding (tests/test_compiled_scorer.py: 1e-6 on
held-out texts). Kinds that are not linear (the torch text models) are scored by `Scorer` as they are.
"""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy.special import expit

from ml.features.text import distinct
from ml.taxonomy import POLICIES
from ml.training.artifacts import ModelArtifact
from ml.training.calibration import PolicyCalibration, softmax
from ml.training.content import EnsembleTextClassifier, combine
from ml.training.matrix import dense_columns_of, risk_features, with_text_signals
from ml.training.scorer import PAIRED_KINDS, Scorer, has_context
from ml.training.text_classifier import LinearTextClassifier, ngram_counts, signal_block

LINEAR_KINDS = ("content_classifier", "baseline")
# Below this many rows LightGBM predicts on one thread: its OpenMP start-up dominates small inputs,
# and with the other core busy a second thread stalls the whole call (measured 50x on training).
ONE_THREAD_ROWS = 5_000
_FLOOR = 1e-6  # the probability of a policy a member has no model for, and the floor of every other


class CompiledClassifier:
    """A fitted `EnsembleTextClassifier` (or a lone `LinearTextClassifier`) and its calibration, folded
    into a few dense matrices; `proba(counts, signals)` equals `calibration.apply(model.proba(...))`.

    Decision columns are grouped in blocks of len(POLICIES): one block per view of each member.
    """

    def __init__(self, model: EnsembleTextClassifier | LinearTextClassifier, calibration: PolicyCalibration):
        members = model.members if isinstance(model, EnsembleTextClassifier) else [model]
        # Classifiers pickled before members voted per policy have no `votes`: every member votes.
        self.votes = getattr(model, "votes", None)
        self.calibration = calibration
        policies = len(POLICIES)
        self.features = len(members[0].idf)
        idf_of: dict[bytes, int] = {}
        self.idfs: list[np.ndarray] = []  # distinct idf vectors (members fitted on the same rows share one)
        tfidf: dict[int, list[tuple[int, np.ndarray]]] = {}  # idf -> (decision column, weights)
        nb: list[tuple[int, np.ndarray, list[int], np.ndarray]] = []  # (idf, ratios, columns, weights)
        signal: dict[float, list[tuple[int, np.ndarray]]] = {}  # signal scale -> (column, weights)
        intercepts, missing, block_member = [], [], []

        def idf_index(idf: np.ndarray) -> int:
            key = idf.tobytes()
            if key not in idf_of:
                idf_of[key] = len(self.idfs)
                self.idfs.append(idf.astype(np.float32))
            return idf_of[key]

        def add(model_k) -> tuple[int, np.ndarray]:
            column = len(intercepts)
            missing.append(model_k is None)
            intercepts.append(0.0 if model_k is None else float(model_k.intercept_[0]))
            # SGD keeps float32 weights for float32 inputs: the product is float32, as trained code computes it.
            return column, np.zeros(self.features, np.float32) if model_k is None else model_k.coef_[0]

        for m, member in enumerate(members):
            i = idf_index(member.idf)
            if member.tfidf_models:
                block_member.append(m)
                for model_k in member.tfidf_models:
                    column, coef = add(model_k)
                    tfidf.setdefault(i, []).append((column, coef[: self.features]))
                    if member.params.signals and model_k is not None:
                        signal.setdefault(member.params.signal_scale, []).append((column, coef[self.features :]))
            if member.nb_models:
                block_member.append(m)
                columns, weights = [], []
                for model_k in member.nb_models:
                    column, coef = add(model_k)
                    columns.append(column)
                    weights.append(coef)
                # [policies, features]: each policy's weights contiguous, read one matrix-vector product at a time.
                nb.append((i, np.stack(member.nb_ratios).astype(np.float32), columns, np.stack(weights)))
        self.columns = len(intercepts)
        # One weight matrix per idf for the TF-IDF views of every member that reads it, every policy.
        self.tfidf = [(i, [c for c, _ in cols], np.column_stack([w for _, w in cols])) for i, cols in tfidf.items()]
        self.nb = nb
        self.signal = [
            (scale, [c for c, _ in cols], np.column_stack([w for _, w in cols])) for scale, cols in signal.items()
        ]
        self.intercepts = np.array(intercepts)
        self.missing = np.array(missing)
        self.blocks = len(block_member)
        # [members, blocks]: a member's probability is the mean of its views' probabilities.
        views = np.zeros((len(members), self.blocks))
        views[block_member, np.arange(self.blocks)] = 1.0
        self.view_mean = views / views.sum(axis=1, keepdims=True)
        assert self.columns == self.blocks * policies

    def proba(self, counts: sp.csr_matrix, signals: np.ndarray) -> np.ndarray:
        """Calibrated probabilities [rows, POLICIES] from raw hashed counts and the signal block."""
        rows = counts.shape[0]
        if rows == 0:
            return np.zeros((0, len(POLICIES)))
        counts = counts.tocsr()
        counts.sort_indices()
        indices, indptr = counts.indices, counts.indptr
        row_of = np.repeat(np.arange(rows), np.diff(indptr))
        logs = 1.0 + np.log(counts.data.astype(np.float32))  # float32, as the trained code computes it
        decision = np.zeros((rows, self.columns), dtype=np.float32)
        design = counts.copy()  # every design matrix below shares these indices: only its values change
        for i, idf in enumerate(self.idfs):
            tfidf = _unit_rows(logs * idf[indices], row_of, rows)
            design.data = tfidf
            for j, columns, weights in self.tfidf:
                if j == i:
                    decision[:, columns] = design @ weights
            for j, ratios, columns, weights in self.nb:
                if j == i:
                    for k, column in enumerate(columns):
                        design.data = _unit_rows(tfidf * ratios[k][indices], row_of, rows)
                        decision[:, column] = design @ weights[k]
        for scale, columns, weights in self.signal:
            # Added one signal at a time, after the n-grams: the order of the trained code's float32 sum.
            block, scaled = decision[:, columns], signals * np.float32(scale)
            for j in range(scaled.shape[1]):
                block += scaled[:, j : j + 1] * weights[j]
            decision[:, columns] = block
        p = expit(decision.astype(np.float64) + self.intercepts)
        p[:, self.missing] = _FLOOR
        p = np.clip(p, _FLOOR, None).reshape(rows, self.blocks, len(POLICIES))
        p /= p.sum(axis=2, keepdims=True)  # each view's one-vs-rest probabilities renormalised
        members = np.einsum("mb,nbk->mnk", self.view_mean, p)
        members /= members.sum(axis=2, keepdims=True)
        return self.calibration.apply(combine(list(members), self.votes))


def _unit_rows(values: np.ndarray, row_of: np.ndarray, rows: int) -> np.ndarray:
    """`sklearn.preprocessing.normalize` of a float32 CSR matrix's values, to the bit: squares in
    float32 summed in float64 in index order, each value divided by the root and stored as float32;
    an all-zero row stays zero. Bit-equal values matter: the members' weights are large and of both
    signs, so rounding a value differently moves a decision by far more than the rounding itself."""
    squares = np.bincount(row_of, weights=(values * values).astype(np.float64), minlength=rows)
    norms = np.sqrt(squares)
    norms[norms == 0.0] = 1.0
    return (values / norms[row_of]).astype(np.float32)


def _load_linear(artifact: ModelArtifact) -> CompiledClassifier:
    saved = joblib.load(Path(artifact.path) / "model.joblib")
    return CompiledClassifier(saved["model"], saved["calibration"])


class CompiledScorer:
    """`Scorer`'s interface (`predict_proba(frame)`, `artifact`, `version`) with the compiled classifier.

    A `risk_model` pair compiles its content classifier and answers rows with platform context
    with the booster, the others with the classifier alone, as `Scorer` does; `classifier_alone` answers
    every row with its compiled classifier.
    """

    uses_hashed_ngrams = False

    def __init__(self, artifact: ModelArtifact):
        self.artifact = artifact
        path = Path(artifact.path)
        self._booster = None
        if artifact.kind in LINEAR_KINDS:
            self._text: CompiledClassifier | Scorer = _load_linear(artifact)
        elif artifact.kind in PAIRED_KINDS:
            if artifact.kind == "risk_model":
                import lightgbm as lgb

                self._booster = lgb.Booster(model_file=str(path / "model.txt"))
                self._dense = dense_columns_of(self._booster.num_feature() - len(POLICIES))
            classifier = ModelArtifact.read(path.parent / artifact.params["content_classifier"])
            self._text = _load_linear(classifier) if classifier.kind in LINEAR_KINDS else Scorer(classifier)
        else:
            raise ValueError(f"{artifact.kind} models are not compiled; score them with Scorer")

    @property
    def version(self) -> str:
        return self.artifact.version

    def predict_proba(self, frame: pl.DataFrame, ngrams: sp.csr_matrix | None = None) -> np.ndarray:
        if frame.height == 0:
            return np.zeros((0, len(POLICIES)))
        texts = frame["text"].cast(pl.String).fill_null("").to_list()
        unique, rows = distinct(texts)
        signals = None
        if isinstance(self._text, CompiledClassifier):
            # The signal columns once per distinct text: the classifier's block and the risk model's inputs.
            signals = with_text_signals(pl.DataFrame({"text": unique}, schema={"text": pl.String}))
            proba = self._text.proba(ngram_counts(unique), signal_block(signals))
            proba = proba if len(unique) == len(texts) else proba[rows]
        else:
            proba = self._text.predict_proba(frame)
        if self._booster is None:
            return proba
        context = has_context(frame)
        if not context.any():
            return proba
        # A single request usually has context on every row and distinct texts: no gather then.
        every = bool(context.all())
        with_ctx = frame if every else frame.filter(pl.Series(context))
        if signals is not None and "text_chars" not in frame.columns:
            keep = [c for c in signals.columns if c not in frame.columns]
            same = every and len(unique) == len(texts)
            with_ctx = with_ctx.hstack((signals if same else signals[rows[context]]).select(keep))
        inputs = risk_features(with_ctx, proba[context], self._dense)
        threads = 1 if len(inputs) < ONE_THREAD_ROWS else 0  # 0: LightGBM's default (OpenMP's)
        logits = self._booster.predict(inputs, raw_score=True, num_threads=threads)
        out = proba.copy()
        out[context] = softmax(logits, self.artifact.temperature)
        return out


def compiled_scorer(artifact: ModelArtifact) -> CompiledScorer | Scorer:
    """The compiled scorer of `artifact`, or its `Scorer` when its kind is not compiled (torch models)."""
    if artifact.kind in (*LINEAR_KINDS, *PAIRED_KINDS):
        return CompiledScorer(artifact)
    return Scorer(artifact)
