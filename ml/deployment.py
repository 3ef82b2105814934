"""Choosing and recording a promotion: the best candidate that passed every gate, or nothing."""

from __future__ import annotations

from ml.registry import Registry


def choose_candidate(evaluations: list[dict]) -> dict | None:
    """The passing evaluation with the best test macro PR-AUC, or None when none passed."""
    passed = [ev for ev in evaluations if ev.get("gates_passed")]
    return max(passed, key=lambda ev: ev["test"]["macro_pr_auc"]) if passed else None


def deploy(registry: Registry, evaluations: list[dict], actor: str) -> dict:
    """Promote the chosen candidate (recording who and why) or leave the champion untouched."""
    before = registry.champion()
    best = choose_candidate(evaluations)
    if best is None:
        failed = "; ".join(f"{ev['version']}: " + ", ".join(n for n, g in ev.get("gates", {}).items() if not g["passed"])
                           for ev in evaluations)
        return {"promoted": None, "champion": before["version"] if before else None,
                "reason": f"no candidate passed its quality gates ({failed}); champion unchanged"}
    if before and before["version"] == best["version"]:
        return {"promoted": None, "champion": best["version"], "reason": "best candidate is already champion"}
    reason = (f"best candidate that passed every gate: test macro PR-AUC {best['test']['macro_pr_auc']:.3f}"
              + (f" vs champion {best['champion_test']['macro_pr_auc']:.3f} on the same rows"
                 if best.get("champion_test") else " (first champion)"))
    registry.promote(best["version"], reason=reason, actor=actor)
    return {"promoted": best["version"], "champion": best["version"], "reason": reason}
