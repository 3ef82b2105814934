"""Monitoring of the deployed champion (group `monitoring`): its reference, and each day's drift, live
precision and prevalence against it, with asset checks that warn past one threshold and fail past a larger
one (MonitoringResource), the analysts' mart of all of it, and each day's volumes against what the
champion's launch predicted (`launch_volumes`, whose failure fails the run: an ops alert). `monitoring_assets` makes them over the
platform's days with their checks described by the thresholds in force: orchestration/definitions.py
passes both in from the settings.

The reference is a declared input: `monitoring_reference` is built from `deployed_model` (which champion)
and `training_set` (the rows that champion trained on), so the lineage says what every day is compared
with, and the same inputs give the same reference. Each daily asset writes one Parquet file per day under
`<home>/lake/monitoring/<asset>/date=D/` and describes each day in that day's own metadata.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import dagster as dg
import polars as pl
from dagster_dbt import DbtCliResource, dbt_assets

from assets.campaigns import CAMPAIGN_MEMBERS
from assets.images import IMAGE_TEXT
from assets.metadata import markdown_table, partition_days
from assets.resources import LakehouseResource, LaunchResource, MonitoringResource
from assets.scoring import RAW_INPUTS, raw_inputs, scored_frame, with_enforcement_context
from assets.warehouse import MONITORING_MODELS, dbt_asset_args, run_dbt_build
from ml import monitoring as mon
from ml.deployment import DeploymentDecision
from ml.lake import Lake
from ml.launch import postlaunch
from ml.launch.bounds import LaunchBounds
from ml.launch.impact import read_impact
from ml.matching.bank_matches import BANK_MATCHES
from ml.registry import Registry
from ml.scoring import load_model, score_frame
from ml.simulator import LOOKBACK_DAYS
from ml.training.dataset import TrainingSetRef
from ml.warehouse import publish_marts, read_frame

# Labels about a day's content arrive over the following LOOKBACK_DAYS days (decisions, appeals, audits),
# so a day's live precision and QA prevalence depend on the label partitions of those days too.
LATER_LABELS = dg.TimeWindowPartitionMapping(
    start_offset=0, end_offset=LOOKBACK_DAYS, allow_nonexistent_upstream_partitions=True
)
LABEL_DEPS = [
    dg.AssetDep("training_labels", partition_mapping=LATER_LABELS),
    dg.AssetDep("published_marts", partition_mapping=LATER_LABELS),
]


@dataclass(frozen=True)
class MonitoringReferenceRef:
    """What `monitoring_reference` hands on: which champion, trained on what, and where its reference is."""

    path: str
    champion: str
    dataset_version: str
    rows: int


def _monitored(content: pl.DataFrame, raw: dict[str, pl.DataFrame], scores: pl.DataFrame) -> pl.DataFrame:
    """`scores` (content_scores rows) with the features the champion read, built point in time as scoring does."""
    features = scored_frame(raw, content).drop("text")
    return scores.join(features.drop("created_at", "surface", strict=False), on="content_id", how="inner")


@dg.asset(
    group_name="monitoring",
    kinds={"polars", "parquet"},
    ins={"deployed": dg.AssetIn("deployed_model"), "training_set": dg.AssetIn("training_set")},
    deps=[*RAW_INPUTS, IMAGE_TEXT, BANK_MATCHES, CAMPAIGN_MEMBERS],
)
def monitoring_reference(
    context: dg.AssetExecutionContext,
    deployed: DeploymentDecision,
    training_set: TrainingSetRef,
    lakehouse: LakehouseResource,
) -> MonitoringReferenceRef:
    """What every monitored day is compared with: the platform content of the days the champion trained on,
    scored once by the champion through the batch-scoring code path, as PSI bins of every score and watched
    feature, with the champion's operating points and the newest label its training set holds. Written once
    per champion and dataset version under `<home>/lake/monitoring/reference/`."""
    version = deployed.champion
    if not version:
        raise dg.Failure("no champion is deployed yet: materialize deployed_model first")
    lake = lakehouse.lake
    registry = Registry(lake.models)
    entry = registry.get(version)
    target = mon.reference_dir(lake.monitoring, version, entry.dataset_version)
    if mon.reference_complete(target):
        reference = mon.read_reference(target)
        context.log.info(f"the reference of {version} (dataset {entry.dataset_version}) exists: reusing it")
        if reference.binning != mon.BINNING:
            scored = mon.read_scored_reference(target)
            reference = mon.rebinned(reference, scored)
            mon.write_reference(reference, scored, target)
            context.log.info("its bins came from other binning rules: fitted them again from its scored rows")
    else:
        if training_set.version != entry.dataset_version:
            raise dg.Failure(
                f"champion {version} was trained on dataset {entry.dataset_version} but training_set is now "
                f"{training_set.version}, and no reference of the champion was kept: its training rows are gone. "
                "Run retrain_job so a champion trained on the current training set is deployed, or promote one."
            )
        rows = pl.read_parquet(training_set.path)
        window = mon.training_window(rows)
        raw = raw_inputs(lake)
        content = raw["content"].filter(pl.col("created_at").dt.date().is_between(window[0], window[1]))
        champion = load_model(registry.artifact_dir(entry))
        days = [window[0] + timedelta(days=d) for d in range((window[1] - window[0]).days + 1)]
        frame = with_enforcement_context(lake, raw, scored_frame(raw, content), days)
        scored = pl.concat(
            [frame.drop("text"), score_frame(champion, frame).drop("model_version", "text_flag")], how="horizontal"
        )
        reference = mon.build_reference(
            version,
            entry.dataset_version,
            window,
            scored,
            entry.operating_points,
            mon.qa_labels(rows),
            created_at=f"dagster run {context.run_id}",
        )
        mon.write_reference(reference, scored, target)
    kind = lambda c, b: "values" if b.by_value else "bands" if c in mon.FIXED_EDGES else "deciles"  # noqa: E731
    bins = pl.DataFrame(
        [
            {"column": c, "kind": kind(c, b), "bins": len(b.shares), "largest_bin_share": max(b.shares)}
            for c, b in reference.bins.items()
        ]
    )
    context.add_output_metadata(
        {
            "champion": version,
            "dataset_version": reference.dataset_version,
            "window": f"{reference.window_start} .. {reference.window_end}",
            "dagster/row_count": reference.rows,
            "labels_until": reference.labels_until.isoformat() if reference.labels_until else "none",
            "label_rows": reference.label_rows,
            "qa_audited": reference.qa_audited,
            "binning": reference.binning,
            **{f"prevalence_offset/{p}": round(v, 4) for p, v in reference.prevalence_offset.items()},
            "path": dg.MetadataValue.path(str(target)),
            "bins": dg.MetadataValue.md(markdown_table(bins)),
        }
    )
    return MonitoringReferenceRef(str(target), version, reference.dataset_version, reference.rows)


def _scores(lake: Lake, days: list[date], champion: str) -> pl.DataFrame:
    """content_scores of `days`, which must have been scored by `champion`."""
    missing = [d for d in days if not lake.partition_dir("content_scores", d, lake.scores).is_dir()]
    if missing:
        raise dg.Failure(f"content_scores has no partition for {', '.join(map(str, missing))}: score those days first")
    scores = pl.concat(
        [pl.read_parquet(lake.partition_dir("content_scores", d, lake.scores) / "part-0.parquet") for d in days],
        how="diagonal_relaxed",
    ).with_columns(day=pl.col("created_at").dt.date())
    others = sorted(set(scores["model_version"].unique().drop_nulls()) - {champion})
    if others:
        raise dg.Failure(
            f"some of these days were scored by {', '.join(others)}, not by the champion {champion} the "
            "reference describes: materialize content_scores for them again, then monitoring"
        )
    return scores


def _write_days(lake: Lake, name: str, tables: dict[date, pl.DataFrame]) -> None:
    for day, table in tables.items():
        lake.write_partition(name, day, table.drop("date"), root=lake.monitoring)


def _day_metadata(table: pl.DataFrame, keys: dict[str, tuple[str, str]]) -> dict:
    """Per-day metadata: the rounded value of chosen (metric, subject) rows, and the day's whole table."""
    out = {}
    for label, (metric, subject) in keys.items():
        row = table.filter((pl.col("metric") == metric) & (pl.col("subject") == subject))
        if row.height and row["value"][0] is not None:
            out[label] = round(float(row["value"][0]), 4)
    shown = table.select("metric", "subject", "value", "expected", "n", "status")
    out["measures"] = dg.MetadataValue.md(markdown_table(shown))
    return out


