"""A cache of linear fits, so an unchanged input is never refitted.

A member of a content-classifier recipe fitted on a set of rows is decided by four things: the
member itself (its label treatment and parameters), the training set's content hash (its
dataset version), which rows of it were used (the whole train split, the train split without
one reference source, or without one out-of-fold fold), and, for a member that down-weights
likely label errors, the label-issue table's version. With the code that fits it, that is the
key. The cache keeps what later steps need back: a fitted member (the final fits, which the
baseline and the content classifier share) or a member's probabilities on the rows it was held
out from (leave-one-source-out and out-of-fold scores, a few thousand numbers instead of a model).

Entries live under `<home>/cache/fits/<dataset version>/`; only the newest few dataset versions
are kept. The cache is derived: deleting it costs refits, never data.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from ml.lake import write_bytes_atomic

KEEP_DATASET_VERSIONS = 2


def _code_fingerprint() -> str:
    """The source of everything that decides a fit's numbers (featurisation, label treatment, the
    classifier) and the library doing the fitting: a change to any of them misses the cache."""
    from ml.features import text as features_text
    from ml.training import labels, text_classifier

    h = hashlib.blake2b(digest_size=8)
    for module in (features_text, labels, text_classifier):
        h.update(inspect.getsource(module).encode())
    h.update(f"sklearn {sklearn.__version__} numpy {np.__version__}".encode())
    return h.hexdigest()


class FitCache:
    """Fits of one dataset version (see the module docstring)."""

    def __init__(self, root: Path, dataset_version: str, issues_version: str | None = None):
        self.dir = Path(root) / dataset_version
        self.dataset_version = dataset_version
        self.issues_version = issues_version
        self._code = _code_fingerprint()
        self.hits = 0
        self.misses = 0

    def key(self, member, subset: str, what: str) -> str:
        """`member` a RecipeMember; `subset` which rows it was fitted on; `what` is kept ("model", "proba")."""
        reads_issues = member.treatment.flagged_weight != 1.0
        if reads_issues and self.issues_version is None:
            raise ValueError("this member down-weights likely label errors: give the cache the label issues' version")
        payload = {
            "member": asdict(member),
            "subset": subset,
            "what": what,
            "issues": self.issues_version if reads_issues else None,
            "code": self._code,
        }
        return hashlib.blake2b(json.dumps(payload, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()

    def get(self, key: str) -> Any | None:
        path = self.dir / f"{key}.joblib"
        try:
            value = joblib.load(path)
        except FileNotFoundError:
            self.misses += 1
            return None
        except Exception:  # noqa: BLE001  a damaged entry is a miss: it is refitted and written again
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, key: str, value: Any) -> None:
        first = not self.dir.exists()
        self.dir.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        joblib.dump(value, buffer)
        write_bytes_atomic(self.dir / f"{key}.joblib", buffer.getvalue())
        if first:
            self._prune()

    def _prune(self) -> None:
        """Keep the newest KEEP_DATASET_VERSIONS dataset versions (by last write)."""
        versions = sorted(
            (p for p in self.dir.parent.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True
        )
        for old in versions[KEEP_DATASET_VERSIONS:]:
            shutil.rmtree(old, ignore_errors=True)
