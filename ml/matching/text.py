"""Near-duplicate text: the form texts are compared in, MinHash signatures, an LSH index, clusters.

Known-bad text banks and campaign detection both ask "is this a copy of that, give or take the
edits people make?". The answer is the Jaccard similarity of character 5-grams of the *matching
form* of the two texts, estimated from MinHash signatures (datasketch) and found without comparing
every pair by locality-sensitive hashing (datasketch's MinHashLSH banding).

The matching form is `ml.text.normalise` (NFKC, HTML entities, case folded, one space), then:
- links, e-mail addresses, phone numbers and other digit runs are replaced by a class token
  (`<url>`, `<email>`, `<phone>`, `<num>`). Campaigns rotate exactly these per post (a fresh short
  link, another number, a different amount) while the template stays; masking them keeps such
  variants near-identical. What they pointed at is not lost: `find_artifacts` returns them,
  normalised, for the account-artifact graph, where a shared link is a signal of its own.
- punctuation, symbols and emoji are dropped and repeated letters capped at two ("soooo" -> "soo"):
  the cheapest edits an evader makes to dodge exact matching.

Why characters, not words: the texts are short (a median spam comment is a dozen words), and one
changed word breaks three word-trigrams out of ten but only five character 5-grams out of sixty.
A text whose matching form is shorter than `TextMatchParams.min_chars` is never matched: a few
characters say too little to call two posts copies ("thank you" is not a campaign).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from ml.matching.clusters import components_frame
from ml.text import normalise

if TYPE_CHECKING:  # datasketch imports its asyncio LSH too (0.7 s): every Dagster process loads this module
    from datasketch import MinHash

_URL = re.compile(
    r"(?:https?://|www\.)[^\s<>\"']+"
    r"|\b[a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*\.(?:com|net|org|info|biz|io|co|me|ly|gl|uk|us|ru|cn|xyz|top|click|site|online|link|tk|ml|ga|cf|gq|app|shop|store)\b(?:/[^\s<>\"']*)?",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
# A run of digits with the separators phone numbers are written with, 7 to 15 digits in all.
_PHONE = re.compile(r"(?<![\w])(?:\+|00)?\d[\d\s().-]{5,}\d(?![\w])")
_DIGITS = re.compile(r"\d+")
_REPEAT = re.compile(r"(\w)\1{2,}")
_SPACES = re.compile(r"\s+")
TOKENS = {"url": "<url>", "email": "<email>", "phone": "<phone>", "num": "<num>"}


@dataclass(frozen=True)
class TextArtifacts:
    """What a text points at, normalised so copies compare equal: links without scheme or `www.`,
    phone numbers as digits, e-mail addresses lower-cased. `spans` are (start, end) in the text."""

    urls: tuple[str, ...]
    phones: tuple[str, ...]
    emails: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]


def _artifact_spans(text: str) -> list[tuple[int, int, str, str]]:
    """(start, end, kind, value) of each link, e-mail address and phone number, in order; an e-mail
    address is not also read as a link, nor a link's digits as a phone number."""
    spans: list[tuple[int, int, str, str]] = []
    taken = np.zeros(len(text) + 1, dtype=bool)
    for kind, pattern in (("email", _EMAIL), ("url", _URL), ("phone", _PHONE)):
        for m in pattern.finditer(text):
            start = m.start()
            value = m.group().rstrip(".,;:!?)")
            end = start + len(value)
            if taken[start:end].any():
                continue
            if kind == "phone" and not 7 <= sum(c.isdigit() for c in value) <= 15:
                continue
            taken[start:end] = True
            spans.append((start, end, kind, value))
    return sorted(spans)


def _normalised_artifact(kind: str, value: str) -> str:
    if kind == "phone":
        return "".join(c for c in value if c.isdigit())
    value = value.lower()
    if kind == "url":
        value = re.sub(r"^(?:https?://)?(?:www\.)?", "", value).rstrip("/")
    return value


def find_artifacts(text: str) -> TextArtifacts:
    """Links, e-mail addresses and phone numbers in `text`, in order of appearance."""
    spans = _artifact_spans(text)

    def of(kind: str) -> tuple[str, ...]:
        return tuple(_normalised_artifact(k, v) for _, _, k, v in spans if k == kind)

    return TextArtifacts(of("url"), of("phone"), of("email"), tuple((s, e) for s, e, _, _ in spans))


