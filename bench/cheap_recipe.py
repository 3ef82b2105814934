"""The strongest cheap text recipe we could build, on the same rows and sets as the content classifier.

    .venv/bin/python bench/cheap_recipe.py

A textbook full-batch model: TF-IDF of word 1-2-grams and char_wb 2-5-grams (sublinear, min_df 2,
300k char features), one-vs-rest liblinear logistic regression, C chosen on the validation texts.
Trained on the latest training set in TRUSTLAKE_HOME (run `make run` first) with every label as
given, scored on the text-only held-out test texts and under leave-one-source-out exactly as the
pipeline's evaluation scores the content classifier (ml/evaluation/generalisation.py), so the two
tables compare row for row with bench/quality.py's. Writes bench/results/cheap_recipe.json.
"""

from __future__ import annotations

import time

import numpy as np
import polars as pl
import scipy.sparse as sp
from report import write_report  # bench/report.py, beside this script
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from ml.evaluation.generalisation import learnable_policies, present_policy_metrics, reference_sources, source_records
from ml.lake import Lake
from ml.taxonomy import POLICIES, VIOLATING
from ml.training.dataset import held_out_texts, label_array, without_families
from ml.training.labels import AS_GIVEN, training_rows
from ml.training.metrics import pr_auc_by_policy
from orchestration.settings import Settings

C_GRID = (0.5, 1.0, 2.0, 8.0, 32.0)


class CheapRecipe:
    def __init__(self, texts: list[str]):
        self.word = TfidfVectorizer(
            analyzer="word", ngram_range=(1, 2), min_df=2, sublinear_tf=True, token_pattern=r"(?u)\b\w+\b"
        )
        self.char = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, 5), min_df=2, sublinear_tf=True, max_features=300_000
        )
        self.x = sp.hstack([self.word.fit_transform(texts), self.char.fit_transform(texts)]).tocsr()

    def design(self, texts: list[str]) -> sp.csr_matrix:
        return sp.hstack([self.word.transform(texts), self.char.transform(texts)]).tocsr()

    def proba(self, y: np.ndarray, texts: list[str], c: float) -> np.ndarray:
        x, out = self.design(texts), np.full((len(texts), len(POLICIES)), 1e-6)
        for k in range(len(POLICIES)):
            if (y == k).any():
                model = LogisticRegression(C=c, solver="liblinear", max_iter=200).fit(self.x, y == k)
                out[:, k] = model.predict_proba(x)[:, 1]
        return out / out.sum(axis=1, keepdims=True)


def macro(labels: np.ndarray, proba: np.ndarray) -> float:
    pr = pr_auc_by_policy(labels, proba)
    return float(np.nanmean([pr[p] for p in VIOLATING]))


def main() -> None:
    started = time.perf_counter()
    frame = pl.read_parquet(Lake(Settings.from_env().home).features / "training_set" / "part-0.parquet")
    rows = training_rows(frame, AS_GIVEN)
    val, test = held_out_texts(frame, "validation"), held_out_texts(frame, "test")
    recipe, y = CheapRecipe(rows["text"].to_list()), label_array(rows)
    by_c = {c: macro(label_array(val), recipe.proba(y, val["text"].to_list(), c)) for c in C_GRID}
    c = max(by_c, key=by_c.get)
    test_pr = pr_auc_by_policy(label_array(test), recipe.proba(y, test["text"].to_list(), c))
    held_out = {}
    for source in reference_sources(frame):
        held = source_records(frame, source)
        remaining = without_families(frame, held)  # as the pipeline's leave-one-source-out: whole families
        kept = training_rows(remaining, AS_GIVEN)
        proba = CheapRecipe(kept["text"].to_list()).proba(label_array(kept), held["text"].to_list(), c)
        held_out[source] = present_policy_metrics(label_array(held), proba, learnable_policies(remaining)).macro_pr_auc
    report = {
        "validation_macro_by_c": {str(k): round(v, 4) for k, v in by_c.items()},
        "chosen_c": c,
        "text_only_test_macro_pr_auc": round(float(np.mean([test_pr[p] for p in VIOLATING])), 4),
        "text_only_test_pr_auc": {p: round(test_pr[p], 4) for p in VIOLATING},
        "leave_one_source_out_macro_pr_auc": {s: round(v, 4) for s, v in held_out.items()},
        "seconds": round(time.perf_counter() - started),
    }
    write_report("cheap_recipe", report)


if __name__ == "__main__":
    main()
