"""The model card of a candidate pair: what it is for, what it learned from, how good it is where it never
trained, and where it is weakest. Built only from records the evaluation already made (`PairEvaluation`,
its classifier's `ClassifierEvaluation`) and the training set's label counts: no model is scored here.
"""

from __future__ import annotations

import math

import polars as pl

from ml.evaluation.gates import worst_slice
from ml.evaluation.results import PairEvaluation, SetMetrics
from ml.taxonomy import VIOLATING

INTENDED_USE = """\
- **For**: scoring platform content (posts, comments, video comments, direct messages) per policy
  ({policies}) with calibrated probabilities; the enforcement policy (ml/enforcement_policy.yaml) turns
  them into remove, review or allow. The content classifier alone answers requests that carry no platform
  context (`trustlake score`, the HTTP API without context).
- **Not for**: deciding on an account (it scores content); languages or platforms it was not evaluated on
  without a shadow period first; removals of policies whose operating point is unreachable (no threshold
  reached the precision target on validation, so they are only ever sent to review)."""


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or value != value else f"{value:.{digits}f}"


def _interval(low: float, high: float) -> str:
    return "" if not (math.isfinite(low) and math.isfinite(high)) else f" ({low:.3f}-{high:.3f})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def policy_table(metrics: SetMetrics, baseline: SetMetrics | None = None) -> str:
    """PR-AUC with its 95% interval, ROC-AUC and positives per violating policy (and the baseline's PR-AUC)."""
    header = ["policy", "positives", "PR-AUC (95% interval)", "ROC-AUC", "precision at auto-action"]
    if baseline is not None:
        header.insert(3, "baseline PR-AUC")
    rows = []
    for p in VIOLATING:
        m = metrics.policies.get(p)
        if m is None:
            continue
        row = [
            p,
            str(m.positives),
            _f(m.pr_auc) + _interval(m.pr_auc_ci_low, m.pr_auc_ci_high),
            _f(m.roc_auc),
            _f(m.precision_at_auto_action),
        ]
        if baseline is not None:
            row.insert(3, _f(baseline.pr_auc(p)))
        rows.append(row)
    return _table(header, rows)


def label_sources(training_set: pl.DataFrame) -> str:
    """Labels per source (platform label sources, and each reference corpus) and split."""
    counts = (
        training_set.with_columns(
            source=pl.when(pl.col("label_source") == "reference")
            .then(pl.lit("reference: ") + pl.col("source"))
            .otherwise(pl.col("label_source"))
        )
        .group_by("source")
        .agg(
            labels=pl.len(),
            violating=(pl.col("label") != "benign").sum(),
            **{s: (pl.col("split") == s).sum() for s in ("train", "validation", "test")},
        )
        .sort("source")
    )
    return _table(
        ["label source", "labels", "violating", "train", "validation", "test"],
        [[str(v) for v in row] for row in counts.iter_rows()],
    )


def weaknesses(pair: PairEvaluation) -> list[str]:
    """What a reviewer should know before trusting it: the weakest held-out source, slice and policy, and what
    was not measured."""
    clf = pair.classifier
    out = []
    if clf.held_out_sources:
        worst = min(clf.held_out_sources, key=lambda s: s.candidate.macro_pr_auc)
        out.append(
            f"Weakest held-out source: **{worst.source}**, macro PR-AUC {_f(worst.candidate.macro_pr_auc)} when "
            f"trained without it (baseline {_f(worst.baseline.macro_pr_auc)}; difference {worst.delta:+.3f}, "
            f"95% interval {worst.delta_ci_low:+.3f} to {worst.delta_ci_high:+.3f})"
            + (
                f"; unlearnable without it: {', '.join(worst.unlearnable_policies)}"
                if worst.unlearnable_policies
                else ""
            )
        )
    else:
        out.append("Leave-one-source-out was not measured: how it does on a platform it never saw is unknown.")
    measured = [(clf.text_only.pr_auc(p), p) for p in VIOLATING if math.isfinite(clf.text_only.pr_auc(p))]
    if measured:
        value, policy = min(measured)
        out.append(f"Weakest policy on text-only held-out: **{policy}**, PR-AUC {_f(value)}.")
    drop, where = worst_slice(pair.slices)
    if where != "none":
        out.append(
            f"Weakest slice: **{where}**, where the pair's macro ROC-AUC is {drop:.3f} below its content classifier "
            "alone's (platform context hurts there)."
        )
    unreachable = [p for p, op in pair.operating_points.items() if not op.reachable]
    if unreachable:
        out.append(
            f"No auto-action threshold reached the precision target for: {', '.join(unreachable)} (review only)."
        )
    if pair.qa_gold is None or pair.qa_gold.rows < 300:
        rows = pair.qa_gold.rows if pair.qa_gold else 0
        out.append(f"QA gold holds {rows} audited items of the test period: its figures are wide intervals.")
    if math.isfinite(pair.test.max_calibration_error):
        out.append(
            f"Worst policy calibration error on the simulated test split: {pair.test.max_calibration_error:.3f}."
        )
    return out