def _check(check_name: str, v: mon.Verdict) -> dg.AssetCheckResult:
    """WARN past the warn threshold, ERROR past the fail threshold; insufficient evidence passes and says so."""
    severity = dg.AssetCheckSeverity.ERROR if v.level == "fail" else dg.AssetCheckSeverity.WARN
    meta = {"level": v.level}
    if v.worst:
        meta.update(
            {
                "day": str(v.worst["date"]),
                "subject": v.worst["subject"],
                **({"value": round(float(v.worst["value"]), 4)} if v.worst["value"] is not None else {}),
                **({"expected": round(float(v.worst["expected"]), 4)} if v.worst["expected"] is not None else {}),
            }
        )
    return dg.AssetCheckResult(
        check_name=check_name, passed=v.passed, severity=severity, description=v.message, metadata=meta
    )


def launch_check_description(bounds: LaunchBounds) -> str:
    return (
        "After a promotion, each day after the day of the promotion, the auto-removals and reviews of the champion, "
        "per policy and in all, against the "
        "daily volumes its launch impact predicted: ERROR (the run fails, and the run failure sensor writes an ops "
        f"alert) when a day parts from the prediction by more than {bounds.volume_tolerance:.0%} and by more than "
        f"{postlaunch.BEYOND_CHANCE:g} standard deviations of chance (Poisson counts). Days from before the launch, "
        "and a champion launched without a launch impact, are not judged."
    )


