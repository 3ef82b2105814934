"""Choosing and recording a promotion: the evaluated pair when every gate passed, or nothing."""

from __future__ import annotations

from ml.registry import Registry


def deploy(registry: Registry, pair: dict, other_classifiers: list[dict], actor: str) -> dict:
    """Promote the pair (recording who and why) or leave the champion untouched.

    `pair` is the risk model's evaluation (it embeds its content classifier's); `other_classifiers` are
    evaluations of competing content-classifier candidates, named in the reason when they ranked better
    on text-only held-out but could not be promoted.
    """
    before = registry.champion()
    text_only = pair["classifier"]["text_only"]["macro_pr_auc"]
    better = [ev for ev in other_classifiers if ev["text_only"]["macro_pr_auc"] > text_only]
    note = "".join(f"; {ev['version']} ranks better on text-only held-out ({ev['text_only']['macro_pr_auc']:.3f}) "
                   f"but failed {', '.join(n for n, g in ev['gates'].items() if not g['passed'])}" for ev in better)
    if not pair.get("gates_passed"):
        failed = ", ".join(n for n, g in pair.get("gates", {}).items() if not g["passed"])
        return {"promoted": None, "champion": before["version"] if before else None,
                "reason": f"{pair['version']} failed its gates ({failed}); champion unchanged{note}"}
    if before and before["version"] == pair["version"]:
        return {"promoted": None, "champion": pair["version"], "reason": "the pair is already champion"}
    reason = (f"every gate passed: text-only held-out macro PR-AUC {text_only:.3f} vs baseline "
              f"{pair['classifier']['baseline_text_only']['macro_pr_auc']:.3f}, simulated test macro PR-AUC "
              f"{pair['test']['macro_pr_auc']:.3f}"
              + (f" vs champion {pair['champion_test']['macro_pr_auc']:.3f} on the same rows"
                 if pair.get("champion_test") else " (first champion)") + note)
    registry.promote(pair["version"], reason=reason, actor=actor)
    return {"promoted": pair["version"], "champion": pair["version"], "reason": reason}
