"""Monitoring of the deployed champion: drift, live precision, prevalence, and when to retrain.

Every measure compares one day of scored content with something the champion is accountable to:
- drift: the day's score and feature distributions against the champion's reference, the content
  of the days it trained on scored once by the champion through the same code path as batch
  scoring (`Reference`), by the population stability index on bins fixed when the reference was
  built (`Bins`);
- live precision: of the content the enforcement policy removed on its own, the share that what
  happened later (moderator decisions, appeal outcomes, QA audits, resolved in `training_labels`)
  says did violate a policy, against the precision the champion's operating points promised;
- prevalence: the mean calibrated score and the share over the review threshold, per policy,
  against the QA estimate (audits are a uniform random sample, so their share is unbiased).

Each measure is a long table, one row per (metric, subject), with a status from
`MonitoringThresholds` (ok, warn, fail, or insufficient when there is too little evidence to say).
PSI binning, fixed when the reference is built: calibrated scores in ten equal bands of [0, 1] and
account age in day/week/month/quarter/year bands (FIXED_EDGES says why); any other numeric column
with more than PSI_BINS distinct reference values at the reference's deciles (interior cut points
only, ties merged, open-ended outer bins); every other column (flags, small counts, surface,
language) one bin per reference value and one more for values the reference never had. Shares are
floored at PSI_FLOOR before the log, so a bin empty on one side costs a large but finite amount.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime
from pathlib import Path

import numpy as np
import polars as pl

from ml.evaluation.results import OperatingPoint
from ml.lake import write_parquet_atomic, write_text_atomic
from ml.taxonomy import VIOLATING

PSI_BINS = 10
PSI_FLOOR = 1e-4
SCORE_COLUMNS: tuple[str, ...] = (*(f"p_{p}" for p in VIOLATING), "risk")
# The model inputs whose drift is watched: behaviour, network and text signals of platform content. Counts
# over an author's whole history (prior posts, reports, enforcements, and the enforced share of a ring) are
# not: they only grow as the platform's history does, so against any past window they drift by design.
NUMERIC_FEATURES: tuple[str, ...] = (
    "account_age_days",
    "follower_count",
    "posts_last_24h",
    "component_size",
    "text_chars",
    "text_words",
    "url_count",
    "phone_count",
    "mention_count",
    "hashtag_count",
    "upper_ratio",
    "digit_ratio",
    "exclaim_count",
    "emoji_count",
    "leetspeak_tokens",
    "has_link",
    "has_phone",
    "promo_words",
    "verified",
    "shares_fingerprints",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("surface", "language")
# Columns cut at fixed points rather than the reference's deciles. Calibrated scores: ten equal bands of
# [0, 1], so that a shift inside the bottom band, where most content and no decision lies, is no drift. Account
# age: the bands trust-and-safety teams read (day, week, month, quarter, year), so that accounts growing a
# week older is no drift but a wave of new accounts is.
FIXED_EDGES: dict[str, tuple[float, ...]] = {
    **{c: tuple(k / PSI_BINS for k in range(1, PSI_BINS)) for c in SCORE_COLUMNS},
    "account_age_days": (1.0, 7.0, 30.0, 90.0, 365.0),
}
# The binning rules' identity: a reference binned by other rules (older code) is binned again from its
# scored rows when it is next used, so a change of rules never compares a day with stale bins.
BINNING = hashlib.blake2b(
    repr(
        (PSI_BINS, PSI_FLOOR, SCORE_COLUMNS, NUMERIC_FEATURES, CATEGORICAL_FEATURES, sorted(FIXED_EDGES.items()))
    ).encode(),
    digest_size=6,
).hexdigest()
AUTO_ACTION = "remove"  # the enforcement policy's action taken without a person (ml/enforcement_policy.yaml)
FLAGGED = ("remove", "review")
OTHER = "<other>"
# Columns of every monitoring table (one row per day, metric and subject).
METRIC_SCHEMA = {
    "date": pl.Date,
    "metric": pl.String,
    "subject": pl.String,
    "value": pl.Float64,
    "expected": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "n": pl.Int64,
    "status": pl.String,
    "champion": pl.String,
}
STATUSES = ("ok", "warn", "fail", "insufficient")


@dataclass(frozen=True)
class MonitoringThresholds:
    """When a monitoring measure warns, fails, or has too little evidence; the one place for the defaults
    (orchestration/settings.py reads the TRUSTLAKE_* overrides, docs/operations.md lists them)."""

    psi_warn: float = 0.1  # PSI 0.1-0.25: a moderate shift worth a look (the usual reading of PSI)
    psi_fail: float = 0.25  # above 0.25: the population the model sees has changed
    # Promised minus live precision. Generous, because the live figure also counts moderators' own misses
    # (a violation a moderator let stand reads as a wrong removal): about 0.03-0.08 of it on this platform.
    precision_drop_warn: float = 0.15
    precision_drop_fail: float = 0.3
    # How far (predicted - QA-estimated prevalence) moved from the champion's own gap on its training window.
    prevalence_gap_warn: float = 0.05
    prevalence_gap_fail: float = 0.1
    retrain_min_new_labels: int = 2000  # about five days of labels at the default platform size
    min_rows: int = 200  # scored items a day needs before its PSI means anything
    min_labelled: int = 20  # labelled auto-actions before live precision is judged
    min_audited: int = 20  # QA audits before prevalence is judged

    def __post_init__(self) -> None:
        for name in ("psi", "precision_drop", "prevalence_gap"):
            warn, fail = getattr(self, f"{name}_warn"), getattr(self, f"{name}_fail")
            if not 0 < warn < fail:
                raise ValueError(f"{name} thresholds must satisfy 0 < warn < fail (got warn {warn}, fail {fail})")


# ---------------------------------------------------------------------------------------
# PSI on declared bins
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Bins:
    """How one column is binned for PSI, and the reference's share of rows in each bin."""

    column: str
    shares: tuple[float, ...]
    edges: tuple[float, ...] = ()  # numeric: interior cut points; bin i is [edges[i-1], edges[i])
    values: tuple[str, ...] = ()  # by value: the reference's values; one more bin for any other

    @property
    def by_value(self) -> bool:
        return not self.edges

    def counts(self, column: pl.Series) -> np.ndarray:
        """Rows of `column` in each bin (nulls and non-finite numbers are left out)."""
        if self.by_value:
            index = {v: i for i, v in enumerate(self.values)}
            at = _keys(column).replace_strict(index, default=len(self.values), return_dtype=pl.Int64).to_numpy()
            return np.bincount(at, minlength=len(self.values) + 1)
        x = _finite_floats(column)
        return np.bincount(np.searchsorted(np.array(self.edges), x, side="right"), minlength=len(self.edges) + 1)