def check_descriptions(limits: mon.MonitoringThresholds) -> dict[str, str]:
    """What each monitoring check asserts, with the thresholds in force (a deployment may set its own)."""
    return {
        "score_drift_psi": (
            "Largest PSI of a day's champion scores (each policy's calibrated probability and the risk) against the "
            f"champion's reference: WARN above {limits.drift_psi_warn:g}, ERROR above {limits.drift_psi_fail:g}. "
            f"Days with fewer than {limits.min_rows} scored items are not judged."
        ),
        "feature_drift_psi": (
            "Largest PSI of a day's model inputs (behaviour, network and text signals, surface, language) against "
            f"the champion's reference: WARN above {limits.drift_psi_warn:g}, ERROR above {limits.drift_psi_fail:g}."
        ),
        "live_precision_drop": (
            "Precision of a day's auto-actions (the enforcement policy's removals) by their later moderator "
            "decisions, appeal outcomes and QA audits, against the validation precision the champion's operating "
            f"points promised: WARN when more than {limits.precision_drop_warn:g} below and the promise lies outside "
            f"the 95% interval, ERROR past {limits.precision_drop_fail:g}. Judged from {limits.min_labelled} "
            "labelled auto-actions."
        ),
        "predicted_vs_qa_prevalence": (
            "Per policy, predicted minus true prevalence of a day's content, measured on its QA audits (a "
            "uniform sample) as the mean of calibrated score minus gold label, held to the gap the champion had "
            f"on its training window: WARN when the gap moved by more than {limits.prevalence_gap_warn:g} and "
            "the usual gap lies outside the day's 95% interval, "
            f"ERROR when even the interval's nearer end moved past {limits.prevalence_gap_fail:g}. Judged from "
            f"{limits.min_audited} audits."
        ),
    }


def model_drift(
    context: dg.AssetExecutionContext,
    reference: MonitoringReferenceRef,
    lakehouse: LakehouseResource,
    monitoring: MonitoringResource,
) -> Iterator:
    """Each day's score and feature drift: the population stability index of every champion score and watched
    model input of the day's content against `monitoring_reference`, on the reference's own bins (fixed bands
    for scores and account age, deciles, or one bin per value; ml/monitoring/psi.py). One row per day and column."""
    lake, limits = lakehouse.lake, monitoring.thresholds()
    ref = mon.read_reference(reference.path)
    days = partition_days(context)
    scores = _scores(lake, days, ref.champion)
    raw = raw_inputs(lake)
    content = raw["content"].filter(pl.col("content_id").is_in(scores["content_id"].implode()))
    monitored = _monitored(content, raw, scores)
    first = raw["content"]["created_at"].min()
    history_from = first.date() if first is not None else None
    tables = {d: mon.drift(ref, d, monitored.filter(pl.col("day") == d), limits, history_from) for d in days}
    _write_days(lake, "model_drift", tables)
    for day, table in tables.items():
        worst = mon.worst_psi(table)
        context.add_asset_metadata(
            {
                "champion": ref.champion,
                "dagster/row_count": table.height,
                "scored_items": int(table["n"].max() or 0),
                **(
                    {
                        "max_psi": round(worst["value"], 4),
                        "max_psi_column": worst["subject"],
                        "max_psi_metric": worst["metric"],
                        "status": worst["status"],
                    }
                    if worst
                    else {"status": "insufficient"}
                ),
                **_day_metadata(table, {}),
            },
            partition_key=day.isoformat(),
        )
    run = pl.concat(tables.values())
    yield dg.MaterializeResult(
        check_results=[
            _check("score_drift_psi", mon.verdict(run, ("score_psi",), _psi_text)),
            _check("feature_drift_psi", mon.verdict(run, ("feature_psi",), _psi_text)),
        ]
    )


