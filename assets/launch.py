"""Launch assurance as assets: what a candidate would change before it acts, what it does as the shadow, the
report a reviewer reads, and the audit log analysts query (ml/launch/).

- `launch_impact` (group deployment): the backtest of the evaluated pair against the incumbent champion over
  the last days of platform content, and the risk tier the launch bounds give it; `deployed_model` decides on
  it (promote, or wait for approval as the shadow).
- `shadow_scores` (group scoring, daily): each day's content scored by the shadow beside the champion's actions
  in `content_scores`; nothing reads them to act. An empty partition when no shadow is deployed.
- `launch_report` (group monitoring): the evaluated pair's model card, launch impact (its shadow data when it
  has some, and the backtest), risk tier and where the decision stands, as Markdown in the UI and a file.
- `model_launch_log` (group monitoring): the audit log as a table for `mart_model_launches`, every line it
  could not read included and reported.
"""

from datetime import date, timedelta

import dagster as dg
import polars as pl

from assets.campaigns import CAMPAIGN_MEMBERS
from assets.evaluation import IncumbentChampion
from assets.images import IMAGE_TEXT
from assets.metadata import add_partition_metadata, image_markdown, markdown_table, partition_days
from assets.resources import LakehouseResource, LaunchResource
from assets.scoring import (
    RAW_INPUTS,
    campaign_members,
    days_bank_matches,
    raw_inputs,
    scored_frame,
    with_enforcement_context,
)
from ml.deployment import DeploymentDecision, approve_hint
from ml.evaluation.results import PairEvaluation, read_evaluation
from ml.lake import Lake, write_parquet_atomic, write_text_atomic
from ml.launch.audit import file_sha256
from ml.launch.card import model_card
from ml.launch.impact import (
    LaunchImpact,
    backtest,
    backtest_window,
    evidence_path,
    paired_actions,
    removal_precision,
    write_impact,
)
from ml.launch.impact import launch_impact as judge_launch
from ml.launch.report import impact_plot, impact_section, render
from ml.matching.bank_matches import BANK_MATCHES
from ml.registry import Registry, RegistryEntry
from ml.scoring import load_model, score_frame
from ml.training.dataset import TrainingSetRef

SHADOW_SCHEMA = {
    "content_id": pl.Int64,
    "created_at": pl.Datetime("us"),
    "surface": pl.String,
    "policy": pl.String,  # ml/launch/impact.py paired_actions: the policy the shadow acts for, else the champion's
    "champion_version": pl.String,
    "champion_action": pl.String,
    "shadow_version": pl.String,
    "shadow_action": pl.String,
    # Each model's precision of auto-removals on QA gold for the row's policy (its evaluation): what expected
    # wrongful removals in mart_shadow_comparison are computed from. Null where QA gold could not measure it.
    "champion_qa_precision": pl.Float64,
    "shadow_qa_precision": pl.Float64,
    "review_seconds": pl.Float64,  # the moderators' seconds a review, in force when scored
}


def _pair_evaluation(registry: Registry, entry: RegistryEntry | None) -> PairEvaluation | None:
    """A registered pair's own evaluation record (evaluation.json beside it), None for other kinds."""
    if entry is None:
        return None
    path = registry.artifact_dir(entry) / "evaluation.json"
    record = read_evaluation(path) if path.exists() else None
    return record if isinstance(record, PairEvaluation) else None


