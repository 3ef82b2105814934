"""Load any trained model from its artifact directory and score frames with it.

Every model kind takes the same input frame (text plus whatever platform context is known)
and returns calibrated probabilities in the shared `p_<policy>` schema.
"""

from __future__ import annotations

from pathlib import Path

import joblib
import lightgbm as lgb
import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from ml.training.artifacts import ModelArtifact, proba_frame
from ml.training.baseline import baseline_logits
from ml.training.calibration import softmax
from ml.training.matrix import dense_matrix, design_matrix
from ml.training.text_model import TextClassifier, TextModelParams, predict_logits
from ml.features.text import hashed_ngrams


class Scorer:
    def __init__(self, artifact: ModelArtifact):
        self.artifact = artifact
        path = Path(artifact.path)
        if artifact.kind == "lightgbm":
            self._booster = lgb.Booster(model_file=str(path / "model.txt"))
        elif artifact.kind == "text_model" and self.profile == "minilm":
            from ml.training.minilm_model import MiniLMClassifier

            self._net = MiniLMClassifier(int(artifact.params["n_dense"]))
            self._net.load_state_dict(torch.load(path / "model.pt", map_location="cpu"))
            self._net.eval()
        elif artifact.kind == "text_model":
            params = TextModelParams(**artifact.params["model"])
            n_dense = int(artifact.params["n_dense"])
            self._net = TextClassifier(n_dense, params.embedding_dim, params.hidden_dim)
            self._net.load_state_dict(torch.load(path / "model.pt", map_location="cpu"))
            self._net.eval()
        elif artifact.kind == "baseline":
            self._pipeline = joblib.load(path / "model.joblib")
        else:
            raise ValueError(f"unknown model kind {artifact.kind!r} in {path}")

    @property
    def profile(self) -> str:
        return self.artifact.params.get("profile", "compact")

    @classmethod
    def load(cls, path: Path) -> "Scorer":
        return cls(ModelArtifact.read(path))

    def logits(self, frame: pl.DataFrame, ngrams: sp.csr_matrix | None = None) -> np.ndarray:
        """Raw scores; `ngrams` (hashed n-grams of frame's texts) may be passed precomputed."""
        kind = self.artifact.kind
        if kind == "lightgbm":
            return self._booster.predict(design_matrix(frame, ngrams), raw_score=True)
        if kind == "text_model" and self.profile == "minilm":
            from ml.training import minilm_model

            return minilm_model.predict_logits(self._net, frame["text"].to_list(), dense_matrix(frame),
                                               max_length=int(self.artifact.params["model"]["max_length"]))
        if kind == "text_model":
            if ngrams is None:
                ngrams = hashed_ngrams(frame["text"].to_list())
            return predict_logits(self._net, ngrams, dense_matrix(frame))
        return baseline_logits(self._pipeline, frame["text"].to_list())

    @property
    def uses_hashed_ngrams(self) -> bool:
        return self.artifact.kind == "lightgbm" or (self.artifact.kind == "text_model" and self.profile == "compact")

    def predict_proba(self, frame: pl.DataFrame, ngrams: sp.csr_matrix | None = None) -> np.ndarray:
        if frame.height == 0:
            return np.zeros((0, 5))
        return softmax(self.logits(frame, ngrams), self.artifact.temperature)

    def score(self, frame: pl.DataFrame) -> pl.DataFrame:
        ids = frame["content_id"] if "content_id" in frame.columns else None
        return proba_frame(ids, self.predict_proba(frame))