def _psi_text(row: dict) -> str:
    return f"{row['date']}: {row['subject']} PSI {row['value']:.3f} ({row['status']})"


def _labels(lake: Lake) -> pl.DataFrame:
    return read_frame(
        lake.marts_db,
        "select content_id, label, label_source, label_at from training_labels where content_id is not null",
    )


def live_precision(
    context: dg.AssetExecutionContext,
    reference: MonitoringReferenceRef,
    lakehouse: LakehouseResource,
    monitoring: MonitoringResource,
) -> Iterator:
    """Each day's live quality: the precision of the content the champion's enforcement policy removed on its
    own, by what happened to it later (resolved labels in `training_labels`: QA gold over appeal outcomes over
    moderator decisions), overall with a 95% interval and per policy, the share of auto-actions labelled so
    far, and the recall on QA-audited violations. A day's figures fill in as its labels arrive."""
    lake, limits = lakehouse.lake, monitoring.thresholds()
    ref = mon.read_reference(reference.path)
    days = partition_days(context)
    scores, labels = _scores(lake, days, ref.champion), _labels(lake)
    tables = {d: mon.live_precision(ref, d, scores.filter(pl.col("day") == d), labels, limits) for d in days}
    _write_days(lake, "live_precision", tables)
    for day, table in tables.items():
        status = table.filter(pl.col("metric") == "live_precision", pl.col("subject") == "all")["status"][0]
        context.add_asset_metadata(
            {
                "champion": ref.champion,
                "dagster/row_count": table.height,
                "status": status,
                **_day_metadata(
                    table,
                    {
                        "live_precision": ("live_precision", "all"),
                        "auto_actions": ("auto_actions", "all"),
                        "labelled_share": ("auto_actions_labelled_share", "all"),
                    },
                ),
            },
            partition_key=day.isoformat(),
        )
    run = pl.concat(tables.values())
    yield dg.MaterializeResult(
        check_results=[
            _check(
                "live_precision_drop",
                mon.verdict(
                    run.filter(pl.col("subject") == "all"),
                    ("live_precision",),
                    lambda r: (
                        (
                            f"{r['date']}: live precision {r['value']:.3f} of {r['n']} labelled auto-actions vs "
                            f"{r['expected']:.3f} promised ({r['status']})"
                        )
                        if r["value"] is not None and r["expected"] is not None
                        else f"{r['date']}: {r['n']} labelled auto-actions ({r['status']})"
                    ),
                ),
            )
        ]
    )


def prevalence_gap(
    context: dg.AssetExecutionContext,
    reference: MonitoringReferenceRef,
    lakehouse: LakehouseResource,
    monitoring: MonitoringResource,
) -> Iterator:
    """Each day's predicted prevalence per policy (mean calibrated score, and the share over the champion's
    review threshold), the QA-estimated prevalence of the same content (audits are a uniform random sample)
    with its 95% Wilson interval, and the gap between them measured on the audited items themselves
    (ml/monitoring/prevalence.py)."""
    lake, limits = lakehouse.lake, monitoring.thresholds()
    ref = mon.read_reference(reference.path)
    days = partition_days(context)
    scores = _scores(lake, days, ref.champion)
    qa = _labels(lake).filter(pl.col("label_source") == "qa_audit")
    tables = {d: mon.prevalence(ref, d, scores.filter(pl.col("day") == d), qa, limits) for d in days}
    _write_days(lake, "prevalence_gap", tables)
    for day, table in tables.items():
        gaps = table.filter(pl.col("metric") == "prevalence_gap")
        context.add_asset_metadata(
            {
                "champion": ref.champion,
                "dagster/row_count": table.height,
                "audited_items": int(gaps["n"].max() or 0),
                **{
                    f"gap/{r['subject']}": round(r["value"], 4)
                    for r in gaps.iter_rows(named=True)
                    if r["value"] is not None
                },
                **_day_metadata(table, {}),
            },
            partition_key=day.isoformat(),
        )
    run = pl.concat(tables.values())
    yield dg.MaterializeResult(
        check_results=[
            _check(
                "predicted_vs_qa_prevalence",
                mon.verdict(
                    run,
                    ("prevalence_gap",),
                    lambda r: (
                        (
                            f"{r['date']}: {r['subject']} predicted minus QA prevalence {r['value']:+.3f} on {r['n']} "
                            f"audited items, the champion's own gap {r['expected']:+.3f} ({r['status']})"
                        )
                        if r["value"] is not None
                        else f"{r['date']}: no audits yet"
                    ),
                ),
            )
        ]
    )


