"""Clusters from matching pairs: connected components, the one grouping rule PDQ and text share.

A campaign is everything reachable through near-duplicate links (A copies B, B copies C), so a
cluster is a connected component of the match graph, found by SciPy's sparse-graph routine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def component_labels(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """For n items and matching pairs (left[i], right[i]) given as positions, each item's cluster:
    the smallest position in its component, so labels are stable for a fixed input order."""
    left, right = np.asarray(left, dtype=np.int64), np.asarray(right, dtype=np.int64)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if len(left) and (min(left.min(), right.min()) < 0 or max(left.max(), right.max()) >= n):
        raise ValueError(f"component_labels: pair positions must lie in [0, {n})")
    graph = coo_matrix((np.ones(len(left), dtype=np.int8), (left, right)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    # Relabel each component by its smallest member: SciPy's numbering is arbitrary.
    first = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, labels, np.arange(n))
    return first[labels]


def components_frame(ids: Sequence, left: np.ndarray, right: np.ndarray) -> pl.DataFrame:
    """One row per id: `id`, `cluster` (the position of its component's first member in `ids`) and
    `cluster_size`; `left`/`right` are positions in `ids` of matching pairs."""
    labels = component_labels(len(ids), left, right)
    sizes = np.bincount(labels, minlength=len(ids)) if len(ids) else np.zeros(0, dtype=np.int64)
    return pl.DataFrame({"id": list(ids), "cluster": labels, "cluster_size": sizes[labels]})


__all__ = ["component_labels", "components_frame"]