def _is_number(column: pl.Series) -> bool:
    return column.dtype.is_numeric() or column.dtype == pl.Boolean


def _finite_floats(column: pl.Series) -> np.ndarray:
    x = column.drop_nulls().cast(pl.Float64).to_numpy()
    return x[np.isfinite(x)]


def _keys(column: pl.Series) -> pl.Series:
    """A column's values as bin keys: numbers (and flags) in one canonical spelling, text as is."""
    if _is_number(column):
        return pl.Series(_finite_floats(column)).cast(pl.String)
    return column.drop_nulls().cast(pl.String)


def fit_bins(name: str, column: pl.Series) -> Bins:
    """The reference's bins for `column` (see the module docstring for the rule)."""
    if name in FIXED_EDGES:
        edges = FIXED_EDGES[name]
        return Bins(name, _shares(Bins(name, (), edges=edges).counts(column)), edges=edges)
    if _is_number(column):
        x = _finite_floats(column)
        if len(np.unique(x)) > PSI_BINS:
            edges = tuple(float(e) for e in np.unique(np.quantile(x, np.arange(1, PSI_BINS) / PSI_BINS)))
            return Bins(name, _shares(Bins(name, (), edges=edges).counts(column)), edges=edges)
    values = tuple(sorted(_keys(column).unique().to_list()))
    return Bins(name, _shares(Bins(name, (), values=values).counts(column)), values=values)


