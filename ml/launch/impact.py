"""What a launch would change: the champion's and the candidate's actions on the same content, summed
into daily volumes per policy and surface, and the risk tier the launch bounds give them.

Both sources of evidence are the same frame of paired actions (`PAIRED_SCHEMA`): the backtest scores the
last days of platform content with both models through the batch-scoring code path (`backtest`); a shadow
deployment scores each new day with both (assets/scoring.py `shadow_scores`). Volumes are means per day,
so a backtest of seven days and a shadow of three read alike. An item counts under the policy the
candidate acts on it for (`paired_actions`). Expected wrongful removals are removals times one minus the
precision the model's auto-removals had on QA gold in its evaluation (None where QA gold could not
measure it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from ml.evaluation.results import PairEvaluation
from ml.launch.bounds import LaunchBounds
from ml.monitoring.precision import top_policy
from ml.taxonomy import VIOLATING

ACTING = ("remove", "review")  # the enforcement policy's actions that do something (allow does not)
SEVERITY = {"allow": 0, "review": 1, "remove": 2}
PAIRED_SCHEMA = {
    "content_id": pl.Int64,
    "day": pl.Date,
    "surface": pl.String,
    "policy": pl.String,
    "champion_action": pl.String,  # null: no champion (a first launch)
    "candidate_action": pl.String,
}


@dataclass(frozen=True)
class VolumeRow:
    """One policy on one surface: items and actions per day by each model, flips, expected wrongful removals."""

    policy: str
    surface: str
    items: float
    champion_remove: float
    champion_review: float
    candidate_remove: float
    candidate_review: float
    harsher: float  # items the candidate treats more severely (allow -> review -> remove)
    softer: float
    champion_wrongful_removals: float | None
    candidate_wrongful_removals: float | None


@dataclass(frozen=True)
class LaunchImpact:
    """The launch impact of `candidate` against `champion` (None: a first launch) over `days` days of content
    from `source` (backtest or shadow): daily volumes per policy and surface, and the risk tier."""

    candidate: str
    champion: str | None
    source: str
    first_day: str
    last_day: str
    days: int
    rows: tuple[VolumeRow, ...]
    review_seconds: float
    risk_tier: str
    reasons: tuple[str, ...]

    def by_policy(self) -> pl.DataFrame:
        """Daily volumes per policy (surfaces summed), with review hours and deltas."""
        frame = pl.DataFrame(list(map(_row_dict, self.rows)), schema=ROW_SCHEMA)
        sums = [pl.col(c).sum() for c in ROW_SCHEMA if c not in ("policy", "surface") and "wrongful" not in c]
        # Unknown (None) when QA gold measured no precision for the policy, not a sum of nothing that reads as 0.
        wrongful = [
            pl.when(pl.col(c).is_not_null().any()).then(pl.col(c).sum()).alias(c) for c in ROW_SCHEMA if "wrongful" in c
        ]
        hours = self.review_seconds / 3600
        return (
            frame.group_by("policy")
            .agg(*sums, *wrongful)
            .with_columns(
                remove_delta=pl.col("candidate_remove") - pl.col("champion_remove"),
                review_delta=pl.col("candidate_review") - pl.col("champion_review"),
                champion_review_hours=pl.col("champion_review") * hours,
                candidate_review_hours=pl.col("candidate_review") * hours,
            )
            .sort(pl.col("policy").replace_strict({p: i for i, p in enumerate(VIOLATING)}, return_dtype=pl.Int8))
        )

    def predicted(self) -> dict[tuple[str, str], float]:
        """(action, policy) -> the candidate's items per day, and (action, "all") for every policy: what the
        post-launch check holds the launched model to."""
        out: dict[tuple[str, str], float] = {}
        for row in self.rows:
            for action, value in (("remove", row.candidate_remove), ("review", row.candidate_review)):
                for subject in (row.policy, "all"):
                    out[(action, subject)] = out.get((action, subject), 0.0) + value
        return out


ROW_SCHEMA = {
    "policy": pl.String,
    "surface": pl.String,
    "items": pl.Float64,
    "champion_remove": pl.Float64,
    "champion_review": pl.Float64,
    "candidate_remove": pl.Float64,
    "candidate_review": pl.Float64,
    "harsher": pl.Float64,
    "softer": pl.Float64,
    "champion_wrongful_removals": pl.Float64,
    "candidate_wrongful_removals": pl.Float64,
}


def _row_dict(row: VolumeRow) -> dict:
    return {name: getattr(row, name) for name in ROW_SCHEMA}


def removal_precision(evaluation: PairEvaluation | None) -> dict[str, float | None]:
    """Per policy, the precision of a pair's auto-removals on QA gold, as its evaluation measured it; None where
    QA gold held too few to measure (no QA set, or no auto-action among its items)."""
    gold = evaluation.qa_gold if evaluation is not None else None
    out: dict[str, float | None] = {}
    for p in VIOLATING:
        value = gold.policies[p].precision_at_auto_action if gold is not None and p in gold.policies else math.nan
        out[p] = None if value != value else float(value)
    return out


def paired_actions(items: pl.DataFrame, candidate: pl.DataFrame, champion: pl.DataFrame | None = None) -> pl.DataFrame:
    """`items` (content_id, created_at, surface) with each model's action beside it (`PAIRED_SCHEMA`).

    `candidate` and `champion` are score_frame outputs for the same rows in the same order (p_<policy> and
    action). An item counts under the policy the candidate acts on it for (its most likely violation), else
    the one the champion acts on it for, else the candidate's most likely violation: so the candidate's
    volumes per policy are its own, the ones the post-launch check later holds it to.
    """
    policies = {"candidate": candidate.select(top_policy(candidate)).to_series()}
    policies["champion"] = champion.select(top_policy(champion)).to_series() if champion is not None else None
    frame = pl.DataFrame(
        {
            "content_id": items["content_id"],
            "day": items["created_at"].dt.date(),
            "surface": items["surface"],
            "candidate_policy": policies["candidate"],
            "champion_policy": policies["champion"] if champion is not None else policies["candidate"],
            "champion_action": champion["action"] if champion is not None else pl.Series([None] * items.height),
            "candidate_action": candidate["action"],
        },
        schema_overrides={"champion_action": pl.String},
    )
    policy = (
        pl.when(pl.col("candidate_action").is_in(ACTING))
        .then("candidate_policy")
        .when(pl.col("champion_action").is_in(ACTING))
        .then("champion_policy")
        .otherwise("candidate_policy")
    )
    return frame.with_columns(policy=policy).select(list(PAIRED_SCHEMA)).cast(PAIRED_SCHEMA)


def launch_impact(
    paired: pl.DataFrame,
    bounds: LaunchBounds,
    candidate: str,
    champion: str | None,
    source: str,
    precision: dict[str, dict[str, float | None]],
) -> LaunchImpact:
    """The impact `paired` (PAIRED_SCHEMA) shows, judged by `bounds`. `precision`: removal precision on QA gold
    per policy of the "champion" and of the "candidate" (`removal_precision`)."""
    if paired.is_empty():
        raise ValueError(f"no content to judge the launch of {candidate} by: the {source} holds no scored item")
    days = paired["day"].n_unique()
    severity = {a: pl.col(f"{a}_action").replace_strict(SEVERITY, default=None) for a in ("champion", "candidate")}
    counts = (
        paired.group_by("policy", "surface")
        .agg(
            items=pl.len(),
            **{
                f"{model}_{action}": (pl.col(f"{model}_action") == action).sum()
                for model in ("champion", "candidate")
                for action in ACTING
            },
            harsher=(severity["candidate"] > severity["champion"]).sum(),
            softer=(severity["candidate"] < severity["champion"]).sum(),
        )
        .sort("policy", "surface")
    )
    rows = []
    for r in counts.iter_rows(named=True):
        per_day = {k: v / days for k, v in r.items() if k not in ("policy", "surface")}
        rows.append(
            VolumeRow(
                policy=r["policy"],
                surface=r["surface"],
                **per_day,
                champion_wrongful_removals=_wrongful(per_day["champion_remove"], precision["champion"][r["policy"]]),
                candidate_wrongful_removals=_wrongful(per_day["candidate_remove"], precision["candidate"][r["policy"]]),
            )
        )
    first, last = paired["day"].min(), paired["day"].max()
    impact = LaunchImpact(
        candidate,
        champion,
        source,
        first.isoformat(),
        last.isoformat(),
        days,
        tuple(rows),
        bounds.review_seconds,
        risk_tier="first",
        reasons=(),
    )
    if champion is None:
        return impact
    reasons = risk_reasons(impact.by_policy(), bounds)
    return replace(impact, risk_tier="high" if reasons else "low", reasons=reasons)


def _wrongful(removals: float, precision: float | None) -> float | None:
    return None if precision is None else removals * (1 - precision)


def risk_reasons(by_policy: pl.DataFrame, bounds: LaunchBounds) -> tuple[str, ...]:
    """Each policy whose daily auto-removals or reviews move beyond their bound (relative to the champion's,
    either way, and by at least `min_daily_change` items a day), said in words."""
    out = []
    for r in by_policy.iter_rows(named=True):
        for action, bound, what in (
            ("remove", bounds.max_removal_change, "auto-removals"),
            ("review", bounds.max_review_change, "reviews"),
        ):
            before, after = r[f"champion_{action}"], r[f"candidate_{action}"]
            change = after - before
            if abs(change) < bounds.min_daily_change or abs(change) <= bound * before:
                continue
            relative = f"{change / before:+.0%}" if before else "from none"
            out.append(
                f"{r['policy']} {what} {before:.1f} -> {after:.1f} a day ({relative}), beyond the ±{bound:.0%} bound"
            )
    return tuple(out)


def backtest_window(content_days: list[date], days: int) -> tuple[date, date]:
    """The last `days` days that have platform content (fewer when the platform is younger)."""
    if not content_days:
        raise ValueError("the platform has no content yet: land some days before judging a launch")
    last = max(content_days)
    return max(min(content_days), last - timedelta(days=days - 1)), last


def backtest(
    raw: dict[str, pl.DataFrame],
    window: tuple[date, date],
    candidate,
    champion=None,
    bank_matches: pl.DataFrame | None = None,
    campaign_members: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Paired actions of `candidate` and `champion` (ml.scoring.Champion; None: a first launch) on the platform
    content created in `window`, scored through the batch-scoring code path with features built point in
    time, once for both. `raw`: the raw tables content, users, reports, decisions and appeals (whole), and
    the text read in images (IMAGE_TEXT) when there are image posts. `bank_matches`: the window's hash-bank
    matches, which the enforcement policy's `bank_match` rule acts on for either model, as batch scoring does;
    `campaign_members`: the campaigns asset's members, which its campaign rule reads (ml/campaigns/context.py)."""
    from ml.campaigns.context import with_campaign_context
    from ml.campaigns.features import confirmed_removals
    from ml.campaigns.links import SIGNATURES
    from ml.features.build import scoring_frame
    from ml.features.images import IMAGE_TEXT
    from ml.matching.bank_matches import with_bank_matches
    from ml.scoring import NgramCache, score_frame

    content = raw["content"].filter(pl.col("created_at").dt.date().is_between(*window))
    # Features look back over all of raw["content"], image posts read as scoring reads them: the actions the
    # backtest predicts are the ones batch scoring will take on the same items.
    frame = scoring_frame(
        content,
        raw["users"],
        raw["reports"],
        raw["decisions"],
        raw["appeals"],
        raw.get(IMAGE_TEXT),
        raw["content"],
        raw.get(SIGNATURES),
    )
    if bank_matches is not None:
        frame = with_bank_matches(frame, bank_matches)
    if campaign_members is not None:
        removals = confirmed_removals(raw["decisions"], raw["appeals"])
        frame = with_campaign_context(frame, campaign_members, removals)
    cache = NgramCache()  # the text's n-grams are the same for both models: built once
    scored = score_frame(candidate, frame, cache=cache)
    incumbent = score_frame(champion, frame, cache=cache) if champion is not None else None
    return paired_actions(frame.select("content_id", "created_at", "surface"), scored, incumbent)


def evidence_path(version: str) -> str:
    """Where `version`'s launch impact is kept, relative to the models directory: the evidence an automatic
    deployment decision rests on (the registry and the audit log cite it); the launch report sits beside it."""
    return f"{version}/launch/impact.json"


def write_impact(models_dir: Path, impact: LaunchImpact) -> Path:
    from ml.evaluation.results import as_json
    from ml.lake import write_text_atomic

    target = Path(models_dir) / evidence_path(impact.candidate)
    target.parent.mkdir(parents=True, exist_ok=True)  # the model's launch/ folder: made by its first judgement
    return write_text_atomic(target, json.dumps(as_json(impact), indent=2))


def read_impact(models_dir: Path, version: str) -> LaunchImpact | None:
    """The launch impact `version` was judged by, or None when it never was (promoted by hand, or registered before
    launch impacts existed)."""
    from ml.evaluation.results import from_json

    path = Path(models_dir) / evidence_path(version)
    return from_json(LaunchImpact, json.loads(path.read_text())) if path.exists() else None
