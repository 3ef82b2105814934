"""Choosing and recording a deployment: promote the evaluated pair, hold it for a person's approval (as the
shadow meanwhile), or leave the champion as it is.

A pair that passed every gate is promoted when its launch impact is within the launch bounds (a low-risk
launch) or it is the first champion; a high-risk launch waits for `trustlake models approve`, and runs as
the shadow beside the champion meanwhile, so its live impact is measured before anyone signs.

Promotion is a compare-and-swap on the registry: the pair replaces the champion it was evaluated against
and no other. Two retraining runs racing, or a promotion by hand between evaluation and deployment, can
therefore never let a candidate replace a champion it was not compared with. A pair that was champion
once and was replaced or rolled back is never promoted again by itself: only by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from ml.evaluation.results import PairEvaluation
from ml.launch.impact import LaunchImpact, evidence_path
from ml.registry import ChampionChangedError, LaunchRecord, Registry


@dataclass(frozen=True)
class DeploymentDecision:
    promoted: str | None  # the version promoted by this decision, if any
    champion: str | None  # the champion after it
    reason: str
    shadow: str | None = None  # the model scored beside the champion after it, never acting
    awaiting_approval: str | None = None  # the pair, when its launch waits for a person


def deployed_version(champion: str | None, shadow: str | None) -> str:
    """What batch scoring depends on, as one data version: the champion, and the shadow when there is one.
    A champion that stays (and no shadow change) is the same version, so its days are not scored again."""
    return (champion or "none") + (f"+shadow={shadow}" if shadow else "")


def current(registry: Registry, promoted: str | None, reason: str, awaiting: str | None = None) -> DeploymentDecision:
    champion, shadow = registry.champion(), registry.shadow()
    return DeploymentDecision(
        promoted, champion.version if champion else None, reason, shadow.version if shadow else None, awaiting
    )


def deploy(registry: Registry, pair: PairEvaluation, impact: LaunchImpact, actor: str) -> DeploymentDecision:
    """Promote the pair, hold it for approval, or leave the champion untouched (recording who and why)."""
    if impact.candidate != pair.version:
        raise ValueError(f"the launch impact given is of {impact.candidate}, not of the pair {pair.version}")
    before = registry.champion()
    if not pair.gates_passed:
        return current(
            registry, None, f"{pair.version} failed its gates ({', '.join(pair.failed_gates)}); champion unchanged"
        )
    if before is not None and before.version == pair.version:
        return current(registry, None, "the pair is already champion")
    entry = registry.get(pair.version)
    if entry.status == "retired":
        return current(
            registry,
            None,
            f"{pair.version} was champion before and was replaced or rolled back: it is not promoted "
            "again by itself (trustlake models promote, if that is wanted)",
        )
    launch = entry.launch
    if launch is not None and launch.approval == "rejected":
        return current(
            registry, None, f"{pair.version}'s launch was rejected by {launch.decided_by}: {launch.decision_reason}"
        )
    if launch is not None and launch.approval == "pending":
        return current(registry, None, f"{pair.version} awaits approval: {approve_hint(pair.version)}", pair.version)
    record = LaunchRecord(impact.risk_tier, evidence_path(pair.version), impact.reasons)
    if impact.risk_tier == "high":
        registry.request_approval(pair.version, record, actor, shadow=True)
        reason = f"high-risk launch ({'; '.join(impact.reasons)}): {approve_hint(pair.version)}"
        return current(registry, None, reason, pair.version)
    text_only = pair.classifier.text_only.macro_pr_auc
    alone = (
        f"the content classifier alone (the pair {pair.instead_of} did not beat it significantly: "
        f"{pair.gain.describe('test items')}); "
        if pair.instead_of and pair.gain
        else ""
    )
    reason = alone + (
        f"every gate passed and the launch is {'a first launch' if impact.risk_tier == 'first' else 'low risk'}: "
        f"text-only held-out macro PR-AUC {text_only:.3f} vs baseline "
        f"{pair.classifier.baseline_text_only.macro_pr_auc:.3f}, simulated test macro PR-AUC "
        f"{pair.test.macro_pr_auc:.3f}"
        + (
            f" vs champion {pair.champion_test.macro_pr_auc:.3f} on the same rows"
            if pair.champion_test
            else " (first champion)"
        )
    )
    try:
        registry.promote(
            pair.version, reason=reason, actor=actor, expected_champion=pair.champion_version, launch=record
        )
    except ChampionChangedError as exc:
        return current(registry, None, str(exc))
    return current(registry, pair.version, reason)


def approve_hint(version: str) -> str:
    return (
        f"it runs as the shadow meanwhile; read its launch report, then `trustlake models approve {version} --by NAME "
        "--reason TEXT` (or `trustlake models reject`)"
    )