def _shares(counts: np.ndarray) -> tuple[float, ...]:
    total = counts.sum()
    return tuple(float(c) for c in (counts / total if total else counts.astype(float)))


def psi(bins: Bins, column: pl.Series) -> float:
    """Population stability index of `column` against the reference shares of `bins`."""
    counts = bins.counts(column)
    if counts.sum() == 0:
        return 0.0
    actual = np.clip(counts / counts.sum(), PSI_FLOOR, None)
    expected = np.clip(np.array(bins.shares), PSI_FLOOR, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


# ---------------------------------------------------------------------------------------
# The champion's reference
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """What a day is compared with: the champion's training window, scored once, as bins."""

    champion: str
    dataset_version: str
    window_start: date
    window_end: date
    rows: int
    # The newest label the champion's training set holds, and how many platform labels it has:
    # labels stamped later are new evidence for the retraining sensor.
    labels_until: datetime | None
    label_rows: int
    bins: dict[str, Bins]
    # Per violating policy: the champion's operating thresholds and the precision its auto-action
    # threshold reached on validation (its promise).
    thresholds: dict[str, dict[str, float]]
    promised_precision: dict[str, float]
    # Per violating policy: mean calibrated score minus QA-estimated prevalence over the training window. A
    # champion calibrated on report-biased labels over- or under-states prevalence by a steady amount; the
    # daily check is held to that amount, not to zero. `qa_audited`: the QA audits behind it.
    prevalence_offset: dict[str, float]
    qa_audited: int
    binning: str = BINNING
    created_at: str = field(default="", compare=False)

    def to_json(self) -> str:
        data = asdict(self)
        data["window_start"], data["window_end"] = self.window_start.isoformat(), self.window_end.isoformat()
        data["labels_until"] = self.labels_until.isoformat() if self.labels_until else None
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Reference:
        data = json.loads(text)
        data["bins"] = {
            k: Bins(**{**b, "shares": tuple(b["shares"]), "edges": tuple(b["edges"]), "values": tuple(b["values"])})
            for k, b in data["bins"].items()
        }
        data["window_start"] = date.fromisoformat(data["window_start"])
        data["window_end"] = date.fromisoformat(data["window_end"])
        data["labels_until"] = datetime.fromisoformat(data["labels_until"]) if data["labels_until"] else None
        data.setdefault("binning", "")  # written before the rules had an identity: bin it again
        return cls(**data)


def reference_dir(monitoring_root: Path, champion: str, dataset_version: str) -> Path:
    """Where the reference of one champion trained on one dataset version lives; written once."""
    return Path(monitoring_root) / "reference" / f"{champion}--{dataset_version}"


REFERENCE_FILE = "reference.json"


def write_reference(reference: Reference, scored: pl.DataFrame, directory: Path) -> None:
    """The scored reference rows, then the reference itself: reference.json is written last, through a
    temporary file and a rename, so a directory that has it is complete."""
    directory = Path(directory)
    write_parquet_atomic(scored, directory / "scored.parquet")
    write_text_atomic(directory / REFERENCE_FILE, reference.to_json())


def reference_complete(directory: Path) -> bool:
    return (Path(directory) / REFERENCE_FILE).is_file()


def read_reference(directory: Path) -> Reference:
    return Reference.from_json((Path(directory) / REFERENCE_FILE).read_text())


def read_scored_reference(directory: Path) -> pl.DataFrame:
    return pl.read_parquet(Path(directory) / "scored.parquet")


def training_window(training_set: pl.DataFrame) -> tuple[date, date, datetime | None, int]:
    """The days of the platform content the champion trained on (train split), the newest label time of
    its training set and how many platform labels it holds."""
    platform = training_set.filter(pl.col("content_id").is_not_null())
    train = platform.filter(pl.col("split") == "train")
    if train.is_empty():
        raise ValueError(
            "the training set has no platform content in its train split: there is no "
            "training window to monitor against (land and label some days, then retrain)"
        )
    labels_until = platform["label_at"].max() if "label_at" in platform.columns else None
    return train["created_date"].min(), train["created_date"].max(), labels_until, platform.height


def with_risk(scores: pl.DataFrame) -> pl.DataFrame:
    return scores.with_columns(risk=pl.max_horizontal(*(f"p_{p}" for p in VIOLATING)))


def reference_bins(scored: pl.DataFrame) -> dict[str, Bins]:
    """The bins of every watched column `scored` (the reference rows) has, by the current rules."""
    frame = with_risk(scored)
    columns = [c for c in (*SCORE_COLUMNS, *NUMERIC_FEATURES, *CATEGORICAL_FEATURES) if c in frame.columns]
    return {c: fit_bins(c, frame[c]) for c in columns}


def rebinned(reference: Reference, scored: pl.DataFrame) -> Reference:
    """`reference` with its bins fitted again from its scored rows when the binning rules changed."""
    if reference.binning == BINNING:
        return reference
    return replace(reference, bins=reference_bins(scored), binning=BINNING)


def qa_labels(training_set: pl.DataFrame) -> pl.DataFrame:
    """content_id and gold label of the QA-audited platform content in a training set."""
    return training_set.filter(pl.col("label_source") == "qa_audit").select("content_id", "label")


def build_reference(
    champion: str,
    dataset_version: str,
    window: tuple[date, date, datetime | None, int],
    monitored: pl.DataFrame,
    operating_points: Mapping[str, OperatingPoint],
    audits: pl.DataFrame,
    created_at: str = "",
) -> Reference:
    """The reference from `monitored` (the window's content with its champion scores and features) and `audits`
    (content_id, label of QA-audited content; those of the window are used)."""
    start, end, labels_until, label_rows = window
    frame = with_risk(monitored)
    audited = frame.select("content_id").join(audits, on="content_id", how="inner")
    offset = {
        p: (float(frame[f"p_{p}"].mean()) - float((audited["label"] == p).mean())) if audited.height else 0.0
        for p in VIOLATING
    }
    return Reference(
        champion=champion,
        dataset_version=dataset_version,
        window_start=start,
        window_end=end,
        rows=frame.height,
        labels_until=labels_until,
        label_rows=label_rows,
        bins=reference_bins(frame),
        thresholds={
            p: {"auto_action": float(op.auto_action_threshold), "review": float(op.review_threshold)}
            for p, op in operating_points.items()
        },
        promised_precision={
            p: float(op.auto_action_precision)
            for p, op in operating_points.items()
            if op.reachable and _finite(op.auto_action_precision)
        },
        prevalence_offset=offset,
        qa_audited=audited.height,
        created_at=created_at,
    )


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


# ---------------------------------------------------------------------------------------
# One day's measures
# ---------------------------------------------------------------------------------------
def _rows(day: date, champion: str, rows: list[dict]) -> pl.DataFrame:
    full = [{**{k: None for k in METRIC_SCHEMA}, "date": day, "champion": champion, **r} for r in rows]
    return pl.DataFrame(full, schema=METRIC_SCHEMA)


def _level(value: float, warn: float, fail: float) -> str:
    return "fail" if value > fail else "warn" if value > warn else "ok"


def drift(reference: Reference, day: date, monitored: pl.DataFrame, limits: MonitoringThresholds) -> pl.DataFrame:
    """PSI of every score and feature column of one day's content against the reference."""
    frame = with_risk(monitored)
    rows = []
    for column, bins in reference.bins.items():
        if column not in frame.columns:
            continue
        value = psi(bins, frame[column])
        status = "insufficient" if frame.height < limits.min_rows else _level(value, limits.psi_warn, limits.psi_fail)
        rows.append(
            {
                "metric": "score_psi" if column in SCORE_COLUMNS else "feature_psi",
                "subject": column,
                "value": value,
                "n": frame.height,
                "status": status,
            }
        )
    return _rows(day, reference.champion, rows)


def wilson(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (the interval mart_prevalence_daily uses)."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / (1 + z * z / n)), min(1.0, (centre + half) / (1 + z * z / n))


def top_policy(scores: pl.DataFrame) -> pl.Expr:
    """The violating policy with the highest score (ties go to the first in VIOLATING)."""
    columns = [f"p_{p}" for p in VIOLATING]
    best = pl.max_horizontal(*columns)
    expr = pl.lit(VIOLATING[-1])
    for p in reversed(VIOLATING[:-1]):
        expr = pl.when(pl.col(f"p_{p}") == best).then(pl.lit(p)).otherwise(expr)
    return expr


def live_precision(
    reference: Reference, day: date, scores: pl.DataFrame, labels: pl.DataFrame, limits: MonitoringThresholds
) -> pl.DataFrame:
    """Precision of the day's auto-actions by what happened to them later, and QA recall.

    `scores`: the day's content_scores rows; `labels`: training_labels rows of platform content
    (content_id, label, label_source). An auto-action is right when the resolved label is a violating
    policy (any: the removal was justified), and right for its policy when the label is the policy it
    scored highest. The promise is the mean validation precision of the auto-actioned items' policies.
    """
    auto = scores.filter(pl.col("action") == AUTO_ACTION).with_columns(top_policy=top_policy(scores))
    judged = auto.join(labels.select("content_id", "label", "label_source"), on="content_id", how="inner")
    right = judged.filter(pl.col("label") != "benign")
    promised = [reference.promised_precision.get(p) for p in judged["top_policy"].to_list()]
    promised = [p for p in promised if p is not None]
    expected = float(np.mean(promised)) if promised else None
    n, k = judged.height, right.height
    low, high = wilson(k, n)
    value = k / n if n else None
    if n < limits.min_labelled or expected is None:
        status = "insufficient"
    elif high >= expected:  # the promise lies inside the interval: no evidence of a drop
        status = "ok"
    else:
        status = _level(expected - value, limits.precision_drop_warn, limits.precision_drop_fail)
    rows = [
        {
            "metric": "live_precision",
            "subject": "all",
            "value": value,
            "expected": expected,
            "ci_low": _nan_none(low),
            "ci_high": _nan_none(high),
            "n": n,
            "status": status,
        },
        {"metric": "auto_actions", "subject": "all", "value": float(auto.height), "n": auto.height},
        {
            "metric": "auto_actions_labelled_share",
            "subject": "all",
            "value": n / auto.height if auto.height else None,
            "n": auto.height,
        },
    ]
    qa_judged = judged.filter(pl.col("label_source") == "qa_audit")
    if qa_judged.height:
        lo, hi = wilson(int((qa_judged["label"] != "benign").sum()), qa_judged.height)
        rows.append(
            {
                "metric": "live_precision_qa",
                "subject": "all",
                "value": float((qa_judged["label"] != "benign").mean()),
                "expected": expected,
                "ci_low": lo,
                "ci_high": hi,
                "n": qa_judged.height,
            }
        )
    for policy in VIOLATING:
        mine = judged.filter(pl.col("top_policy") == policy)
        if mine.height:
            hits = int((mine["label"] == policy).sum())
            lo, hi = wilson(hits, mine.height)
            rows.append(
                {
                    "metric": "live_precision",
                    "subject": policy,
                    "value": hits / mine.height,
                    "expected": reference.promised_precision.get(policy),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": mine.height,
                }
            )
    audited = scores.join(
        labels.filter(pl.col("label_source") == "qa_audit").select("content_id", "label"), on="content_id", how="inner"
    )
    for policy in VIOLATING:
        positives = audited.filter(pl.col("label") == policy)
        if positives.height:
            hits = int(positives["action"].is_in(FLAGGED).sum())
            lo, hi = wilson(hits, positives.height)
            rows.append(
                {
                    "metric": "qa_recall",
                    "subject": policy,
                    "value": hits / positives.height,
                    "ci_low": lo,
                    "ci_high": hi,
                    "n": positives.height,
                }
            )
    return _rows(day, reference.champion, rows)


def _nan_none(x: float) -> float | None:
    return None if x != x else x


def prevalence(
    reference: Reference, day: date, scores: pl.DataFrame, qa_labels: pl.DataFrame, limits: MonitoringThresholds
) -> pl.DataFrame:
    """Predicted prevalence per policy (mean calibrated score; share over the review threshold) against the
    QA estimate of the same day's content. `qa_labels`: content_id and gold label of QA-audited content.

    The gap row holds predicted minus QA prevalence, `expected` the champion's gap on its training window;
    it is judged on how far it moved from that, and only when the offset-corrected prediction lies outside
    the QA estimate's 95% interval (a day's audit sample is small)."""
    audited = scores.select("content_id").join(qa_labels.select("content_id", "label"), on="content_id")
    n = audited.height
    rows = []
    for policy in VIOLATING:
        column = f"p_{policy}"
        predicted = float(scores[column].mean()) if scores.height else None
        review = reference.thresholds.get(policy, {}).get("review")
        over = float((scores[column] >= review).mean()) if scores.height and review is not None else None
        hits = int((audited["label"] == policy).sum())
        qa = hits / n if n else None
        low, high = wilson(hits, n)
        offset = reference.prevalence_offset.get(policy, 0.0)
        rows += [
            {"metric": "predicted_prevalence", "subject": policy, "value": predicted, "n": scores.height},
            {"metric": "share_over_review_threshold", "subject": policy, "value": over, "n": scores.height},
            {
                "metric": "qa_prevalence",
                "subject": policy,
                "value": qa,
                "ci_low": _nan_none(low),
                "ci_high": _nan_none(high),
                "n": n,
            },
        ]
        if predicted is None or qa is None or n < limits.min_audited:
            status = "insufficient"
        elif low <= predicted - offset <= high:  # inside the QA interval: the move may be sampling noise
            status = "ok"
        else:
            status = _level(abs(predicted - qa - offset), limits.prevalence_gap_warn, limits.prevalence_gap_fail)
        rows.append(
            {
                "metric": "prevalence_gap",
                "subject": policy,
                "value": None if predicted is None or qa is None else predicted - qa,
                "expected": offset,
                "ci_low": None if predicted is None or n == 0 else predicted - high,
                "ci_high": None if predicted is None or n == 0 else predicted - low,
                "n": n,
                "status": status,
            }
        )
    return _rows(day, reference.champion, rows)


# ---------------------------------------------------------------------------------------
# Judging a run's days: what the asset checks report
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """The worst judged row of a measure over a run's days."""

    level: str  # ok | warn | fail | insufficient
    message: str
    worst: dict | None

    @property
    def passed(self) -> bool:
        return self.level in ("ok", "insufficient")


_RANK = {"insufficient": 0, "ok": 1, "warn": 2, "fail": 3}


def verdict(frame: pl.DataFrame, metrics: tuple[str, ...], describe) -> Verdict:
    """The worst status among rows of `metrics` (ties: the largest |value|), described by `describe(row)`."""
    judged = frame.filter(pl.col("metric").is_in(metrics) & pl.col("status").is_not_null())
    if judged.is_empty():
        return Verdict("insufficient", "nothing to judge: no scored content in these days", None)
    ranked = judged.with_columns(
        _rank=pl.col("status").replace_strict(_RANK, return_dtype=pl.Int8), _size=pl.col("value").abs().fill_null(0.0)
    )
    worst = ranked.sort(["_rank", "_size"], descending=True).drop("_rank", "_size").row(0, named=True)
    counts = dict(judged.group_by("status").len().iter_rows())
    tally = ", ".join(f"{counts[s]} {s}" for s in STATUSES if s in counts)
    return Verdict(worst["status"], f"{describe(worst)} ({tally} over {judged['date'].n_unique()} day(s))", worst)


def worst_psi(frame: pl.DataFrame) -> dict | None:
    """The largest judged PSI row of a drift table (score or feature), or None."""
    judged = frame.filter(pl.col("metric").is_in(("score_psi", "feature_psi")) & (pl.col("status") != "insufficient"))
    return judged.sort("value", descending=True).row(0, named=True) if judged.height else None


# ---------------------------------------------------------------------------------------
# Retraining evidence
# ---------------------------------------------------------------------------------------
def new_labels_since(labels: pl.DataFrame, labels_until: datetime | None) -> dict[str, int]:
    """Platform labels (moderator decisions, appeal outcomes, QA audits) stamped after `labels_until`,
    by label source. `labels`: training_labels rows with label_source and label_at."""
    platform = labels.filter(pl.col("label_source") != "reference")
    if labels_until is not None:
        platform = platform.filter(pl.col("label_at") > labels_until)
    return dict(sorted(platform.group_by("label_source").len().iter_rows()))


@dataclass(frozen=True)
class RetrainRequest:
    """Why the retraining job should run, and a key that names the evidence (the same evidence, the same key)."""

    reason: str  # drift | new_labels
    run_key: str
    tags: dict[str, str]


def retrain_request(
    champion: str,
    dataset_version: str,
    new_labels: dict[str, int],
    min_new_labels: int,
    drifted: dict | None,
    psi_limit: float,
) -> RetrainRequest | None:
    """Retrain on drift past `psi_limit` (the PSI fail threshold) in a day scored by this champion, else on
    `min_new_labels` new labels. One drift request per champion; one label request per champion and
    each further `min_new_labels` labels, so a retraining that keeps the champion is not asked for again
    until there is more evidence."""
    total = sum(new_labels.values())
    common = {
        "trustlake/champion": champion,
        "trustlake/champion_dataset_version": dataset_version,
        "trustlake/new_labels": str(total),
        "trustlake/new_labels_threshold": str(min_new_labels),
    }
    if drifted is not None and drifted["value"] > psi_limit:
        return RetrainRequest(
            "drift",
            f"drift:{champion}",
            {
                **common,
                "trustlake/retrain_reason": "drift",
                "trustlake/drift_psi": f"{drifted['value']:.3f}",
                "trustlake/drift_metric": f"{drifted['metric']}:{drifted['subject']}",
                "trustlake/drift_day": str(drifted["date"]),
                "trustlake/drift_psi_threshold": f"{psi_limit:g}",
            },
        )
    if total >= min_new_labels:
        return RetrainRequest(
            "new_labels",
            f"new_labels:{champion}:{total // min_new_labels}",
            {
                **common,
                "trustlake/retrain_reason": "new_labels",
                **{f"trustlake/new_labels/{source}": str(n) for source, n in new_labels.items()},
            },
        )
    return None


# ---------------------------------------------------------------------------------------
# Operational alerts: an append-only Parquet log, one file per failed run
# ---------------------------------------------------------------------------------------
OPS_ALERT_SCHEMA = {
    "alert_id": pl.String,
    "run_id": pl.String,
    "job_name": pl.String,
    "failed_steps": pl.String,
    "failed_assets": pl.String,
    "error": pl.String,
    "failed_at": pl.Datetime("us"),
    "partition_range": pl.String,
}
ERROR_LINES = 5


def first_lines(text: str | None, lines: int = ERROR_LINES, width: int = 2000) -> str:
    """The first non-empty lines of an error message, at most `width` characters."""
    kept = [line.rstrip() for line in (text or "").splitlines() if line.strip()][:lines]
    return "\n".join(kept)[:width]


def write_ops_alert(
    ops_dir: Path,
    run_id: str,
    job_name: str,
    failed_steps: list[str],
    failed_assets: list[str],
    error: str,
    failed_at: datetime,
    partition_range: str | None = None,
) -> Path:
    """Record one failed run as `<ops_dir>/ops_alerts/run-<run_id>.parquet`, written atomically.

    The file is named by the run, so recording the same failure twice (a sensor tick retried after a
    crash) rewrites the same row instead of adding a second one.
    """
    row = {
        "alert_id": f"run-{run_id}",
        "run_id": run_id,
        "job_name": job_name,
        "failed_steps": ", ".join(failed_steps),
        "failed_assets": ", ".join(failed_assets),
        "error": first_lines(error),
        "failed_at": failed_at.replace(tzinfo=None),
        "partition_range": partition_range,
    }
    target = Path(ops_dir) / "ops_alerts" / f"run-{run_id}.parquet"
    return write_parquet_atomic(pl.DataFrame([row], schema=OPS_ALERT_SCHEMA), target)


def read_ops_alerts(ops_dir: Path) -> pl.DataFrame:
    files = sorted((Path(ops_dir) / "ops_alerts").glob("run-*.parquet"))
    if not files:
        return pl.DataFrame(schema=OPS_ALERT_SCHEMA)
    return pl.read_parquet(files).sort("failed_at")
