"""Evaluation of the content-classifier candidates and of the pair (group `evaluation`), with their
gates as asset checks, and the deployment that promotes the pair when every gate passed and its launch
is low risk (group `deployment`; the launch impact it weighs is assets/launch.py's). The gates do not
block the run: `deployed_model` always runs and promotes only a pair whose gates all passed, so a
failed candidate is an outcome recorded in the registry, not a crash.
`evaluation_assets` makes them with the gates' bounds in force in their check descriptions:
orchestration/definitions.py passes them in from the settings."""

from dataclasses import dataclass

import dagster as dg
import polars as pl

from assets.code_version import git_sha
from assets.metadata import image_markdown, rounded
from assets.resources import LakehouseResource, TrainingResource
from assets.training import LabelIssuesRef, fit_cache_metadata, fit_plan
from ml.deployment import DeploymentDecision, deploy, deployed_version
from ml.evaluation.evaluate import deployment_candidate, evaluate_risk_model, evaluate_text_model
from ml.evaluation.gates import PAIR_GATES, TEXT_GATES, GateConfig, gate_descriptions
from ml.evaluation.results import ClassifierEvaluation, GateResult, PairEvaluation
from ml.launch.impact import LaunchImpact
from ml.registry import Registry, registry_entry
from ml.taxonomy import VIOLATING
from ml.training.artifacts import ModelArtifact
from ml.training.dataset import TrainingSetRef


def _f(value) -> str:
    return "" if value is None or value != value else f"{value:.3f}"


def text_summary(ev: ClassifierEvaluation) -> str:
    rows = [
        "| set | policy | candidate PR-AUC | baseline PR-AUC | champion PR-AUC | candidate ROC-AUC |",
        "|---|---|---|---|---|---|",
    ]
    champ = ev.champion_text_only
    for p in VIOLATING:
        rows.append(
            f"| text-only held-out | {p} | {_f(ev.text_only.pr_auc(p))} | "
            f"{_f(ev.baseline_text_only.pr_auc(p))} | {_f(champ.pr_auc(p) if champ else None)} | "
            f"{_f(ev.text_only.roc_auc(p))} |"
        )
    for s in ev.held_out_sources or ():
        for p, m in s.candidate.policies.items():
            rows.append(
                f"| held-out source {s.source} | {p} | {_f(m.pr_auc)} | {_f(s.baseline.pr_auc(p))} |  | "
                f"{_f(m.roc_auc)} |"
            )
    return "\n".join(rows)


def _check_specs(name: str, gates: tuple[str, ...], config: GateConfig) -> list[dg.AssetCheckSpec]:
    # Not blocking: deployed_model reads the gate outcomes and promotes only a pair that passed them all.
    described = gate_descriptions(config)
    return [dg.AssetCheckSpec(g, asset=name, blocking=False, description=described[g]) for g in gates]


def _check_results(gates: tuple[GateResult, ...]) -> list[dg.AssetCheckResult]:
    return [
        dg.AssetCheckResult(
            check_name=g.name,
            passed=g.passed,
            description=g.message,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"value": rounded(g.value, 4), "bound": rounded(g.bound, 4)},
        )
        for g in gates
    ]


@dataclass(frozen=True)
class IncumbentChampion:
    """The champion pair when a retraining starts: what every candidate is compared against (and what
    deployment expects still to be the champion). `version` None: there is none yet."""

    version: str | None
    pair: ModelArtifact | None
    classifier: ModelArtifact | None


@dg.asset(
    group_name="evaluation",
    kinds={"python"},
    description="The champion pair in the model registry when this retraining started: the declared input every "
    "evaluation compares its candidate with, so re-running an evaluation with the same inputs gives the same result "
    "even after a promotion.",
)
def incumbent_champion(context: dg.AssetExecutionContext, lakehouse: LakehouseResource) -> dg.Output[IncumbentChampion]:
    registry = Registry(lakehouse.lake.models)
    entry = registry.champion()
    if entry is None:
        return dg.Output(
            IncumbentChampion(None, None, None), data_version=dg.DataVersion("none"), metadata={"champion": "none"}
        )
    pair = ModelArtifact.read(registry.artifact_dir(entry))
    classifier = (
        ModelArtifact.read(registry.artifact_dir(entry).parent / pair.params["content_classifier"])
        if "content_classifier" in pair.params
        else None
    )
    return dg.Output(
        IncumbentChampion(entry.version, pair, classifier),
        data_version=dg.DataVersion(entry.version),
        metadata={
            "champion": entry.version,
            "content_classifier": classifier.version if classifier else "none",
            "dataset_version": entry.dataset_version,
        },
    )


