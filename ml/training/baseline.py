"""The obvious model every report is measured against: TF-IDF n-grams + logistic regression."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_union


def train_baseline(texts: list[str], y: np.ndarray, C: float = 4.0, seed: int = 42) -> Pipeline:
    features = make_union(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True),
    )
    model = Pipeline([("tfidf", features), ("logreg", LogisticRegression(C=C, max_iter=3000, random_state=seed))])
    return model.fit(texts, y)


def baseline_logits(model: Pipeline, texts: list[str]) -> np.ndarray:
    """Log-probabilities, so temperature scaling treats the baseline like the other models."""
    return np.log(np.clip(model.predict_proba(texts), 1e-12, None))