def matching_form(text: str) -> str:
    """The form near-duplicates are compared in (see the module docstring for each step and why)."""
    text = normalise(text)
    out, last = [], 0
    for start, end, kind, _ in _artifact_spans(text):
        out += [_clean(text[last:start]), TOKENS[kind]]
        last = end
    out.append(_clean(text[last:]))
    return _SPACES.sub(" ", " ".join(out)).strip()


def _clean(part: str) -> str:
    part = "".join(" " if unicodedata.category(c).startswith(("P", "S", "C")) else c for c in part)
    part = _DIGITS.sub(f" {TOKENS['num']} ", part)
    return _REPEAT.sub(r"\1\1", part)


@dataclass(frozen=True)
class TextMatchParams:
    """How near-duplicates are found. `threshold` is the Jaccard similarity of character `shingle`-grams
    of the matching forms at or above which two texts are copies; docs/matching.md shows how it was
    chosen. `num_perm` MinHash permutations give a Jaccard estimate within about +-0.04 (1 s.d. at 0.5)."""

    threshold: float = 0.5
    shingle: int = 5
    num_perm: int = 128
    min_chars: int = 20
    seed: int = 1

    def __post_init__(self) -> None:
        # Above 0.95 LSH banding degenerates to a single band (datasketch refuses it): use exact dedup.
        if not 0.0 < self.threshold <= 0.95:
            raise ValueError(f"TextMatchParams.threshold must be in (0, 0.95], got {self.threshold}")
        if self.shingle < 1 or self.num_perm < 16 or self.min_chars < self.shingle:
            raise ValueError("TextMatchParams: shingle >= 1, num_perm >= 16 and min_chars >= shingle")


def shingles(form: str, size: int) -> set[bytes]:
    """The distinct character `size`-grams of a matching form."""
    data = form.encode("utf-8")
    if len(form) <= size:
        return {data}
    return {form[i : i + size].encode("utf-8") for i in range(len(form) - size + 1)}


def signatures(texts: Sequence[str], params: TextMatchParams = TextMatchParams()) -> tuple[np.ndarray, np.ndarray]:
    """MinHash signatures of `texts`: (an (n, num_perm) uint64 array, a bool array saying which texts
    are long enough to match). A too-short text gets a row of zeros and `False`.

    Each distinct text is signed once per process (`_signature`, a bounded cache): posts repeat texts
    (60,153 posts of the default 30-day world carry 21,651 distinct ones) and a day's bank entries are
    the previous day's plus a few, so most of a day's work was signing the same text again."""
    out = np.zeros((len(texts), params.num_perm), dtype=np.uint64)
    usable = np.zeros(len(texts), dtype=bool)
    for i, text in enumerate(texts):
        sig = _signature(text, params)
        if sig is not None:
            out[i], usable[i] = sig, True
    return out, usable


@lru_cache(maxsize=1 << 15)  # at most ~40 MB: a signature is num_perm x 8 bytes
def _signature(text: str, params: TextMatchParams) -> np.ndarray | None:
    """The MinHash signature of one text's matching form (None when too short to match), exactly what
    datasketch's `MinHash.bulk` gives; read-only, as the cache shares it."""
    form = matching_form(text)
    if len(form) < params.min_chars:
        return None
    sketch = _empty_sketch(params.num_perm, params.seed).copy()
    sketch.update_batch(shingles(form, params.shingle))
    sig = sketch.hashvalues.astype(np.uint64)
    sig.flags.writeable = False
    return sig