def text_evaluation_asset(name: str, model_key: str, run_loso: bool, gates: GateConfig) -> dg.AssetsDefinition:
    @dg.asset(
        name=name,
        group_name="evaluation",
        kinds={"python"},
        ins={
            "model": dg.AssetIn(model_key),
            "baseline": dg.AssetIn("baseline_model"),
            "training_set": dg.AssetIn("training_set"),
            "label_issues": dg.AssetIn("label_issues"),
            "incumbent": dg.AssetIn("incumbent_champion"),
        },
        check_specs=_check_specs(name, TEXT_GATES, gates),
        description=f"`{model_key}` as a content classifier, on text it never trained on: the text-only held-out "
        "texts (every source) and QA gold scored with no context, and leave-one-source-out (each corpus and each "
        "YouTube video held out in turn: the stand-in for a platform it has never seen), beside the TF-IDF "
        "baseline and the champion on the same rows.",
    )
    def _evaluation(
        context: dg.AssetExecutionContext,
        model: ModelArtifact,
        baseline: ModelArtifact,
        training_set: TrainingSetRef,
        label_issues: LabelIssuesRef,
        incumbent: IncumbentChampion,
        training: TrainingResource,
        lakehouse: LakehouseResource,
    ):
        plan = fit_plan(training_set, lakehouse.lake, label_issues) if run_loso else None
        ev = evaluate_text_model(
            model,
            pl.read_parquet(training_set.path),
            baseline,
            incumbent.classifier,
            pl.read_parquet(label_issues.path),
            training.gates(),
            run_loso=run_loso,
            plan=plan,
        )
        yield dg.Output(
            ev,
            metadata={
                "model_version": model.version,
                "text_only_macro_pr_auc": rounded(ev.text_only.macro_pr_auc),
                "baseline_text_only_macro_pr_auc": rounded(ev.baseline_text_only.macro_pr_auc),
                "text_only_texts": ev.text_only.rows,
                **(
                    {"qa_gold_text_only_macro_pr_auc": rounded(ev.qa_gold_text_only.macro_pr_auc)}
                    if ev.qa_gold_text_only
                    else {}
                ),
                **{f"held_out/{s.source}": rounded(s.candidate.macro_pr_auc) for s in ev.held_out_sources or ()},
                "gates_passed": ev.gates_passed,
                "summary": dg.MetadataValue.md(text_summary(ev)),
                "pr_curves": image_markdown(ev.plots["pr_curves"], "PR curves, text-only held-out"),
                "calibration": image_markdown(ev.plots["calibration"], "reliability diagram, text-only held-out"),
                **(fit_cache_metadata(plan) if plan else {}),
            },
        )
        yield from _check_results(ev.gates)

    return _evaluation


