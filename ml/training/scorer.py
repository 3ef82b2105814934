"""Load any trained model from its artifact directory and score frames with it.

Every model kind takes the same input frame (text plus whatever platform context is known) and
returns calibrated probabilities in the shared `p_<policy>` schema. Text-only kinds (the content
classifier, the baseline, the deep text model) ignore context. A `risk_model` artifact is the
champion pair: it loads its content classifier from the sibling directory its params name, and
answers with the risk model for rows that carry platform context and with the classifier for
rows that carry none (an external file, an API call without context). A `classifier_alone` artifact is
the content classifier deployed in a pair's place: it names its classifier the same way and answers every
row with it.
"""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import polars as pl
import scipy.sparse as sp

from ml.features.text import hashed_ngrams
from ml.taxonomy import POLICIES
from ml.training.artifacts import ModelArtifact, proba_frame
from ml.training.calibration import softmax
from ml.training.matrix import CONTEXT_COLUMNS, dense_columns_of, risk_features, text_inputs
from ml.training.text_classifier import TextMatrix

TEXT_ONLY_KINDS = ("content_classifier", "baseline", "text_model")
# Deployables that name their content classifier (params["content_classifier"]): the pair, and the classifier
# deployed alone in a pair's place.
PAIRED_KINDS = ("risk_model", "classifier_alone")


def has_context(frame: pl.DataFrame) -> np.ndarray:
    """Rows that carry any platform context (surface, account history, network)."""
    cols = [c for c in CONTEXT_COLUMNS if c in frame.columns]
    if not cols or frame.height == 0:
        return np.zeros(frame.height, dtype=bool)
    return frame.select(pl.any_horizontal(pl.col(c).is_not_null() for c in cols)).to_series().to_numpy()


class Scorer:
    def __init__(self, artifact: ModelArtifact):
        self.artifact = artifact
        path = Path(artifact.path)
        kind = artifact.kind
        self.classifier: Scorer | None = None
        if kind in ("content_classifier", "baseline"):
            saved = joblib.load(path / "model.joblib")
            self._linear, self._calibration = saved["model"], saved["calibration"]
        elif kind == "text_model" and self.profile == "minilm":
            import torch  # imported only where needed: torch alone costs seconds of CLI start-up

            from ml.training.minilm_model import MiniLMClassifier

            self._net = MiniLMClassifier(int(artifact.params["n_dense"]))
            self._net.load_state_dict(torch.load(path / "model.pt", map_location="cpu"))
            self._net.eval()
        elif kind == "text_model":
            import torch

            from ml.training.text_model import TextClassifier
            from ml.training.text_model_params import TextModelParams

            params = TextModelParams(**artifact.params["model"])
            self._net = TextClassifier(int(artifact.params["n_dense"]), params.embedding_dim, params.hidden_dim)
            self._net.load_state_dict(torch.load(path / "model.pt", map_location="cpu"))
            self._net.eval()
        elif kind in PAIRED_KINDS:
            if kind == "risk_model":
                import lightgbm as lgb

                self._booster = lgb.Booster(model_file=str(path / "model.txt"))
                self._dense = dense_columns_of(self._booster.num_feature() - len(POLICIES))
            self.classifier = Scorer(ModelArtifact.read(path.parent / artifact.params["content_classifier"]))
        else:
            raise ValueError(f"unknown model kind {kind!r} in {path}")

    @property
    def profile(self) -> str:
        return self.artifact.params.get("profile", "compact")

    @property
    def version(self) -> str:
        return self.artifact.version

    @classmethod
    def load(cls, path: Path) -> Scorer:
        return cls(ModelArtifact.read(path))

    @property
    def uses_hashed_ngrams(self) -> bool:
        """Whether `predict_proba` accepts precomputed `ml.features.text.hashed_ngrams` of the texts."""
        return self.artifact.kind == "text_model" and self.profile == "compact"

    def predict_proba(self, frame: pl.DataFrame, ngrams: sp.csr_matrix | None = None) -> np.ndarray:
        if frame.height == 0:
            return np.zeros((0, len(POLICIES)))
        kind = self.artifact.kind
        texts = frame["text"].cast(pl.String).fill_null("").to_list()
        if kind in ("content_classifier", "baseline"):
            return self._calibration.apply(self._linear.proba(TextMatrix.of(texts)))
        if kind == "text_model":
            dense = text_inputs(frame, dense_columns_of(int(self.artifact.params["n_dense"])))
            if self.profile == "minilm":
                from ml.training import minilm_model

                logits = minilm_model.predict_logits(
                    self._net, texts, dense, max_length=int(self.artifact.params["model"]["max_length"])
                )
            else:
                from ml.training.text_model import predict_logits

                logits = predict_logits(self._net, hashed_ngrams(texts) if ngrams is None else ngrams, dense)
            return softmax(logits, self.artifact.temperature)
        text_proba = self.classifier.predict_proba(frame)
        if kind == "classifier_alone":
            return text_proba
        # risk_model: the classifier answers alone where the platform context is unknown.
        context = has_context(frame)
        if not context.any():
            return text_proba
        with_ctx = frame.filter(pl.Series(context))
        logits = self._booster.predict(risk_features(with_ctx, text_proba[context], self._dense), raw_score=True)
        out = text_proba.copy()
        out[context] = softmax(logits, self.artifact.temperature)
        return out

    def score(self, frame: pl.DataFrame) -> pl.DataFrame:
        ids = frame["content_id"] if "content_id" in frame.columns else None
        return proba_frame(ids, self.predict_proba(frame))
