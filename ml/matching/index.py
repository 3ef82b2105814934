"""Exact Hamming-radius search over 256-bit codes (PDQ) for banks of a million entries and more.

Multi-index hashing (Norouzi, Punjani & Fleet, "Fast search in Hamming space with multi-index
hashing"): cut every code into `tables` disjoint substrings of 256 / tables bits. If two codes differ
in at most r bits, some substring differs in at most floor(r / tables) bits (pigeonhole), so looking
up each query substring, and every variant of it with up to that many bits flipped, in a hash table
per substring finds *every* code within r; each candidate is then checked at full length. The
paper's sharper form (`HammingIndex.flips`) flips one bit fewer in most tables when r is not just
below a multiple of the table count: at r = 18, 64 probes per query instead of 272. Recall against
an exhaustive scan is 1 by construction, and `search` refuses a radius the flip budget would not
cover.

Built from faiss: one `IndexBinaryHash` per substring (faiss hashes the first b bits of a code, so
table t holds the codes rotated by 2t bytes, which puts substring t first; rotation preserves
Hamming distance). faiss's own `IndexBinaryMultiHash` does the same lookups, but it gathers
candidates in a `std::unordered_set` and then verifies each against codes stored elsewhere; at a
million entries and radius 31 (bench/matching.py, 2 threads) it answered 792 queries/s, hardly more
than the exhaustive scan's 714, while the per-table hash indexes, which keep each bucket's codes
side by side, answered 10,247/s (33,819/s at radius 18). The cost is memory: every table keeps its
own copy of the codes, 16 x (32 + 8) bytes per entry; building a million entries grew the process
by 0.45-0.8 GB and took about 10 s.

16 tables of 16 bits: with a million entries a bucket holds ~15 codes; radius 31 needs one flip
(17 probes per table, ~4,200 candidates per query). 8 tables of 32 bits would need 3 flips (5,489
probes per table); 32 tables of 8 bits no flip but ~4,000 codes per bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import polars as pl

from ml.matching.pdq import BITS, CODE_BYTES

MAX_FLIPS = 2  # 1 + 16 + 120 probes per table; beyond it an exhaustive scan is the better tool


@dataclass(frozen=True)
class RangeMatches:
    """All (query, entry) pairs within a radius: parallel arrays, sorted by query then distance.
    `query` indexes the queries searched, `entry` the codes in the order they were added."""

    query: np.ndarray  # int64
    entry: np.ndarray  # int64
    distance: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.query)

    def to_frame(self) -> pl.DataFrame:
        return pl.DataFrame({"query": self.query, "entry": self.entry, "distance": self.distance})

    def pairs(self) -> set[tuple[int, int]]:
        return set(zip(self.query.tolist(), self.entry.tolist()))


def _matches(query: np.ndarray, entry: np.ndarray, distance: np.ndarray) -> RangeMatches:
    order = np.lexsort((entry, distance, query))
    return RangeMatches(query[order].astype(np.int64), entry[order].astype(np.int64), distance[order].astype(np.int32))


def _as_codes(codes: np.ndarray, what: str) -> np.ndarray:
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.ndim != 2 or codes.shape[1] != CODE_BYTES:
        raise ValueError(f"{what}: expected an (n, {CODE_BYTES}) uint8 array of 256-bit codes, got shape {codes.shape}")
    return codes


def _range_search(index, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # faiss keeps results strictly below its radius argument: radius + 1 keeps distance == radius.
    limits, distances, labels = index.range_search(queries, radius + 1)
    query = np.repeat(np.arange(len(queries), dtype=np.int64), np.diff(limits.astype(np.int64)))
    return query, labels.astype(np.int64), distances.astype(np.int32)


class HammingIndex:
    """Codes added in order (entry i = the i-th code added), searched for everything within a radius."""

    def __init__(self, tables: int = 16) -> None:
        if BITS % tables or (BITS // tables) % 8 or BITS // tables > 32:
            raise ValueError(
                f"HammingIndex: tables must split 256 bits into whole bytes of at most 32 bits, got {tables}"
            )
        self.tables = tables
        self.bits = BITS // tables
        self._shift = self.bits // 8
        self._indexes = [faiss.IndexBinaryHash(BITS, self.bits) for _ in range(tables)]

    def __len__(self) -> int:
        return int(self._indexes[0].ntotal)

    def max_radius(self) -> int:
        """The largest radius searched exactly within MAX_FLIPS flips per table."""
        return self.tables * (MAX_FLIPS + 1) - 1

    def flips(self, radius: int) -> list[int]:
        """Bits flipped per table for an exact search within `radius` (-1: table not searched).
        With radius = q * tables + a (0 <= a < tables), two codes within it agree to q bits on one of
        the first a + 1 substrings or to q - 1 bits on one of the others: otherwise they would differ
        in at least (a + 1)(q + 1) + (tables - a - 1) q = radius + 1 bits."""
        q, a = divmod(radius, self.tables)
        return [q if t <= a else q - 1 for t in range(self.tables)]

    def add(self, codes: np.ndarray) -> None:
        codes = _as_codes(codes, "HammingIndex.add")
        for t, index in enumerate(self._indexes):
            index.add(np.ascontiguousarray(np.roll(codes, -t * self._shift, axis=1)))

    def search(self, queries: np.ndarray, radius: int) -> RangeMatches:
        """Every (query, entry) within `radius` bits, exactly (see the module docstring)."""
        queries = _as_codes(queries, "HammingIndex.search")
        if not 0 <= radius <= self.max_radius():
            raise ValueError(
                f"radius {radius} is outside what {self.tables} tables search exactly (0..{self.max_radius()}); "
                "use brute_force_search for wider radii"
            )
        found = []
        for t, (index, flips) in enumerate(zip(self._indexes, self.flips(radius))):
            if flips < 0:
                continue
            index.nflip = flips
            found.append(_range_search(index, np.ascontiguousarray(np.roll(queries, -t * self._shift, axis=1)), radius))
        query, entry, distance = (np.concatenate(parts) for parts in zip(*found))
        # A pair close in several substrings is found by several tables: keep it once.
        _, first = np.unique(query * max(len(self), 1) + entry, return_index=True)
        return _matches(query[first], entry[first], distance[first])


def brute_force_search(codes: np.ndarray, queries: np.ndarray, radius: int) -> RangeMatches:
    """The exhaustive scan (faiss `IndexBinaryFlat`): the ground truth `HammingIndex` is measured against."""
    flat = faiss.IndexBinaryFlat(BITS)
    flat.add(_as_codes(codes, "brute_force_search codes"))
    return _matches(*_range_search(flat, _as_codes(queries, "brute_force_search queries"), radius))


def recall(found: RangeMatches, truth: RangeMatches) -> float:
    """Share of the true pairs that `found` contains (1.0 when there is nothing to find)."""
    true_pairs = truth.pairs()
    if not true_pairs:
        return 1.0
    return len(true_pairs & found.pairs()) / len(true_pairs)


def self_matches(codes: np.ndarray, radius: int, tables: int = 16) -> RangeMatches:
    """Pairs (i, j), i < j, of items within `radius` of each other in one set, each pair once at its
    closest distance: near-duplicate images across accounts, for `ml.matching.clusters`. `codes` is
    (n, 32), or (n, k, 32) for k codes per item (`image_codes`: reference and robust)."""
    codes = np.asarray(codes, dtype=np.uint8)
    per_item = 1 if codes.ndim == 2 else codes.shape[1]
    flat = np.ascontiguousarray(codes.reshape(-1, CODE_BYTES))
    index = HammingIndex(tables)
    index.add(flat)
    found = index.search(flat, radius)
    frame = (
        pl.DataFrame({"i": found.query // per_item, "j": found.entry // per_item, "d": found.distance})
        .filter(pl.col("i") < pl.col("j"))
        .group_by("i", "j")
        .agg(pl.col("d").min())
    )
    return _matches(frame["i"].to_numpy(), frame["j"].to_numpy(), frame["d"].to_numpy())


__all__ = ["MAX_FLIPS", "HammingIndex", "RangeMatches", "brute_force_search", "recall", "self_matches"]