@dg.asset(
    group_name="deployment",
    kinds={"polars"},
    ins={"pair": dg.AssetIn("risk_model_evaluation"), "incumbent": dg.AssetIn("incumbent_champion")},
    deps=[*RAW_INPUTS, IMAGE_TEXT, BANK_MATCHES, CAMPAIGN_MEMBERS],
    description="What the evaluated pair would change: the last days of platform content (TRUSTLAKE_LAUNCH_"
    "BACKTEST_DAYS) scored by the pair and by the incumbent champion through the batch-scoring code path (the "
    "day's hash-bank matches included, as the bank rule acts on them for either model), as daily "
    "removals and reviews per policy and surface, review hours and expected wrongful removals, and the risk tier "
    "the launch bounds give it. deployed_model promotes a low-risk launch and holds a high-risk one for approval. "
    "Written to <home>/models/<pair>/launch/impact.json.",
)
def launch_impact(
    context: dg.AssetExecutionContext,
    pair: PairEvaluation,
    incumbent: IncumbentChampion,
    lakehouse: LakehouseResource,
    launch: LaunchResource,
) -> dg.Output[LaunchImpact]:
    lake, bounds = lakehouse.lake, launch.bounds()
    registry = Registry(lake.models)
    candidate = load_model(registry.artifact_dir(registry.get(pair.version)))
    champion_entry = registry.get(incumbent.version) if incumbent.version else None
    champion = load_model(registry.artifact_dir(champion_entry)) if champion_entry else None
    window = backtest_window(lake.partitions("content"), bounds.backtest_days)
    days = [window[0] + timedelta(days=i) for i in range((window[1] - window[0]).days + 1)]
    paired = backtest(
        raw_inputs(lake), window, candidate, champion, days_bank_matches(lake, days), campaign_members(lake)
    )
    precision = {
        "candidate": removal_precision(pair),
        "champion": removal_precision(_pair_evaluation(registry, champion_entry)),
    }
    impact = judge_launch(paired, bounds, pair.version, incumbent.version, "backtest", precision)
    target = write_impact(lake.models, impact)
    write_parquet_atomic(paired, target.with_name("backtest.parquet"))
    return dg.Output(
        impact,
        metadata={
            "candidate": pair.version,
            "champion": incumbent.version or "none",
            "risk_tier": impact.risk_tier,
            "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in impact.reasons) or "none"),
            "backtest_days": f"{impact.first_day} .. {impact.last_day}",
            "dagster/row_count": paired.height,
            "impact": dg.MetadataValue.md(impact_section(impact, "Backtest")),
            "path": dg.MetadataValue.path(str(target)),
        },
    )


def shadow_scores(
    context: dg.AssetExecutionContext,
    deployed: DeploymentDecision,
    lakehouse: LakehouseResource,
    launch: LaunchResource,
):
    """Each day's content scored by the shadow (when one is deployed) beside the action the champion took on it
    in content_scores: the shadow never acts, nothing reads these rows to act, and the champion's scores are
    not touched. Features are built point in time as content_scores builds them. A day without a shadow gets
    an empty partition, so the day is up to date either way."""
    lake = lakehouse.lake
    days = partition_days(context)
    if not deployed.shadow:
        for day in days:
            lake.write_partition("shadow_scores", day, pl.DataFrame(schema=SHADOW_SCHEMA), root=lake.scores)
        return dg.MaterializeResult(metadata={"shadow": "none", "days_in_run": len(days)})
    registry = Registry(lake.models)
    shadow_entry = registry.get(deployed.shadow)
    shadow = load_model(registry.artifact_dir(shadow_entry))
    champion_scores = _champion_scores(lake, days, deployed.champion)
    raw = raw_inputs(lake)
    content = raw["content"].filter(pl.col("content_id").is_in(champion_scores["content_id"].implode()))
    # The shadow acts on bank matches as the champion did, so the two differ only where their models do.
    frame = with_enforcement_context(lake, raw, scored_frame(raw, content), days)
    scored = score_frame(shadow, frame)
    champion = frame.select("content_id").join(champion_scores, on="content_id", how="left", maintain_order="left")
    paired = paired_actions(frame.select("content_id", "created_at", "surface"), scored, champion)
    precision = {
        "champion": removal_precision(_pair_evaluation(registry, registry.get(deployed.champion))),
        "shadow": removal_precision(_pair_evaluation(registry, shadow_entry)),
    }
    rows = (
        paired.with_columns(
            created_at=frame["created_at"],
            champion_version=pl.lit(deployed.champion),
            shadow_version=pl.lit(deployed.shadow),
            shadow_action=pl.col("candidate_action"),
            champion_qa_precision=pl.col("policy").replace_strict(precision["champion"], return_dtype=pl.Float64),
            shadow_qa_precision=pl.col("policy").replace_strict(precision["shadow"], return_dtype=pl.Float64),
            review_seconds=pl.lit(launch.bounds().review_seconds),
        )
        .select(list(SHADOW_SCHEMA))
        .cast(SHADOW_SCHEMA)
    )
    for day in days:
        todays = rows.filter(pl.col("created_at").dt.date() == day)
        lake.write_partition("shadow_scores", day, todays, root=lake.scores)
        flips = todays.filter(pl.col("champion_action") != pl.col("shadow_action"))
        add_partition_metadata(
            context,
            day,
            {
                "dagster/row_count": todays.height,
                "shadow": deployed.shadow,
                "actions_changed": flips.height,
                "flips": dg.MetadataValue.md(
                    markdown_table(
                        flips.group_by("champion_action", "shadow_action").len().sort("len", descending=True)
                    )
                )
                if flips.height
                else None,
            },
        )
    return dg.MaterializeResult(
        metadata={"shadow": deployed.shadow, "champion": deployed.champion, "days_in_run": len(days)}
    )


