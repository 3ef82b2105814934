"""Model artifacts on disk and the one output schema every model's scores share."""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

from ml.lake import write_text_atomic
from ml.taxonomy import POLICIES

PROBA_COLUMNS: tuple[str, ...] = tuple(f"p_{p}" for p in POLICIES)


def new_version(kind: str) -> str:
    """A new model version: its kind, the UTC time and a random suffix (two fits in one second differ)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return f"{kind}-{stamp}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class ModelArtifact:
    """What a training asset hands downstream: where the model is and what made it."""

    kind: str
    version: str
    path: str
    dataset_version: str
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    temperature: float = 1.0

    def write_manifest(self) -> ModelArtifact:
        """Write `artifact.json` beside the model (atomically) and return the artifact."""
        write_text_atomic(Path(self.path, "artifact.json"), json.dumps(asdict(self), indent=2, sort_keys=True))
        return self

    @classmethod
    def read(cls, path: Path) -> ModelArtifact:
        return cls(**{**json.loads(Path(path, "artifact.json").read_text()), "path": str(path)})


def classifier_alone(classifier: ModelArtifact, models_dir: Path, instead_of: str) -> ModelArtifact:
    """The content classifier as a deployable of its own (kind `classifier_alone`), standing in for the pair
    `instead_of`: a directory naming its classifier as a pair does, where its evaluation and operating points
    on platform content are written (the classifier's own directory keeps its text-only ones). It reads text
    only, never context, and its scores are the classifier's."""
    version = new_version("classifier_alone")
    out = models_dir / version
    out.mkdir(parents=True)
    params = {
        "content_classifier": classifier.version,
        "content_classifier_dataset_version": classifier.dataset_version,
        "instead_of": instead_of,
    }
    return ModelArtifact("classifier_alone", version, str(out), classifier.dataset_version, params).write_manifest()


def proba_frame(content_ids: pl.Series | None, proba: np.ndarray) -> pl.DataFrame:
    """The shared score schema: content_id (if known) then p_<policy> for every policy."""
    cols = {name: proba[:, k].astype(np.float64) for k, name in enumerate(PROBA_COLUMNS)}
    frame = pl.DataFrame(cols)
    if content_ids is not None:
        frame = frame.with_columns(content_ids.alias("content_id")).select("content_id", *PROBA_COLUMNS)
    return frame
