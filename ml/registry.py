"""The model registry: one JSON table under `<home>/models/`, changed atomically under a lock.

Every entry records what made a model (kind, dataset version, code version, params), how
good it is (metrics, operating points) and its status: candidate, champion or retired.
Promotion and rollback rewrite the whole table through a temporary file and a rename while
holding an exclusive lock, so readers see the old champion or the new one, never neither.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

STATUSES = ("candidate", "champion", "retired")


class RegistryError(ValueError):
    """A registry operation that cannot be done; the message says why."""


class Registry:
    def __init__(self, models_dir: Path):
        self.dir = Path(models_dir)
        self.path = self.dir / "registry.json"

    @contextmanager
    def _locked(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".registry.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _read(self) -> dict:
        if not self.path.exists():
            return {"models": {}, "history": []}
        return json.loads(self.path.read_text())

    def _write(self, table: dict) -> None:
        fd, tmp = tempfile.mkstemp(prefix=".registry.", suffix=".tmp", dir=self.dir)
        with os.fdopen(fd, "w") as fh:
            json.dump(table, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    # -- reads ------------------------------------------------------------------------
    def list(self) -> list[dict]:
        return sorted(self._read()["models"].values(), key=lambda e: e["created_at"])

    def get(self, version: str) -> dict:
        models = self._read()["models"]
        if version not in models:
            known = ", ".join(sorted(models)) or "none registered yet"
            raise RegistryError(f"unknown model version {version!r} (known: {known})")
        return models[version]

    def champion(self) -> dict | None:
        return next((e for e in self._read()["models"].values() if e["status"] == "champion"), None)

    def artifact_dir(self, entry: dict) -> Path:
        path = Path(entry["path"])
        return path if path.is_absolute() else self.dir / path

    def history(self) -> list[dict]:
        return self._read()["history"]

    # -- writes -----------------------------------------------------------------------
    def register(self, entry: dict) -> dict:
        """Add (or refresh) a candidate; never changes which model is champion."""
        with self._locked():
            table = self._read()
            current = table["models"].get(entry["version"], {})
            entry = {**entry, "status": current.get("status", "candidate"),
                     "created_at": current.get("created_at", entry.get("created_at") or _now())}
            table["models"][entry["version"]] = entry
            self._write(table)
        return entry

    def promote(self, version: str, reason: str, actor: str) -> dict:
        with self._locked():
            table = self._read()
            if version not in table["models"]:
                known = ", ".join(sorted(table["models"])) or "none registered yet"
                raise RegistryError(f"unknown model version {version!r} (known: {known})")
            previous = next((v for v, e in table["models"].items() if e["status"] == "champion"), None)
            if previous == version:
                raise RegistryError(f"{version} is already the champion")
            if previous:
                table["models"][previous]["status"] = "retired"
            table["models"][version]["status"] = "champion"
            event = {"at": _now(), "action": "promote", "version": version, "previous": previous,
                     "reason": reason, "actor": actor}
            table["history"].append(event)
            self._write(table)
        return event

    def rollback(self, actor: str, reason: str = "manual rollback") -> dict:
        """Make the previous champion champion again."""
        with self._locked():
            table = self._read()
            promotions = [h for h in table["history"] if h["action"] in ("promote", "rollback")]
            if not promotions or not promotions[-1].get("previous"):
                raise RegistryError("nothing to roll back to: there has been no earlier champion")
            last = promotions[-1]
            current, target = last["version"], last["previous"]
            table["models"][current]["status"] = "retired"
            table["models"][target]["status"] = "champion"
            # The rollback's own "previous" points at what preceded the target, so repeated
            # rollbacks walk further back instead of flip-flopping.
            before = next((h.get("previous") for h in reversed(promotions) if h["version"] == target), None)
            event = {"at": _now(), "action": "rollback", "version": target, "previous": before,
                     "rolled_back": current, "reason": reason, "actor": actor}
            table["history"].append(event)
            self._write(table)
        return event


def registry_entry(artifact, evaluation: dict, code_version: str) -> dict:
    """The registry row of an evaluated pair (`artifact` is the risk model's ModelArtifact): what made it,
    its text-only, leave-one-source-out, simulated and QA-gold figures, and its gates."""
    from ml.taxonomy import POLICIES

    qa, clf = evaluation["qa_gold"], evaluation["classifier"]
    loso = clf.get("loso") or {}
    return {
        "version": artifact.version, "kind": artifact.kind, "path": artifact.path,
        "content_classifier": evaluation["content_classifier_version"],
        "dataset_version": artifact.dataset_version, "code_version": code_version, "params": artifact.params,
        "metrics": {"text_only_macro_pr_auc": clf["text_only"]["macro_pr_auc"],
                    "baseline_text_only_macro_pr_auc": clf["baseline_text_only"]["macro_pr_auc"],
                    "text_only_pr_auc": {p: clf["text_only"]["policies"][p]["pr_auc"] for p in POLICIES},
                    "held_out_source_macro_pr_auc": {s: m["macro_pr_auc"] for s, m in loso.items()},
                    "test_macro_pr_auc": evaluation["test"]["macro_pr_auc"],
                    "qa_gold_macro_pr_auc": qa["macro_pr_auc"] if qa else None,
                    "test_pr_auc": {p: evaluation["test"]["policies"][p]["pr_auc"] for p in POLICIES},
                    "gates_passed": evaluation["gates_passed"]},
        "operating_points": evaluation["operating_points"],
    }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