def _champion_scores(lake: Lake, days: list[date], champion: str | None) -> pl.DataFrame:
    """The champion's content_scores rows (content_id, p_<policy>, action) of `days`."""
    missing = [d for d in days if not lake.partition_dir("content_scores", d, lake.scores).is_dir()]
    if missing or champion is None:
        raise dg.Failure(f"content_scores has no partition for {', '.join(map(str, missing))}: score those days first")
    scores = pl.concat(
        [pl.read_parquet(lake.partition_dir("content_scores", d, lake.scores) / "part-0.parquet") for d in days],
        how="diagonal_relaxed",
    )
    others = sorted(set(scores["model_version"].unique().drop_nulls()) - {champion})
    if others:
        raise dg.Failure(
            f"some of these days were scored by {', '.join(others)}, not by the champion {champion}: materialize "
            "content_scores for them again, then shadow_scores"
        )
    return scores.select("content_id", pl.col("^p_.*$"), "action")


@dg.asset(
    group_name="monitoring",
    kinds={"python", "markdown"},
    ins={
        "pair": dg.AssetIn("risk_model_evaluation"),
        "impact": dg.AssetIn("launch_impact"),
        "deployed": dg.AssetIn("deployed_model"),
        "training_set": dg.AssetIn("training_set"),
    },
    deps=["shadow_scores"],
    description="The launch report of the evaluated pair, what a reviewer reads before approving a launch: its "
    "model card (intended use, label sources and dataset version, text-only held-out figures with 95% intervals, "
    "every held-out source, QA gold, slices, known weaknesses), its launch impact measured on live traffic as the "
    "shadow when it has been one, and by the backtest, the risk tier and the launch bounds, and where the decision "
    "stands. Also written to <home>/models/<pair>/launch/report.md (and report-<sha256>.md, the exact copy an "
    "approval in the audit log names).",
)
def launch_report(
    context: dg.AssetExecutionContext,
    pair: PairEvaluation,
    impact: LaunchImpact,
    deployed: DeploymentDecision,
    training_set: TrainingSetRef,
    lakehouse: LakehouseResource,
    launch: LaunchResource,
) -> dg.MaterializeResult:
    lake, bounds = lakehouse.lake, launch.bounds()
    registry = Registry(lake.models)
    entry = registry.get(pair.version)
    shadow = _shadow_impact(lake, registry, entry, pair, deployed, bounds)
    labels = pl.read_parquet(training_set.path, columns=["label_source", "source", "label", "split"])
    card = model_card(pair, labels, entry.code_version)
    folder = (lake.models / evidence_path(pair.version)).parent
    plot = impact_plot([i for i in (shadow, impact) if i is not None], folder / "impact.png")
    decision = decision_text(entry, deployed)
    text = render(pair.version, card, impact, shadow, decision, bounds, "![launch impact](impact.png)")
    target = folder / "report.md"
    write_text_atomic(target, text)
    sha = file_sha256(target)
    write_text_atomic(folder / f"report-{sha[:12]}.md", text)  # the exact bytes an approval names
    shown = render(
        pair.version, card, impact, shadow, decision, bounds, image_markdown(str(plot), "launch impact").value
    )
    return dg.MaterializeResult(
        metadata={
            "candidate": pair.version,
            "decision": decision,
            "risk_tier": impact.risk_tier,
            **({"shadow_risk_tier": shadow.risk_tier, "shadow_days": shadow.days} if shadow else {}),
            "report": dg.MetadataValue.md(shown),
            "path": dg.MetadataValue.path(str(target)),
            "sha256": sha,
        }
    )


def _shadow_impact(lake, registry, entry, pair, deployed, bounds) -> LaunchImpact | None:
    """The pair's launch impact from its shadow days beside the current champion, when it has any."""
    files = sorted((lake.scores / "shadow_scores").glob("date=*/*.parquet"))
    if not files or deployed.champion is None:
        return None
    rows = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed").filter(
        (pl.col("shadow_version") == pair.version) & (pl.col("champion_version") == deployed.champion)
    )
    if rows.is_empty():
        return None
    paired = rows.select(
        "content_id",
        day=pl.col("created_at").dt.date(),
        surface="surface",
        policy="policy",
        champion_action="champion_action",
        candidate_action="shadow_action",
    )
    precision = {
        "candidate": removal_precision(pair),
        "champion": removal_precision(_pair_evaluation(registry, registry.get(deployed.champion))),
    }
    return judge_launch(paired, bounds, pair.version, deployed.champion, "shadow", precision)


