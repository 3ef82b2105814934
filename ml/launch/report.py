"""The launch report a reviewer reads before a launch acts: the model card, the launch impact (the backtest,
and the candidate's shadow data when it has some), the risk tier with the bounds that gave it, and where
the decision stands. Rendered as Markdown (what the Dagster UI shows, and the file under the model's
directory), with a plot of the daily volumes per policy of the champion and the candidate.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from ml.launch.bounds import LaunchBounds  # noqa: E402
from ml.launch.impact import LaunchImpact  # noqa: E402


def _f(value, digits: int = 1) -> str:
    return "n/a" if value is None or value != value else f"{value:,.{digits}f}"


def _delta(value) -> str:
    return "n/a" if value is None or value != value else f"{value:+,.1f}"


def impact_section(impact: LaunchImpact, title: str) -> str:
    """Daily volumes per policy (and per policy and surface) of the champion and the candidate, in Markdown."""
    champion = impact.champion or "none (first launch)"
    lines = [
        f"### {title}",
        f"{impact.days} day(s) of platform content, {impact.first_day} .. {impact.last_day}; champion `{champion}`, "
        f"candidate `{impact.candidate}`. Items per day; review hours at {impact.review_seconds:g} s a review; "
        "expected wrongful removals = removals x (1 - the model's precision of auto-removals on QA gold).",
        "",
        "| policy | removals: champion | candidate | change | reviews: champion | candidate | change "
        "| review hours: champion | candidate | flips harsher | flips softer | expected wrongful removals: champion "
        "| candidate |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_policy = impact.by_policy()
    for r in by_policy.iter_rows(named=True):
        lines.append(
            f"| {r['policy']} | {_f(r['champion_remove'])} | {_f(r['candidate_remove'])} | {_delta(r['remove_delta'])} "
            f"| {_f(r['champion_review'])} | {_f(r['candidate_review'])} | {_delta(r['review_delta'])} "
            f"| {_f(r['champion_review_hours'], 2)} | {_f(r['candidate_review_hours'], 2)} | {_f(r['harsher'])} "
            f"| {_f(r['softer'])} | {_f(r['champion_wrongful_removals'], 2)} | {_f(r['candidate_wrongful_removals'], 2)} |"
        )
    totals = by_policy.select(pl.exclude("policy").sum())
    t = totals.row(0, named=True)
    lines.append(
        f"| **all** | {_f(t['champion_remove'])} | {_f(t['candidate_remove'])} | {_delta(t['remove_delta'])} "
        f"| {_f(t['champion_review'])} | {_f(t['candidate_review'])} | {_delta(t['review_delta'])} "
        f"| {_f(t['champion_review_hours'], 2)} | {_f(t['candidate_review_hours'], 2)} | {_f(t['harsher'])} "
        f"| {_f(t['softer'])} | | |"
    )
    lines += [
        "",
        "Per surface (removals and reviews a day, champion -> candidate):",
        "",
        "| policy | surface | items | removals | reviews |",
        "|---|---|---|---|---|",
    ]
    for row in impact.rows:
        lines.append(
            f"| {row.policy} | {row.surface} | {_f(row.items)} | {_f(row.champion_remove)} -> "
            f"{_f(row.candidate_remove)} | {_f(row.champion_review)} -> {_f(row.candidate_review)} |"
        )
    return "\n".join(lines)


def risk_section(impact: LaunchImpact, bounds: LaunchBounds) -> str:
    said = {
        "first": "**first launch**: there is no champion, so nothing the platform relies on changes; the candidate's "
        "own volumes become the prediction the post-launch check holds it to.",
        "low": "**low**: every policy's auto-removals and reviews stay within the launch bounds.",
        "high": "**high**: the launch waits for a person's approval and runs as the shadow meanwhile:",
    }[impact.risk_tier]
    lines = [f"### Risk tier ({impact.source})", said, *[f"- {r}" for r in impact.reasons]]
    lines.append(
        f"\nBounds in force: a policy's daily auto-removals may move {bounds.max_removal_change:.0%} and its reviews "
        f"{bounds.max_review_change:.0%} either way, unless by fewer than {bounds.min_daily_change:g} items a day "
        "(TRUSTLAKE_LAUNCH_* variables)."
    )
    return "\n".join(lines)


def impact_plot(impacts: list[LaunchImpact], path: Path) -> Path:
    """Bars of removals and reviews a day per policy: the champion, then the candidate from each impact."""
    first = impacts[0].by_policy()
    policies = first["policy"].to_list()
    x = np.arange(len(policies))
    series = [("champion", first)] + [(f"candidate ({i.source})", i.by_policy()) for i in impacts]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    width = 0.8 / len(series)
    for ax, action in zip(axes, ("remove", "review")):
        for k, (name, frame) in enumerate(series):
            who = "champion" if name == "champion" else "candidate"
            values = dict(zip(frame["policy"], frame[f"{who}_{action}"]))
            ax.bar(x + k * width, [values.get(p, 0.0) for p in policies], width, label=name)
        ax.set_xticks(x + width * (len(series) - 1) / 2, policies)
        ax.set_title(f"{'auto-removals' if action == 'remove' else 'reviews'} a day")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"launch impact of {impacts[0].candidate}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def render(
    candidate: str,
    card: str,
    backtest: LaunchImpact,
    shadow: LaunchImpact | None,
    decision: str,
    bounds: LaunchBounds,
    plot: str,
) -> str:
    """The whole report in Markdown; `plot` is the Markdown of the impact plot (an image)."""
    sections = [
        f"# Launch report: {candidate}",
        f"**Decision**: {decision}",
        "",
        "## Launch impact",
        "Measured on live traffic by its shadow (the champion acted; the candidate did not):" if shadow else "",
        impact_section(shadow, "Shadow data") if shadow else "",
        "" if shadow else "No shadow data yet: the backtest below is the evidence.",
        impact_section(backtest, f"Backtest of the last {backtest.days} day(s)"),
        "",
        plot,
        "",
        risk_section(backtest, bounds),
        "",
        risk_section(shadow, bounds) if shadow else "",
        "",
        card,
    ]
    return "\n".join(s for s in sections if s is not None) + "\n"
