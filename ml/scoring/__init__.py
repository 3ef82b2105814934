"""Score content with the champion: calibrated probabilities, an action, the model version.

Batch scoring, the offline CLI and the HTTP service all go through `score_frame`, so the
same text with the same context gets the same scores and action everywhere. The champion they
load is compiled for serving (ml/scoring/compiled.py): the same numbers in far fewer
operations; `load_model(..., compiled=False)` keeps the scorer as trained. Memory is bounded
by the batch size and a fixed cache, never by the input: hashed n-grams (a few KB per text) are
built one batch at a time, and an `NgramCache` of bounded size keeps recent texts' rows so a
repost seen a batch earlier is not featurised again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from ml.enforcement import BANK_MATCH_COLUMNS, DEFAULT_POLICY_PATH, EnforcementPolicy, load_policy
from ml.features.text import NGRAM_DIM, distinct, hashed_ngrams
from ml.registry import Registry, RegistryError
from ml.scoring.compiled import compiled_scorer
from ml.training.artifacts import PROBA_COLUMNS, ModelArtifact
from ml.training.scorer import Scorer

# `text_flag`: why a row's score deserves a second look; null when nothing is wrong with the text.
# The text is missing, empty or only whitespace: it is scored like any text (the model then
# answers from context alone, usually `allow`), but that answer says nothing about content
# nobody wrote, so callers can route it separately.
EMPTY_TEXT = "empty_text"
# The text held bytes that are not UTF-8 and was scored with U+FFFD in their place (set by
# `ml.scoring.io.score_file`, the only path that reads raw bytes).
INVALID_UTF8 = "invalid_utf8"
OUTPUT_COLUMNS = (*PROBA_COLUMNS, "action", "model_version", "text_flag")
OUTPUT_SCHEMA = {
    **{c: pl.Float64 for c in PROBA_COLUMNS},
    "action": pl.String,
    "model_version": pl.String,
    "text_flag": pl.String,
}


@dataclass
class Champion:
    version: str
    scorer: Scorer  # or a CompiledScorer: the same interface and numbers
    thresholds: dict[str, dict[str, float]]
    policy: EnforcementPolicy


def operating_thresholds(model_dir: Path) -> dict[str, dict[str, float]]:
    path = Path(model_dir) / "operating_points.json"
    if not path.exists():
        raise RegistryError(f"{model_dir} has no operating_points.json: evaluate the model before serving it")
    points = json.loads(path.read_text())
    return {p: {"auto_action": v["auto_action_threshold"], "review": v["review_threshold"]} for p, v in points.items()}


def load_model(model_dir: Path, policy_path: Path = DEFAULT_POLICY_PATH, compiled: bool = True) -> Champion:
    """The model in `model_dir` ready to score: compiled for serving unless `compiled=False` (the
    scorer as trained, which the compiled one is measured and tested against)."""
    artifact = ModelArtifact.read(model_dir)
    scorer = compiled_scorer(artifact) if compiled else Scorer(artifact)
    return Champion(artifact.version, scorer, operating_thresholds(model_dir), load_policy(policy_path))


def load_champion(models_dir: Path, policy_path: Path = DEFAULT_POLICY_PATH, compiled: bool = True) -> Champion:
    registry = Registry(models_dir)
    entry = registry.champion()
    if entry is None:
        raise RegistryError(f"no champion in {models_dir}: run `trustlake run` (or promote a model) first")
    return load_model(registry.artifact_dir(entry), policy_path, compiled)


class NgramCache:
    """Hashed n-gram rows of recently featurised texts, at most `max_values` stored values.

    Reposts are common (the same spam from a ring of accounts, a viral text quoted all day), and
    featurising is most of the cost of scoring, so texts seen in earlier batches are looked up
    rather than featurised again. Rows are kept in per-batch blocks and the oldest block is
    dropped when the budget is exceeded: memory stays bounded (about 8 bytes per stored value,
    ~2 KB per tweet-sized text) however many distinct texts pass through. A row from the cache
    equals `hashed_ngrams` of its text, since hashing and per-row normalisation are stateless.
    """

    def __init__(self, max_values: int = 24_000_000):  # ~200 MB, ~100k tweet-sized texts
        self.max_values = max_values
        self._blocks: dict[int, tuple[sp.csr_matrix, list[str]]] = {}
        self._where: dict[str, tuple[int, int]] = {}
        self._next = 0
        self.values = 0  # stored values now, never above max_values after a call

    def ngrams(self, texts: list[str]) -> sp.csr_matrix:
        """`hashed_ngrams(texts)`, featurising only the texts the cache does not hold."""
        if not texts:
            return sp.csr_matrix((0, NGRAM_DIM), dtype=np.float32)
        unique, rows = distinct(texts)
        missing = [t for t in unique if t not in self._where]
        blocks = {b: m for b, (m, _) in self._blocks.items()}
        once: dict[str, tuple[int, int]] = {}
        if missing:
            block = hashed_ngrams(missing)
            if block.nnz <= self.max_values:
                self._add(block, missing)
                blocks[self._next - 1] = block
            else:  # one batch larger than the whole budget: use it, keep none of it
                blocks[-1] = block
                once = {t: (-1, i) for i, t in enumerate(missing)}
        located = np.array([once.get(t) or self._where[t] for t in unique], dtype=np.int64).reshape(-1, 2)
        pieces, order = [], []
        for b in np.unique(located[:, 0]):
            at = np.flatnonzero(located[:, 0] == b)
            pieces.append(blocks[int(b)][located[at, 1]])
            order.append(at)
        matrix = sp.vstack(pieces, format="csr") if len(pieces) > 1 else pieces[0]
        order = np.concatenate(order)
        if not np.array_equal(order, np.arange(len(unique))):
            matrix = matrix[np.argsort(order)]  # back to first-seen order
        self._evict()
        return matrix if len(unique) == len(texts) else matrix[rows]

    def _add(self, block: sp.csr_matrix, texts: list[str]) -> None:
        self._blocks[self._next] = (block, texts)
        self._where.update((t, (self._next, i)) for i, t in enumerate(texts))
        self._next += 1
        self.values += block.nnz

    def _evict(self) -> None:
        while self.values > self.max_values and len(self._blocks) > 1:
            block, texts = self._blocks.pop(next(iter(self._blocks)))  # the oldest
            for t in texts:
                del self._where[t]
            self.values -= block.nnz


def score_frame(
    champion: Champion, frame: pl.DataFrame, batch_size: int = 20_000, progress=None, cache: NgramCache | None = None
) -> pl.DataFrame:
    """One output row per input row, in order: p_<policy> columns, action, model_version, text_flag, and
    when `frame` carries its hash-bank matches (ml.enforcement.BANK_MATCH_COLUMNS), decided_by and bank_match.

    `frame` needs `text`; any platform context columns it has (surface, account_age_days, ...)
    are used and missing ones are treated as unknown. Hashed n-grams are built per batch of
    `batch_size` rows, each distinct text once per batch and at most once while `cache` (one
    per call unless the caller passes one to share across calls) still holds it. Peak memory
    depends on the batch size and the cache budget, not on how many texts the call has.
    """
    frame = frame.with_columns(pl.col("text").cast(pl.String).fill_null(""))
    scorer = champion.scorer
    if scorer.uses_hashed_ngrams and cache is None:
        cache = NgramCache()
    parts, used = [], {}  # `used`: what capped policy rules decided so far in this call, across batches
    for start in range(0, frame.height, batch_size):
        chunk = frame.slice(start, batch_size)
        ngrams = cache.ngrams(chunk["text"].to_list()) if scorer.uses_hashed_ngrams else None
        proba = scorer.predict_proba(chunk, ngrams)
        del ngrams  # the largest object of the batch: free it before the next one is built
        scores = pl.DataFrame({c: proba[:, k] for k, c in enumerate(PROBA_COLUMNS)})
        decided = champion.policy.decide_with_reasons(scores, champion.thresholds, chunk, used)
        empty = chunk["text"].str.strip_chars().str.len_chars() == 0
        # Items matched against the hash banks say which rule decided and, for a bank's, the entry's provenance.
        reasons = [decided["decided_by"], decided["bank_match"]] if BANK_MATCH_COLUMNS[0] in chunk.columns else []
        parts.append(
            scores.with_columns(
                decided["action"],
                pl.lit(champion.version, dtype=pl.String).alias("model_version"),
                pl.when(empty).then(pl.lit(EMPTY_TEXT)).otherwise(pl.lit(None, dtype=pl.String)).alias("text_flag"),
                *reasons,
            )
        )
        if progress is not None:
            progress(chunk.height)
    if not parts:
        return pl.DataFrame(schema=OUTPUT_SCHEMA)
    return pl.concat(parts)


def risk(scores: pl.DataFrame) -> np.ndarray:
    """The highest violating-policy probability of each row."""
    return scores.select([c for c in PROBA_COLUMNS if c != "p_benign"]).max_horizontal().to_numpy()
