"""Which model version answers an item (a canary takes a sticky share) and what each version answered.

A canary (`trustlake serve --canary VERSION --canary-share S`) answers a share S of items, chosen by
a hash of the item's id so the same id always gets the same version: a user's posts are judged by one
model throughout the canary, and a re-sent item gets the same answer. The hash is salted with the
canary's version, so each canary draws its own cohort rather than the same ids every time. Items
sent without an id are routed by their text (the same text, the same version).

`TrafficStats` counts requests and items per answering version and keeps each version's latest
request latencies (a bounded window) for percentiles: GET /v1/stats shows them, so a canary's
latency and volume can be compared with the champion's while it runs.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

LATENCY_WINDOW = 10_000  # latest requests per version kept for percentiles


@dataclass(frozen=True)
class Canary:
    """`share` of items, by id, answered by `version` instead of the champion."""

    version: str
    share: float

    def __post_init__(self) -> None:
        if not 0.0 < self.share <= 1.0:
            raise ValueError(f"canary share must be in (0, 1], got {self.share}")

    def takes(self, key: str | int | None, text: str = "") -> bool:
        """Whether the canary answers the item with id `key` (or, without an id, this text)."""
        name = f"id:{key}" if key is not None else f"text:{text}"
        digest = hashlib.blake2b(f"{self.version}\x00{name}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64 < self.share

    def routes(self, keys: Sequence[str | int | None], texts: Sequence[str]) -> np.ndarray:
        """bool per item: True where the canary answers."""
        return np.fromiter((self.takes(k, t) for k, t in zip(keys, texts)), dtype=bool, count=len(keys))


@dataclass
class _VersionCounts:
    requests: int = 0
    items: int = 0
    latencies_ms: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))


class TrafficStats:
    """Requests, items and latencies per answering version (thread-safe; Ray Serve replicas each keep their own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[str, _VersionCounts] = {}

    def record(self, items_by_version: dict[str, int], latency_ms: float) -> None:
        """One answered request: how many of its items each version answered, and its latency."""
        with self._lock:
            for version, items in items_by_version.items():
                counts = self._versions.setdefault(version, _VersionCounts())
                counts.requests += 1
                counts.items += items
                counts.latencies_ms.append(latency_ms)

    def as_dict(self) -> dict[str, dict]:
        with self._lock:
            snapshot = {v: (c.requests, c.items, np.array(c.latencies_ms)) for v, c in self._versions.items()}
        out = {}
        for version, (requests, items, latencies) in snapshot.items():
            out[version] = {"requests": requests, "items": items, "latency_window": len(latencies)}
            if len(latencies):
                out[version]["latency_ms"] = {
                    f"p{q}": round(float(np.percentile(latencies, q)), 2) for q in (50, 90, 99)
                } | {"mean": round(float(latencies.mean()), 2)}
        return out
