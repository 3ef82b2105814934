"""Choosing and recording a promotion: the evaluated pair when every gate passed, or nothing.

Promotion is a compare-and-swap on the registry: the pair replaces the champion it was evaluated
against and no other. Two retraining runs racing, or a promotion by hand between evaluation and
deployment, can therefore never let a candidate replace a champion it was not compared with.
"""

from __future__ import annotations

from dataclasses import dataclass

from ml.evaluation.results import PairEvaluation
from ml.registry import ChampionChangedError, Registry


@dataclass(frozen=True)
class DeploymentDecision:
    promoted: str | None  # the version promoted by this decision, if any
    champion: str | None  # the champion after it
    reason: str


def deploy(registry: Registry, pair: PairEvaluation, actor: str) -> DeploymentDecision:
    """Promote the pair (recording who and why) or leave the champion untouched."""
    before = registry.champion()
    current = before.version if before else None
    text_only = pair.classifier.text_only.macro_pr_auc
    if not pair.gates_passed:
        return DeploymentDecision(
            None, current, f"{pair.version} failed its gates ({', '.join(pair.failed_gates)}); champion unchanged"
        )
    if current == pair.version:
        return DeploymentDecision(None, current, "the pair is already champion")
    reason = (
        f"every gate passed: text-only held-out macro PR-AUC {text_only:.3f} vs baseline "
        f"{pair.classifier.baseline_text_only.macro_pr_auc:.3f}, simulated test macro PR-AUC "
        f"{pair.test.macro_pr_auc:.3f}"
        + (
            f" vs champion {pair.champion_test.macro_pr_auc:.3f} on the same rows"
            if pair.champion_test
            else " (first champion)"
        )
    )
    try:
        registry.promote(pair.version, reason=reason, actor=actor, expected_champion=pair.champion_version)
    except ChampionChangedError as exc:
        now = registry.champion()
        return DeploymentDecision(None, now.version if now else None, str(exc))
    return DeploymentDecision(pair.version, pair.version, reason)