@lru_cache(maxsize=4)
def _empty_sketch(num_perm: int, seed: int) -> MinHash:
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=seed, scheme="affine32")


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Jaccard estimates between two equally shaped signature arrays."""
    return (np.asarray(a) == np.asarray(b)).mean(axis=-1)


@lru_cache(maxsize=16)  # datasketch integrates the false-positive and false-negative curves each time
def band_layout(params: TextMatchParams) -> tuple[int, int]:
    """(bands, rows per band) of the LSH banding for `params.threshold`: the layout datasketch's
    MinHashLSH chooses (equal weight on false positives and false negatives), so a pair whose
    similarity is at the threshold is proposed about as often as it would be there."""
    from datasketch.lsh import _optimal_param

    return _optimal_param(params.threshold, params.num_perm, 0.5, 0.5)


def band_keys(sigs: np.ndarray, params: TextMatchParams) -> np.ndarray:
    """uint64 [rows, bands]: a hash of each band of each signature (two signatures share a band key
    when that band of theirs is equal, up to 64-bit hash collisions, which the verification removes)."""
    bands, rows = band_layout(params)
    sigs = np.asarray(sigs, dtype=np.uint64)
    out = np.zeros((len(sigs), bands), dtype=np.uint64)
    with np.errstate(over="ignore"):  # multiplication modulo 2**64 is the point
        for b in range(bands):
            for j in range(b * rows, (b + 1) * rows):
                out[:, b] = (out[:, b] ^ sigs[:, j]) * np.uint64(0x9E3779B97F4A7C15)
    return out


# Bounds on one query's working set (NearDuplicateIndex.query_signatures): band collisions joined at a time,
# and candidate pairs whose signatures are compared at once (each pair gathers two signatures, 2 KB).
CANDIDATE_BUDGET = 4_000_000
JACCARD_BATCH = 100_000


class NearDuplicateIndex:
    """Texts indexed for near-duplicate lookup: LSH banding proposes candidates (a shared band key),
    the signatures confirm them at `params.threshold`. Keys are whatever identifies an entry for the
    caller (a row number, an id). The banding is done on whole arrays and joined in Polars, so a
    batch of tens of thousands of texts is indexed and queried in about a second."""

    def __init__(self, params: TextMatchParams = TextMatchParams()) -> None:
        self.params = params
        self._keys: list = []
        self._signatures = np.zeros((0, params.num_perm), dtype=np.uint64)
        self._bands = pl.DataFrame(schema={"band": pl.Int32, "bucket": pl.UInt64, "position": pl.Int64})

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, keys: Sequence, texts: Sequence[str]) -> np.ndarray:
        """Index `texts` under `keys`; returns which were long enough to index (the rest are not)."""
        if len(keys) != len(texts):
            raise ValueError(f"NearDuplicateIndex.add: {len(keys)} keys for {len(texts)} texts")
        sigs, usable = signatures(texts, self.params)
        rows = np.flatnonzero(usable)
        self.add_signatures([keys[r] for r in rows], sigs[rows])
        return usable

    def add_signatures(self, keys: Sequence, sigs: np.ndarray) -> None:
        """Index precomputed signatures (from `signatures`, usable rows only) under `keys`."""
        start = len(self._keys)
        self._keys.extend(keys)
        self._signatures = np.vstack([self._signatures, np.asarray(sigs, dtype=np.uint64)])
        positions = np.arange(start, start + len(keys), dtype=np.int64)
        self._bands = pl.concat([self._bands, _band_frame(band_keys(sigs, self.params), positions, "position")])

    def query(self, texts: Sequence[str]) -> pl.DataFrame:
        """Matches of each text: one row per (query_row, key) with jaccard >= threshold, best first."""
        sigs, usable = signatures(texts, self.params)
        return self.query_signatures(sigs, usable)

    def query_signatures(self, sigs: np.ndarray, usable: np.ndarray | None = None) -> pl.DataFrame:
        rows = np.flatnonzero(np.ones(len(sigs), bool) if usable is None else usable)
        if not len(rows) or not self._keys:
            return _empty_matches(self._keys)
        sigs = np.asarray(sigs)
        asked = _band_frame(band_keys(sigs[rows], self.params), rows.astype(np.int64), "query_row")
        # A family of thousands of variants shares its band buckets: every query of it meets every member in
        # several bands. Queries go in chunks whose band collisions stay under CANDIDATE_BUDGET rows, and the
        # candidates are confirmed JACCARD_BATCH at a time, so memory stays bounded however large a family is.
        sizes = self._bands.group_by("band", "bucket").len()
        load = asked.join(sizes, on=["band", "bucket"]).group_by("query_row").agg(pl.col("len").sum()).sort("query_row")
        if load.height == 0:
            return _empty_matches(self._keys)
        chunk_of = (load["len"].cum_sum() // CANDIDATE_BUDGET).to_numpy()
        keys = pl.Series("key", self._keys)
        parts = []
        for chunk in np.unique(chunk_of):
            queries = load["query_row"].filter(pl.Series(chunk_of == chunk))
            candidates = (
                asked.filter(pl.col("query_row").is_in(queries.implode()))
                .join(self._bands, on=["band", "bucket"])
                .select("query_row", "position")
                .unique()
            )
            q_all, p_all = candidates["query_row"].to_numpy(), candidates["position"].to_numpy()
            for start in range(0, len(q_all), JACCARD_BATCH):
                q, p = q_all[start : start + JACCARD_BATCH], p_all[start : start + JACCARD_BATCH]
                jaccard = estimated_jaccard(sigs[q], self._signatures[p])
                keep = jaccard >= self.params.threshold
                parts.append(
                    pl.DataFrame(
                        {
                            "query_row": q[keep].astype(np.int64),
                            "key": keys.gather(p[keep]),
                            "jaccard": jaccard[keep].astype(np.float64),
                        }
                    )
                )
        if not parts:
            return _empty_matches(self._keys)
        return pl.concat(parts).sort(["query_row", "jaccard", "key"], descending=[False, True, False])


def _band_frame(keys: np.ndarray, positions: np.ndarray, name: str) -> pl.DataFrame:
    """Long form of band keys: one row per (band, bucket, the row's position)."""
    n, bands = keys.shape
    return pl.DataFrame(
        {
            "band": np.tile(np.arange(bands, dtype=np.int32), n),
            "bucket": keys.ravel(),
            name: np.repeat(positions, bands),
        }
    )


def _empty_matches(keys: list) -> pl.DataFrame:
    dtype = pl.Series([keys[0]]).dtype if keys else pl.Int64
    return pl.DataFrame(schema={"query_row": pl.Int64, "key": dtype, "jaccard": pl.Float64})


def near_duplicate_pairs(
    ids: Sequence, texts: Sequence[str], params: TextMatchParams = TextMatchParams()
) -> pl.DataFrame:
    """Every pair of near-duplicate texts within one set: columns left, right (ids; left comes first in
    `ids`) and jaccard. The campaign detector's input over a window of posts."""
    sigs, usable = signatures(texts, params)
    rows = np.flatnonzero(usable)
    return near_duplicate_pairs_of_signatures([ids[r] for r in rows], sigs[rows], params)


def near_duplicate_pairs_of_signatures(ids: Sequence, sigs: np.ndarray, params: TextMatchParams) -> pl.DataFrame:
    """`near_duplicate_pairs` of precomputed signatures (usable rows only; a caller may cache them)."""
    index = NearDuplicateIndex(params)
    index.add_signatures(list(range(len(ids))), sigs)
    matches = index.query_signatures(sigs).filter(pl.col("query_row") < pl.col("key"))
    ids_s = pl.Series(list(ids))
    return pl.DataFrame(
        {
            "left": ids_s.gather(matches["query_row"]),
            "right": ids_s.gather(matches["key"]),
            "jaccard": matches["jaccard"],
        }
    )


def near_duplicate_clusters(
    ids: Sequence, texts: Sequence[str], params: TextMatchParams = TextMatchParams()
) -> pl.DataFrame:
    """Clusters of near-duplicate texts (connected components over matching pairs): one row per id
    with `cluster` (the smallest position in its cluster) and `cluster_size`. A text with no copy,
    or too short to match, is a cluster of one."""
    pairs = near_duplicate_pairs(list(range(len(ids))), texts, params)
    return components_frame(ids, pairs["left"].to_numpy(), pairs["right"].to_numpy())


def pair_metrics(
    left: Sequence[str],
    right: Sequence[str],
    is_copy: Sequence[bool],
    thresholds: Sequence[float],
    params: TextMatchParams = TextMatchParams(),
) -> pl.DataFrame:
    """Precision and recall of near-duplicate matching on labelled pairs, per Jaccard threshold, through
    the real index (LSH banding included): each `left[i]` is queried against an index of all `right`
    texts, and pair i is predicted a copy when `right[i]` comes back."""
    if not len(left) == len(right) == len(is_copy):
        raise ValueError("pair_metrics: left, right and is_copy must have one entry per pair")
    truth = np.asarray(is_copy, dtype=bool)
    rows = []
    for threshold in thresholds:
        p = TextMatchParams(threshold, params.shingle, params.num_perm, params.min_chars, params.seed)
        index = NearDuplicateIndex(p)
        index.add(list(range(len(right))), right)
        found = index.query(left).filter(pl.col("query_row") == pl.col("key"))
        predicted = np.zeros(len(truth), dtype=bool)
        predicted[found["query_row"].to_numpy()] = True
        tp = int((predicted & truth).sum())
        rows.append(
            {
                "threshold": float(threshold),
                "pairs": len(truth),
                "copies": int(truth.sum()),
                "predicted": int(predicted.sum()),
                "precision": tp / max(int(predicted.sum()), 1),
                "recall": tp / max(int(truth.sum()), 1),
            }
        )
    return pl.DataFrame(rows)


__all__ = [
    "NearDuplicateIndex",
    "TextArtifacts",
    "TextMatchParams",
    "estimated_jaccard",
    "find_artifacts",
    "matching_form",
    "near_duplicate_clusters",
    "near_duplicate_pairs",
    "pair_metrics",
    "shingles",
    "signatures",
]