def risk_model_evaluation(
    context: dg.AssetExecutionContext,
    model: ModelArtifact,
    classifier_evaluation: ClassifierEvaluation,
    training_set: TrainingSetRef,
    incumbent: IncumbentChampion,
    lakehouse: LakehouseResource,
    training: TrainingResource,
):
    lake = lakehouse.lake
    frame, users = pl.read_parquet(training_set.path), lake.read_table("users")
    pair = evaluate_risk_model(model, frame, users, incumbent.pair, classifier_evaluation, training.gates())
    registry = Registry(lake.models)
    registry.register(registry_entry(model, pair, git_sha()))
    candidate, ev = deployment_candidate(model, pair, frame, users, incumbent.pair, training.gates())
    if candidate is not model:  # the risk model did not earn its place: its classifier alone is the candidate
        registry.register(registry_entry(candidate, ev, git_sha()))
        context.log.info(f"{pair.version} did not beat its classifier significantly: candidate {ev.version}")
    yield dg.Output(
        ev,
        metadata={
            "candidate": ev.version,
            "model_version": model.version,
            "content_classifier_version": ev.content_classifier_version,
            "test_macro_pr_auc": rounded(pair.test.macro_pr_auc),
            "classifier_alone_test_macro_pr_auc": rounded(pair.classifier_alone_test.macro_pr_auc),
            "pair_gain": pair.gain.describe("test items"),
            "pair_gain_on_campaign_items": pair.campaign_gain.describe("campaign items"),
            **({"qa_gold_macro_pr_auc": rounded(ev.qa_gold.macro_pr_auc)} if ev.qa_gold else {}),
            "test_rows": ev.test.rows,
            "gates_passed": ev.gates_passed,
            "pr_curves": image_markdown(pair.plots["pr_curves"], "PR curves, simulated test split"),
        },
    )
    # The checks are the pair's own gates: a risk model that did not earn its place shows it here.
    yield from _check_results(pair.gates)


@dg.asset(
    group_name="deployment",
    kinds={"python"},
    ins={"pair": dg.AssetIn("risk_model_evaluation"), "impact": dg.AssetIn("launch_impact")},
)
def deployed_model(
    context: dg.AssetExecutionContext, pair: PairEvaluation, impact: LaunchImpact, lakehouse: LakehouseResource
) -> dg.Output[DeploymentDecision]:
    """The champion pair, and the shadow beside it: the evaluated pair is promoted when it passed every gate, its
    launch is low risk (or the first) and the champion is still the one it was evaluated against; a high-risk
    launch waits for `trustlake models approve` and runs as the shadow meanwhile; otherwise the champion stays.
    Who, when, why and the evidence are recorded in the registry and its audit log. Its data version is the
    champion's version (and the shadow's), so the scores of a champion that stayed are not redone; a change
    made with `trustlake models` makes it stale, so the next `trustlake run` carries it to batch scoring."""
    decision = deploy(Registry(lakehouse.lake.models), pair, impact, actor=f"dagster run {context.run_id}")
    return dg.Output(
        decision,
        data_version=dg.DataVersion(deployed_version(decision.champion, decision.shadow)),
        metadata={
            "champion": decision.champion or "none",
            "promoted": decision.promoted or "none",
            "shadow": decision.shadow or "none",
            "awaiting_approval": decision.awaiting_approval or "none",
            "risk_tier": impact.risk_tier,
            "reason": decision.reason,
        },
    )


def evaluation_assets(gates: GateConfig) -> list[dg.AssetsDefinition]:
    """The evaluations and the deployment, their gates described with `gates`' bounds."""
    return [
        incumbent_champion,
        text_evaluation_asset("content_classifier_evaluation", "content_classifier", run_loso=True, gates=gates),
        # The deep model's leave-one-source-out would mean eight more Ray trainings per run (docs/models.md): it
        # is reported on text-only held-out and cannot be promoted without it. Skipped when text_model did not train.
        text_evaluation_asset("text_evaluation", "text_model", run_loso=False, gates=gates),
        dg.asset(
            group_name="evaluation",
            kinds={"python"},
            ins={
                "model": dg.AssetIn("risk_model"),
                "classifier_evaluation": dg.AssetIn("content_classifier_evaluation"),
                "training_set": dg.AssetIn("training_set"),
                "incumbent": dg.AssetIn("incumbent_champion"),
            },
            deps=["users"],
            check_specs=_check_specs("risk_model_evaluation", PAIR_GATES, gates),
            description="The pair (content classifier + risk model) on platform content of the test period (the "
            "simulated split) and its QA-gold subset, per slice, beside its classifier alone and the champion pair; "
            "registered in the model registry as a candidate. Its output is the candidate for deployment: the "
            "pair, or, when the risk model did not beat its classifier significantly (overall and on campaign "
            "items), the content classifier alone (kind classifier_alone), evaluated the same way.",
        )(risk_model_evaluation),
        deployed_model,
    ]
