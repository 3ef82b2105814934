"""Promotion gates: what a content classifier and the pair must show before they may be promoted.

A gate is a named rule with the value it measured and the bound it was held to; the evaluation
assets report each as an asset check and `deployed_model` promotes only when all of them passed.
Small sets are not gated on noise: PR-AUC and calibration count only policies with enough
positives, and calibration is not gated on a set too small to tell it from sampling error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ml.evaluation.results import ClassifierEvaluation, GateResult, PairEvaluation, SetMetrics, SliceMetrics
from ml.taxonomy import VIOLATING


@dataclass(frozen=True)
class GateConfig:
    min_pr_auc: float = 0.3  # every violating policy (text-only held-out for classifiers; test split for the pair)
    # Text-only held-out macro PR-AUC minus the baseline's must be above this (negative: it may trail by less).
    min_baseline_margin: float = 0.0
    max_regression: float = 0.02  # macro PR-AUC below the champion on the same rows
    max_calibration_error: float = 0.1
    max_slice_regression: float = 0.05  # a slice's macro ROC-AUC below the classifier alone's on the same rows
    # Non-inferiority margin of leave-one-source-out: with 95% confidence, the candidate is at most
    # this far below the baseline recipe's macro PR-AUC on every held-out source.
    max_source_regression: float = 0.01
    # The risk model earns its place when the lower end of the paired-bootstrap interval of the pair's gain over
    # its classifier alone, at this confidence, is above 0 (overall and on campaign items); 0: not required.
    pair_gain_confidence: float = 0.95

    def __post_init__(self) -> None:
        if not 0.0 <= self.pair_gain_confidence < 1.0:
            raise ValueError(
                f"pair_gain_confidence must be at least 0 and below 1 (0: not required), not {self.pair_gain_confidence}"
            )


TEXT_GATES = (
    "beats_baseline_text_only",
    "non_inferior_on_every_held_out_source",
    "no_regression_vs_champion",
    "min_pr_auc",
    "calibration",
)
PAIR_GATES = (
    "content_classifier_gates",
    "min_pr_auc",
    "no_regression_vs_champion",
    "calibration",
    "context_helps_every_slice",
    "beats_classifier_significantly",
)

MIN_GATE_POSITIVES = 20  # below this, a PR-AUC is too noisy to gate on (a few rows move it by 0.2)
# Below this, the expected calibration error of a perfectly calibrated model (10 bins) is itself of
# the order of the 0.1 bound: a 77-row split measured 0.106 for scam.
MIN_CALIBRATION_ROWS = 300


def gate_descriptions(config: GateConfig) -> dict[str, str]:
    """What each gate asserts, with the bounds of `config` (the ones in force, which a deployment may set)."""
    return {
        "beats_baseline_text_only": "Text-only held-out macro PR-AUC above the TF-IDF baseline's on the same texts"
        + (
            f", by more than {config.min_baseline_margin:g}."
            if config.min_baseline_margin > 0
            else f" (or less than {-config.min_baseline_margin:g} below it, as this deployment allows)."
            if config.min_baseline_margin < 0
            else "."
        ),
        "non_inferior_on_every_held_out_source": "Leave-one-source-out non-inferiority: on every held-out source, "
        "the lower end of the 95% paired-bootstrap interval of candidate minus baseline macro PR-AUC is above "
        f"minus the margin ({config.max_source_regression:g}).",
        "no_regression_vs_champion": f"Macro PR-AUC at most {config.max_regression:g} below the champion on the "
        "same rows.",
        "min_pr_auc": f"Every violating policy's PR-AUC at or above {config.min_pr_auc:g}.",
        "calibration": f"Worst policy expected calibration error at most {config.max_calibration_error:g}.",
        "content_classifier_gates": "The paired content classifier passed every text gate.",
        "context_helps_every_slice": "On no slice (surface, language, country, account age) does the pair's macro "
        f"ROC-AUC fall more than {config.max_slice_regression:g} below its content classifier alone's: context "
        "must not hurt.",
        "beats_classifier_significantly": (
            "The risk model earns its place: on the simulated test split the lower end of the "
            f"{config.pair_gain_confidence:.0%} paired-bootstrap interval of the pair's macro PR-AUC minus its content "
            "classifier alone's is above 0, overall and on campaign items (posts linked to another account's earlier "
            "post by a near-duplicate text or a shared link, number or address). When it is not, the classifier is "
            "evaluated and deployed alone in the pair's place, and this check says why."
            if config.pair_gain_confidence
            else "Not required in this deployment (pair_gain_confidence 0): the pair's gain over its classifier "
            "alone is reported, and the pair is deployed when its other gates pass."
        ),
    }


def _min_pr_auc(metrics: SetMetrics, config: GateConfig, where: str) -> GateResult:
    gated = [p for p in VIOLATING if metrics.positives(p) >= MIN_GATE_POSITIVES]
    skipped = sorted(set(VIOLATING) - set(gated))
    note = f"; not gated here, fewer than {MIN_GATE_POSITIVES} positives: {', '.join(skipped)}" if skipped else ""
    if not gated:
        return GateResult(
            "min_pr_auc",
            True,
            f"no policy has {MIN_GATE_POSITIVES} positives on {where}" + note,
            math.nan,
            config.min_pr_auc,
        )
    worst_policy = min(gated, key=lambda p: np.nan_to_num(metrics.pr_auc(p), nan=-1))
    worst = float(np.nan_to_num(metrics.pr_auc(worst_policy), nan=0.0))
    return GateResult(
        "min_pr_auc",
        worst >= config.min_pr_auc,
        f"lowest policy PR-AUC on {where} {worst:.3f} ({worst_policy}) vs minimum {config.min_pr_auc}"
        + ("" if worst >= config.min_pr_auc else f": short by {config.min_pr_auc - worst:.3f}")
        + note,
        worst,
        config.min_pr_auc,
    )


def _no_regression(
    metrics: SetMetrics, champion: SetMetrics | None, champion_version: str | None, config: GateConfig, where: str
) -> GateResult:
    if champion is None:
        return GateResult(
            "no_regression_vs_champion", True, "no champion yet: nothing to regress from", 0.0, config.max_regression
        )
    drop = champion.macro_pr_auc - metrics.macro_pr_auc
    return GateResult(
        "no_regression_vs_champion",
        drop <= config.max_regression,
        f"{where} macro PR-AUC {metrics.macro_pr_auc:.3f} vs champion {champion_version} "
        f"{champion.macro_pr_auc:.3f} on the same rows (drop {drop:+.3f}, tolerance "
        f"{config.max_regression})",
        drop,
        config.max_regression,
    )


def _calibration(metrics: SetMetrics, config: GateConfig, where: str) -> GateResult:
    if metrics.rows < MIN_CALIBRATION_ROWS:
        return GateResult(
            "calibration",
            True,
            f"not gated: {where} has {metrics.rows} rows, fewer than "
            f"{MIN_CALIBRATION_ROWS}, too few to tell calibration error from sampling noise",
            math.nan,
            config.max_calibration_error,
        )
    gated = {p: metrics.policies[p].calibration_error for p in VIOLATING if metrics.positives(p) >= MIN_GATE_POSITIVES}
    if not gated:
        return GateResult(
            "calibration",
            True,
            f"no policy has {MIN_GATE_POSITIVES} positives on {where}",
            math.nan,
            config.max_calibration_error,
        )
    worst = max(gated, key=gated.get)
    ece = gated[worst]
    return GateResult(
        "calibration",
        ece <= config.max_calibration_error,
        f"worst policy calibration error on {where} {ece:.3f} ({worst}) vs bound "
        f"{config.max_calibration_error}; gated on policies with {MIN_GATE_POSITIVES}+ positives",
        ece,
        config.max_calibration_error,
    )


def text_gates(ev: ClassifierEvaluation, config: GateConfig = GateConfig()) -> tuple[GateResult, ...]:
    """Gates of a content-classifier candidate: it must beat the baseline on text it never saw."""
    ours, base = ev.text_only, ev.baseline_text_only
    margin = ours.macro_pr_auc - base.macro_pr_auc
    gates = [
        GateResult(
            "beats_baseline_text_only",
            margin > config.min_baseline_margin,
            f"text-only held-out macro PR-AUC {ours.macro_pr_auc:.3f} vs baseline "
            f"{base.macro_pr_auc:.3f} on the same {ours.rows} texts ({margin:+.3f}; bound "
            f"{config.min_baseline_margin:+g})",
            margin,
            config.min_baseline_margin,
        )
    ]
    if not ev.held_out_sources:
        gates.append(
            GateResult(
                "non_inferior_on_every_held_out_source",
                False,
                "leave-one-source-out was not measured for this candidate, so it cannot be promoted",
                math.nan,
                0.0,
            )
        )
    else:
        # Non-inferiority, the usual test of "no worse than": a held-out source passes when the lower end
        # of the 95% paired-bootstrap interval of (candidate - baseline) is above -margin. Neither "beats on
        # every source" (two near-identical recipes tie on some, and a tie must not block a candidate that
        # wins elsewhere) nor "not significantly worse" (a small source with a wide interval would pass
        # whatever its loss): the candidate must show it is at most the margin behind, everywhere.
        sources = ev.held_out_sources
        margin_bound = -config.max_source_regression
        worse = sorted(s.source for s in sources if s.delta_ci_low < margin_bound)
        ahead = [s.source for s in sources if s.delta_ci_low > 0]
        weakest = min(sources, key=lambda s: s.delta_ci_low)
        gates.append(
            GateResult(
                "non_inferior_on_every_held_out_source",
                not worse,
                f"more than {config.max_source_regression} behind the baseline (95%) on: {', '.join(worse) or 'none'}; "
                f"significantly ahead on {len(ahead)} of {len(sources)} sources; weakest {weakest.source} "
                f"{weakest.delta:+.3f} (95% interval {weakest.delta_ci_low:+.3f} to {weakest.delta_ci_high:+.3f})",
                weakest.delta_ci_low,
                margin_bound,
            )
        )
    gates.append(_no_regression(ours, ev.champion_text_only, ev.champion_version, config, "text-only held-out"))
    gates.append(_min_pr_auc(ours, config, "text-only held-out"))
    gates.append(_calibration(ours, config, "text-only held-out"))
    return tuple(gates)


def worst_slice(slices: dict[str, dict[str, SliceMetrics]]) -> tuple[float, str]:
    """(largest drop of the pair's macro ROC-AUC below its classifier alone's, where), over gated slices."""
    drop, where = 0.0, "none"
    for col, values in slices.items():
        for v, m in values.items():
            if math.isfinite(m.macro_roc_auc) and math.isfinite(m.classifier_macro_roc_auc):
                d = m.classifier_macro_roc_auc - m.macro_roc_auc
                if d > drop:
                    drop, where = d, f"{col}={v}"
    return float(drop), where


def pair_gates(ev: PairEvaluation, config: GateConfig = GateConfig()) -> tuple[GateResult, ...]:
    """Gates of the pair (content classifier + risk model) on platform content of the test period.

    The slice gate compares the pair with its own classifier on the same slice rather than with the
    whole split: the whole split's ROC-AUC includes easy pairs of rows from different surfaces
    (spam DMs against benign posts), so every slice looks worse than it, whatever the model.
    """
    cls = ev.classifier
    gates = [
        GateResult(
            "content_classifier_gates",
            cls.gates_passed,
            f"content classifier {cls.version} "
            + (
                "passed every text gate"
                if cls.gates_passed
                else f"failed {', '.join(cls.failed_gates) or 'an unmeasured gate'}"
            ),
            float(cls.gates_passed),
            1.0,
        ),
        _min_pr_auc(ev.test, config, "the simulated test split"),
        _no_regression(ev.test, ev.champion_test, ev.champion_version, config, "simulated test split"),
        _calibration(ev.test, config, "the simulated test split"),
    ]
    gates.append(_beats_classifier(ev, config))
    drop, where = worst_slice(ev.slices)
    gates.append(
        GateResult(
            "context_helps_every_slice",
            drop <= config.max_slice_regression,
            f"largest drop of the pair's macro ROC-AUC below its content classifier alone's on one "
            f"slice {drop:.3f} at {where} vs bound {config.max_slice_regression}",
            drop,
            config.max_slice_regression,
        )
    )
    return tuple(gates)


def _beats_classifier(ev: PairEvaluation, config: GateConfig) -> GateResult:
    """Whether the risk model earns its place beside the classifier (the pair's `gain` and `campaign_gain`)."""
    name = "beats_classifier_significantly"
    if ev.gain is None or ev.campaign_gain is None:
        return GateResult(name, False, "the pair's gain over its classifier was not measured", math.nan, 0.0)
    shown = f"overall {ev.gain.describe('test items')}; on campaign items {ev.campaign_gain.describe('items')}"
    if not config.pair_gain_confidence:
        return GateResult(name, True, f"not required here (pair_gain_confidence 0); {shown}", ev.gain.ci_low, 0.0)
    if ev.kind == "classifier_alone":
        return GateResult(
            name,
            True,
            f"the content classifier alone, in place of the pair {ev.instead_of}, which did not beat it "
            f"significantly: {shown}",
            ev.gain.ci_low,
            0.0,
        )
    passed = ev.gain.significant and ev.campaign_gain.significant
    return GateResult(
        name,
        passed,
        f"pair minus its classifier alone, macro PR-AUC: {shown}"
        + ("" if passed else ": not significant, so the content classifier is deployed alone"),
        float(np.fmin(ev.gain.ci_low, ev.campaign_gain.ci_low)),
        0.0,
    )