def model_card(pair: PairEvaluation, training_set: pl.DataFrame, code_version: str) -> str:
    """The model card of `pair` in Markdown."""
    clf = pair.classifier
    sections = [
        "## Model card",
        f"- **Model**: pair `{pair.version}` (risk model over the content classifier `{pair.content_classifier_version}`"
        f"'s scores, with behaviour, network and context features); code version `{code_version[:12]}`",
        f"- **Dataset version**: `{pair.dataset_version}` ({training_set.height:,} labels)",
        f"- **Gates**: {'all passed' if pair.gates_passed else 'FAILED: ' + ', '.join(pair.failed_gates)}",
        "",
        "### Intended use",
        INTENDED_USE.format(policies=", ".join(VIOLATING)),
        "",
        "### Training data and label sources",
        label_sources(training_set),
        "",
        "### Metrics",
        f"**Text-only held-out** ({clf.text_only.rows:,} texts of every source never trained on, scored without "
        f"context), the content classifier beside the TF-IDF baseline: macro PR-AUC {_f(clf.text_only.macro_pr_auc)} "
        f"vs {_f(clf.baseline_text_only.macro_pr_auc)}",
        "",
        policy_table(clf.text_only, clf.baseline_text_only),
        "",
    ]
    if clf.held_out_sources:
        sections += [
            "**Every held-out source** (leave-one-source-out: the recipe trained without the source, scored on it)",
            "",
            _table(
                ["held-out source", "classifier macro PR-AUC", "baseline", "difference (95% interval)", "unlearnable"],
                [
                    [
                        s.source,
                        _f(s.candidate.macro_pr_auc),
                        _f(s.baseline.macro_pr_auc),
                        f"{s.delta:+.3f} ({s.delta_ci_low:+.3f} to {s.delta_ci_high:+.3f})",
                        ", ".join(s.unlearnable_policies) or "none",
                    ]
                    for s in clf.held_out_sources
                ],
            ),
            "",
        ]
    if pair.qa_gold is not None:
        sections += [
            f"**QA gold** ({pair.qa_gold.rows} audited items of the test period, an unbiased sample): the pair",
            "",
            policy_table(pair.qa_gold),
            "",
        ]
    sections += [
        f"**Simulated test split** ({pair.test.rows:,} platform items): macro PR-AUC {_f(pair.test.macro_pr_auc)}, "
        f"its classifier alone {_f(pair.classifier_alone_test.macro_pr_auc)}"
        + (f", the champion {_f(pair.champion_test.macro_pr_auc)}" if pair.champion_test else ""),
        "",
        "**Slices** (100+ items): macro ROC-AUC of the pair beside its content classifier alone",
        "",
        _table(
            ["slice", "items", "macro PR-AUC", "macro ROC-AUC", "classifier alone ROC-AUC"],
            [
                [f"{col}={v}", str(m.rows), _f(m.macro_pr_auc), _f(m.macro_roc_auc), _f(m.classifier_macro_roc_auc)]
                for col, values in pair.slices.items()
                for v, m in values.items()
            ],
        ),
        "",
        "### Known weaknesses",
        *[f"- {w}" for w in weaknesses(pair)],
    ]
    return "\n".join(sections)
