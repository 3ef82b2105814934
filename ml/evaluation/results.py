"""What evaluation hands to gates, deployment, the registry, the UI and the CLI: frozen records.

Every figure a later stage reads is an attribute here, so nothing reaches four levels into a
nested dict, and a renamed field fails where it is read instead of returning None. NaN means
"not measured on this set" (a policy with no positives); `as_json` turns it into null.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, is_dataclass


@dataclass(frozen=True)
class OperatingPoint:
    policy: str
    auto_action_threshold: float  # score at which precision on validation reaches the target
    review_threshold: float  # score at which recall on validation reaches the target
    auto_action_precision: float
    review_recall: float
    reachable: bool  # False when no threshold reaches the precision target


@dataclass(frozen=True)
class PolicyMetrics:
    positives: int
    pr_auc: float
    roc_auc: float
    calibration_error: float = math.nan
    precision_at_auto_action: float = math.nan
    recall_at_auto_action: float = math.nan
    precision_at_review: float = math.nan
    recall_at_review: float = math.nan
    # 95% bootstrap interval of pr_auc (rows resampled); NaN: not measured on this set
    pr_auc_ci_low: float = math.nan
    pr_auc_ci_high: float = math.nan


@dataclass(frozen=True)
class SetMetrics:
    """One model on one set of rows: per-policy metrics and their macro means over the violating
    policies the set contains."""

    rows: int
    macro_pr_auc: float
    macro_roc_auc: float
    policies: Mapping[str, PolicyMetrics]
    max_calibration_error: float = math.nan
    confusion_matrix: tuple[tuple[int, ...], ...] = ()

    def pr_auc(self, policy: str) -> float:
        m = self.policies.get(policy)
        return m.pr_auc if m is not None else math.nan

    def roc_auc(self, policy: str) -> float:
        m = self.policies.get(policy)
        return m.roc_auc if m is not None else math.nan

    def positives(self, policy: str) -> int:
        m = self.policies.get(policy)
        return m.positives if m is not None else 0


@dataclass(frozen=True)
class HeldOutSource:
    """Leave-one-source-out for one source: the candidate's and the baseline's recipe, each trained
    without every copy of the source's texts, scored on the source's records."""

    source: str
    candidate: SetMetrics
    baseline: SetMetrics
    rows_trained: int
    unlearnable_policies: tuple[str, ...]
    delta: float  # candidate minus baseline macro PR-AUC
    delta_ci_low: float  # 95% paired-bootstrap interval of delta
    delta_ci_high: float


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    message: str
    value: float
    bound: float


@dataclass(frozen=True)
class SliceMetrics:
    rows: int
    macro_pr_auc: float
    macro_roc_auc: float
    classifier_macro_roc_auc: float  # the content classifier alone on the same rows (pair evaluations)


class Gated:
    """An evaluation judged by gates (`gates`, a tuple of GateResult): passed only when it has gates
    and every one passed."""

    gates: tuple[GateResult, ...]

    @property
    def gates_passed(self) -> bool:
        return bool(self.gates) and all(g.passed for g in self.gates)

    @property
    def failed_gates(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.gates if not g.passed)


@dataclass(frozen=True)
class ClassifierEvaluation(Gated):
    """A content-classifier candidate on text it never trained on, beside the baseline and the champion."""

    version: str
    kind: str
    dataset_version: str
    baseline_version: str
    operating_points: Mapping[str, OperatingPoint]
    text_only: SetMetrics
    baseline_text_only: SetMetrics
    qa_gold_text_only: SetMetrics | None
    champion_version: str | None
    champion_text_only: SetMetrics | None
    held_out_sources: tuple[HeldOutSource, ...] | None  # None: leave-one-source-out not measured
    plots: Mapping[str, str] = field(default_factory=dict)
    gates: tuple[GateResult, ...] = ()


@dataclass(frozen=True)
class PairedGain:
    """What the pair adds to its content classifier alone on the same rows: macro PR-AUC of the pair minus
    the classifier's, and the paired-bootstrap interval of that difference at `confidence` (NaN: not measurable there,
    no policy with enough positives)."""

    rows: int
    delta: float
    ci_low: float
    ci_high: float
    confidence: float = 0.95

    @property
    def significant(self) -> bool:
        return self.ci_low > 0  # NaN compares False: an unmeasurable gain is not a shown one

    def describe(self, where: str) -> str:
        if not math.isfinite(self.delta):
            return f"not measurable on {self.rows} {where} (too few positives of any policy)"
        return f"{self.delta:+.3f} ({self.confidence:.0%} {self.ci_low:+.3f} to {self.ci_high:+.3f}) on {self.rows} {where}"


@dataclass(frozen=True)
class PairEvaluation(Gated):
    """The pair (content classifier + risk model) on platform content of the test period; or, with kind
    `classifier_alone`, the content classifier deployed alone in place of the pair `instead_of`, which did
    not beat it significantly (`gain`, `campaign_gain` are that pair's)."""

    version: str
    kind: str
    dataset_version: str
    content_classifier_version: str
    operating_points: Mapping[str, OperatingPoint]
    test: SetMetrics
    classifier_alone_test: SetMetrics
    qa_gold: SetMetrics | None
    slices: Mapping[str, Mapping[str, SliceMetrics]]
    champion_version: str | None
    champion_test: SetMetrics | None
    classifier: ClassifierEvaluation
    plots: Mapping[str, str] = field(default_factory=dict)
    gates: tuple[GateResult, ...] = ()
    gain: PairedGain | None = None  # over the classifier alone, on the whole test split
    campaign_gain: PairedGain | None = None  # on its campaign items (ml/evaluation/evaluate.py campaign_items)
    instead_of: str | None = None


def macro(metrics: SetMetrics | None) -> float:
    """Macro PR-AUC of a set, NaN when the set was not measured."""
    return metrics.macro_pr_auc if metrics is not None else math.nan


def as_json(record) -> object:
    """A JSON-ready copy of any record above (NaN and infinity become null)."""
    if is_dataclass(record):
        out = {f.name: as_json(getattr(record, f.name)) for f in fields(record)}
        if isinstance(record, Gated):
            out["gates_passed"] = record.gates_passed
        return out
    if isinstance(record, Mapping):
        return {str(k): as_json(v) for k, v in record.items()}
    if isinstance(record, (list, tuple)):
        return [as_json(v) for v in record]
    if isinstance(record, float):
        return record if math.isfinite(record) else None
    if hasattr(record, "item"):  # numpy scalars
        return as_json(record.item())
    return record


def from_json(cls, data):
    """The record of type `cls` that `as_json` wrote as `data` (null back to NaN for floats)."""
    import types
    import typing

    origin, args = typing.get_origin(cls), typing.get_args(cls)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return from_json(inner, data)
    if is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        values = {}
        for f in fields(cls):
            if f.name in data:
                values[f.name] = from_json(hints[f.name], data[f.name])
            elif type(None) in typing.get_args(hints[f.name]):
                values[f.name] = None  # written before the field existed: not measured
        return cls(**values)
    if origin in (Mapping, dict) or cls is Mapping:
        value_type = args[1] if args else object
        return {k: from_json(value_type, v) for k, v in data.items()}
    if origin is tuple:
        item = args[0] if args else object
        return tuple(from_json(item, v) for v in data)
    if cls is float:
        return math.nan if data is None else float(data)
    return data


def read_evaluation(path) -> ClassifierEvaluation | PairEvaluation:
    """An evaluation.json written beside a model (ml/evaluation/evaluate.py), as its record."""
    import json
    from pathlib import Path

    data = json.loads(Path(path).read_text())
    return from_json(PairEvaluation if "classifier" in data else ClassifierEvaluation, data)
