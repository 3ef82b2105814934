"""Builders shared by several test modules (fixtures stay in conftest.py)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ml.corpora import builtin_records
from ml.evaluate_model import evaluate_text_model
from ml.evaluation import text_gates
from ml.lake import Lake, write_parquet_atomic
from ml.reference import reference_frame
from ml.registry import Registry
from ml.training.artifacts import ModelArtifact
from ml.training.content import BASELINE_PARAMS, fit_text_classifier
from ml.training.dataset import dataset_version
from ml.training.text_classifier import ClassifierParams


def land_reference_sets(lake: Lake, per_policy: int = 40) -> None:
    """A small labelled reference set in the lake, as `reference_labels` lands one: dbt's reference
    source reads `lake/reference/*/*.parquet`, so a lake built by hand for a dbt test needs it."""
    frame = reference_frame(builtin_records(per_policy=per_policy))
    for (source,), part in frame.group_by("source"):
        write_parquet_atomic(part, lake.reference / source / "part-0.parquet")


def text_classifier_candidate(frame: pl.DataFrame, models: Path, shuffle_labels: bool = False
                              ) -> tuple[ModelArtifact, dict]:
    """A content classifier fitted, evaluated against the baseline and registered as a candidate."""
    if shuffle_labels:
        frame = frame.with_columns(frame["label"].sample(fraction=1.0, shuffle=True, seed=3).alias("label"))
    version = dataset_version(frame)
    baseline = fit_text_classifier(frame, version, models, None, BASELINE_PARAMS, "baseline", weighted=False)
    artifact = fit_text_classifier(frame, version, models, None, ClassifierParams(), "content_classifier")
    ev = evaluate_text_model(artifact, frame, baseline, None, None, run_loso=False)
    gates = text_gates(ev)
    ev["gates"] = {g.name: {"passed": g.passed, "message": g.message} for g in gates}
    Registry(models).register({
        "version": artifact.version, "kind": artifact.kind, "path": artifact.path,
        "dataset_version": artifact.dataset_version, "code_version": "test", "params": artifact.params,
        "metrics": {"text_only_macro_pr_auc": ev["text_only"]["macro_pr_auc"]},
        "operating_points": ev["operating_points"]})
    return artifact, ev


def small_champion(frame: pl.DataFrame, models: Path) -> ModelArtifact:
    """A registered, promoted content classifier: enough for the scoring CLI and the HTTP service."""
    artifact, _ = text_classifier_candidate(frame, models)
    Registry(models).promote(artifact.version, reason="test champion", actor="test")
    return artifact


def children(pid: int) -> list[tuple[int, str]]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append((int(entry.name), cmd))
    return out


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every process below `pid`: the code server, run workers, step processes, dbt."""
    out, todo = [], [pid]
    while todo:
        kids = children(todo.pop())
        out += kids
        todo += [k for k, _ in kids]
    return out