def launch_volumes(
    context: dg.AssetExecutionContext,
    deployed: DeploymentDecision,
    lakehouse: LakehouseResource,
    launch: LaunchResource,
) -> Iterator:
    """Each day after its launch, the volumes of the champion per action and policy (auto-removals and reviews, by its most likely
    violation) against the daily volumes its launch impact predicted (the backtest it was launched on, in
    <home>/models/<champion>/launch/impact.json). A day that parts from the prediction beyond the tolerance and
    beyond chance fails the check, which fails the run: the run failure sensor turns it into an ops alert.
    Written to <home>/lake/monitoring/launch_volumes/."""
    lake, bounds = lakehouse.lake, launch.bounds()
    champion = deployed.champion
    if not champion:
        raise dg.Failure("no champion is deployed yet: materialize deployed_model first")
    impact = read_impact(lake.models, champion)
    launched_on = Registry(lake.models).promoted_on(champion)
    days = partition_days(context)
    scores = _scores(lake, days, champion)
    tables = {
        d: postlaunch.launch_volumes(d, champion, scores.filter(pl.col("day") == d), impact, bounds, launched_on)
        for d in days
    }
    _write_days(lake, "launch_volumes", tables)
    for day, table in tables.items():
        judged = table.filter(pl.col("status") != "insufficient")
        context.add_asset_metadata(
            {
                "champion": champion,
                "dagster/row_count": table.height,
                "status": "fail" if (judged["status"] == "fail").any() else "ok" if judged.height else "insufficient",
                **_day_metadata(
                    table, {"removals": (postlaunch.METRIC, "remove/all"), "reviews": (postlaunch.METRIC, "review/all")}
                ),
            },
            partition_key=day.isoformat(),
        )
    run = pl.concat(tables.values())
    yield dg.MaterializeResult(
        metadata={
            "champion": champion,
            "launched_on": str(launched_on),
            "prediction": f"{impact.first_day} .. {impact.last_day}" if impact else "none",
        },
        check_results=[
            _check("volumes_match_launch_prediction", mon.verdict(run, (postlaunch.METRIC,), postlaunch.describe))
        ],
    )


ops_alert_log = dg.AssetSpec(
    "ops_alert_log",
    group_name="monitoring",
    kinds={"parquet"},
    description="Every failed run, one Parquet file each under `<home>/lake/ops/ops_alerts/`, appended by "
    "run_failure_alert_sensor outside any run (so it never waits for the DuckDB writer); `ops_alerts` in the "
    "marts is built from it.",
)


def monitoring_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, lakehouse: LakehouseResource) -> Iterator:
    """mart_model_monitoring and ops_alerts from the monitoring tables and the alert log, then a fresh
    publication of marts.duckdb."""
    yield from run_dbt_build(context, dbt, lakehouse)
    lake = lakehouse.lake
    publish_marts(lake.warehouse_db, lake.marts_db, on_wait=context.log.warning)


def monitoring_assets(
    partitions: dg.PartitionsDefinition, limits: mon.MonitoringThresholds, bounds: LaunchBounds
) -> list[dg.AssetsDefinition | dg.AssetSpec]:
    described = check_descriptions(limits)

    def checks(asset: str, *names: str) -> list[dg.AssetCheckSpec]:
        return [dg.AssetCheckSpec(name, asset=asset, description=described[name]) for name in names]

    daily = dict(
        group_name="monitoring",
        kinds={"polars", "parquet"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        ins={"reference": dg.AssetIn("monitoring_reference")},
    )
    label_deps = ["content_scores", *LABEL_DEPS]
    return [
        monitoring_reference,
        dg.asset(
            **daily,
            deps=["content_scores", *RAW_INPUTS, IMAGE_TEXT],
            check_specs=checks("model_drift", "score_drift_psi", "feature_drift_psi"),
        )(model_drift),
        dg.asset(**daily, deps=label_deps, check_specs=checks("live_precision", "live_precision_drop"))(live_precision),
        dg.asset(**daily, deps=label_deps, check_specs=checks("prevalence_gap", "predicted_vs_qa_prevalence"))(
            prevalence_gap
        ),
        dg.asset(
            **{**daily, "ins": {"deployed": dg.AssetIn("deployed_model")}},
            deps=["content_scores"],
            check_specs=[
                dg.AssetCheckSpec(
                    "volumes_match_launch_prediction",
                    asset="launch_volumes",
                    # Blocking: a failed check fails the step and the run, and the run failure sensor alerts.
                    blocking=True,
                    description=launch_check_description(bounds),
                )
            ],
        )(launch_volumes),
        dbt_assets(select=" ".join(MONITORING_MODELS), name="monitoring_models", **dbt_asset_args(partitions))(
            monitoring_models
        ),
        ops_alert_log,
    ]