def decision_text(entry: RegistryEntry, deployed: DeploymentDecision) -> str:
    """Where the pair's launch stands, in one sentence."""
    launch = entry.launch
    if entry.status == "champion":
        approved = (
            f", approved by {launch.decided_by} at {launch.decided_at} ({launch.decision_reason})"
            if launch is not None and launch.approval == "approved"
            else ""
        )
        return f"promoted: {entry.version} is the champion{approved}"
    if launch is not None and launch.approval == "pending":
        return f"waiting for approval of a {launch.risk_tier}-risk launch; {approve_hint(entry.version)}"
    if launch is not None and launch.approval == "rejected":
        return f"rejected by {launch.decided_by} at {launch.decided_at}: {launch.decision_reason}"
    if entry.status == "retired":
        return f"{entry.version} was champion and has since been replaced or rolled back"
    return f"not deployed: {deployed.reason}"


def model_launch_log(context: dg.AssetExecutionContext, lakehouse: LakehouseResource):
    """The models' audit log (<home>/models/audit.jsonl) as a table for mart_model_launches: every record with its
    line, and every line that holds none (a write torn by a killed process) as a row saying why, never left out."""
    lake = lakehouse.lake
    log = Registry(lake.models).audit
    trail = log.read()
    records = pl.DataFrame([r.to_dict() for r in trail.records], schema=LAUNCH_LOG_SCHEMA).with_columns(
        line=pl.Series(trail.lines, dtype=pl.Int64)
    )
    damaged = pl.DataFrame(
        [{"line": d.line, "damage": d.problem, "damaged_text": d.text} for d in trail.damaged],
        schema={"line": pl.Int64, "damage": pl.String, "damaged_text": pl.String},
    )
    table = pl.concat([records, damaged], how="diagonal_relaxed").sort("line")
    write_parquet_atomic(table, lake.ops / "model_launches" / "part-0.parquet")
    yield dg.Output(
        None,
        data_version=dg.DataVersion(log.fingerprint()),
        metadata={
            "dagster/row_count": table.height,
            "records": len(trail.records),
            "damaged_lines": len(trail.damaged),
            "path": dg.MetadataValue.path(str(log.path)),
            "latest": dg.MetadataValue.md(
                markdown_table(records.tail(10).select("at", "action", "version", "actor", "reason"))
                if records.height
                else "no launch recorded yet"
            ),
        },
    )
    yield dg.AssetCheckResult(
        check_name="audit_log_readable",
        passed=not trail.damaged,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(d.describe(log.path) for d in trail.damaged) or "every line of the audit log is a record",
        metadata={"damaged_lines": len(trail.damaged)},
    )


LAUNCH_LOG_SCHEMA = {
    "event_id": pl.String,
    "at": pl.String,
    "action": pl.String,
    "version": pl.String,
    "actor": pl.String,
    "reason": pl.String,
    "previous": pl.String,
    "rolled_back": pl.String,
    "risk_tier": pl.String,
    "report": pl.String,
    "report_sha256": pl.String,
    "recovered": pl.Boolean,
}


def launch_assets(partitions: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The launch assets; `shadow_scores` over the platform's daily `partitions` like content_scores."""
    return [
        launch_impact,
        dg.asset(
            group_name="scoring",
            kinds={"polars", "parquet"},
            partitions_def=partitions,
            backfill_policy=dg.BackfillPolicy.single_run(),
            ins={"deployed": dg.AssetIn("deployed_model")},
            deps=["content_scores", *RAW_INPUTS, IMAGE_TEXT, BANK_MATCHES, CAMPAIGN_MEMBERS],
        )(shadow_scores),
        launch_report,
        dg.asset(
            group_name="monitoring",
            kinds={"parquet"},
            check_specs=[
                dg.AssetCheckSpec(
                    "audit_log_readable",
                    asset="model_launch_log",
                    description="Every line of the models' audit log is a readable record; a line torn by a "
                    "process killed mid-append (or damaged by hand) is named with its line number (WARN). Its "
                    "rows stay in mart_model_launches, marked damaged.",
                )
            ],
        )(model_launch_log),
    ]
