"""Counting events strictly before a moment, per key, without looking at the future.

Every history feature is "how many events of this key happened in [t - window, t)". Keys
and times are packed into one sortable int64 so one `searchsorted` answers all queries.
"""

from __future__ import annotations

import numpy as np

_SHIFT = 1 << 34  # seconds since epoch fit below 2**34 until the year 2514


def _pack(keys: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    return keys.astype(np.int64) * _SHIFT + seconds.astype(np.int64)


def count_before(
    event_keys: np.ndarray,
    event_seconds: np.ndarray,
    query_keys: np.ndarray,
    query_seconds: np.ndarray,
    window_seconds: int | None = None,
) -> np.ndarray:
    """For each query, events with the same key and time in [t - window, t) (t excluded).

    Keys must be small non-negative integers (dense codes), times whole seconds.
    """
    packed = np.sort(_pack(event_keys, event_seconds))
    hi = np.searchsorted(packed, _pack(query_keys, query_seconds), side="left")
    if window_seconds is None:
        lo = np.searchsorted(packed, _pack(query_keys, np.zeros_like(query_seconds)), side="left")
    else:
        lo = np.searchsorted(packed, _pack(query_keys, query_seconds - window_seconds), side="left")
    return (hi - lo).astype(np.int64)
