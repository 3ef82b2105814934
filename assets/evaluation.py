"""Evaluation of the content-classifier candidates and of the pair (group `evaluation`), with
blocking gates, and the deployment that promotes the pair when every gate passed (group `deployment`)."""

import dagster as dg
import polars as pl

from assets.training import LabelIssuesRef
from ml.deployment import deploy
from ml.evaluate_model import evaluate_risk_model, evaluate_text_model
from ml.evaluation import GATE_DESCRIPTIONS, PAIR_GATES, TEXT_GATES, pair_gates, text_gates
from ml.registry import Registry, registry_entry
from ml.taxonomy import VIOLATING
from ml.training.artifacts import ModelArtifact
from ml.training.dataset import TrainingSetRef
from orchestration.code_version import git_sha
from orchestration.resources import LakehouseResource, TrainingResource


def _f(value) -> str:
    return "" if value is None or value != value else f"{value:.3f}"


def text_summary(ev: dict) -> str:
    rows = ["| set | policy | candidate PR-AUC | baseline PR-AUC | champion PR-AUC | candidate ROC-AUC |",
            "|---|---|---|---|---|---|"]
    champ = ev.get("champion_text_only")
    for p in VIOLATING:
        t, b = ev["text_only"]["policies"][p], ev["baseline_text_only"]["policies"][p]
        c = champ["policies"][p]["pr_auc"] if champ else None
        rows.append(f"| text-only held-out | {p} | {_f(t['pr_auc'])} | {_f(b['pr_auc'])} | {_f(c)} | {_f(t['roc_auc'])} |")
    for source, m in sorted((ev.get("loso") or {}).items()):
        b = ev["baseline_loso"][source]
        for p, pm in m["policies"].items():
            rows.append(f"| held-out source {source} | {p} | {_f(pm['pr_auc'])} | "
                        f"{_f(b['policies'][p]['pr_auc'])} |  | {_f(pm['roc_auc'])} |")
    return "\n".join(rows)


def _check_specs(name: str, gates: tuple[str, ...], blocking: bool) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(g, asset=name, blocking=blocking, description=GATE_DESCRIPTIONS[g]) for g in gates]


def _champion_parts(lakehouse: LakehouseResource) -> tuple[ModelArtifact | None, ModelArtifact | None]:
    """The champion pair and its content classifier, as the registry records them."""
    registry = Registry(lakehouse.lake.models)
    entry = registry.champion()
    if entry is None:
        return None, None
    pair = ModelArtifact.read(registry.artifact_dir(entry))
    if pair.kind != "risk_model":
        return pair, None
    return pair, ModelArtifact.read(registry.artifact_dir(entry).parent / pair.params["content_classifier"])


def text_evaluation_asset(model_key: str, run_loso: bool) -> dg.AssetsDefinition:
    name = model_key.removesuffix("_model").removesuffix("_classifier") + "_evaluation"
    name = "content_classifier_evaluation" if model_key == "content_classifier" else name

    @dg.asset(
        name=name,
        group_name="evaluation",
        kinds={"python"},
        ins={"model": dg.AssetIn(model_key), "baseline": dg.AssetIn("baseline_model"),
             "training_set": dg.AssetIn("training_set"), "label_issues": dg.AssetIn("label_issues")},
        # Not blocking: a failing classifier must still reach the pair's evaluation, which records the
        # failure in the registry (content_classifier_gates, blocking there) so nothing is promoted.
        check_specs=_check_specs(name, TEXT_GATES, blocking=False),
        description=f"`{model_key}` as a content classifier, on text it never trained on: the text-only held-out "
        "texts (every source) and QA gold scored with no context, and leave-one-source-out (each corpus and each "
        "YouTube video held out in turn), beside the TF-IDF baseline and the champion on the same rows.",
    )
    def _evaluation(context: dg.AssetExecutionContext, model: ModelArtifact, baseline: ModelArtifact,
                    training_set: TrainingSetRef, label_issues: LabelIssuesRef, lakehouse: LakehouseResource,
                    training: TrainingResource):
        _, champion_classifier = _champion_parts(lakehouse)
        ev = evaluate_text_model(model, pl.read_parquet(training_set.path), baseline, champion_classifier,
                                 pl.read_parquet(label_issues.path), run_loso)
        gates = text_gates(ev, training.gates())
        ev["gates"] = {g.name: {"passed": g.passed, "message": g.message} for g in gates}
        ev["gates_passed"] = all(g.passed for g in gates)
        loso = ev.get("loso") or {}
        yield dg.Output(ev, metadata={
            "model_version": model.version,
            "text_only_macro_pr_auc": round(ev["text_only"]["macro_pr_auc"], 4),
            "baseline_text_only_macro_pr_auc": round(ev["baseline_text_only"]["macro_pr_auc"], 4),
            "text_only_texts": ev["text_only"]["rows"],
            **({"qa_gold_text_only_macro_pr_auc": round(ev["qa_gold_text_only"]["macro_pr_auc"], 4)}
               if ev["qa_gold_text_only"] else {}),
            **{f"held_out_source/{s}/macro_pr_auc": round(m["macro_pr_auc"], 4) for s, m in loso.items()},
            "summary": dg.MetadataValue.md(text_summary(ev)),
            "pr_curves": dg.MetadataValue.path(ev["plots"]["pr_curves"]),
        })
        for g in gates:
            yield dg.AssetCheckResult(check_name=g.name, passed=g.passed, description=g.message,
                                      metadata={"value": float(g.value), "bound": float(g.bound)})

    return _evaluation


content_classifier_evaluation = text_evaluation_asset("content_classifier", run_loso=True)
# The deep model's leave-one-source-out would mean eight more Ray trainings per run on CPU (docs/models.md):
# it is reported on text-only held-out and cannot be promoted without it.
text_evaluation = text_evaluation_asset("text_model", run_loso=False)


@dg.asset(
    group_name="evaluation",
    kinds={"python"},
    ins={"model": dg.AssetIn("risk_model"), "classifier_evaluation": dg.AssetIn("content_classifier_evaluation"),
         "training_set": dg.AssetIn("training_set")},
    deps=["users"],
    check_specs=_check_specs("risk_model_evaluation", PAIR_GATES, blocking=False),
    description="The pair (content classifier + risk model) on platform content of the test period (the "
    "simulated split) and its QA-gold subset, per slice, beside its classifier alone and the champion pair.",
)
def risk_model_evaluation(context: dg.AssetExecutionContext, model: ModelArtifact, classifier_evaluation: dict,
                          training_set: TrainingSetRef, lakehouse: LakehouseResource, training: TrainingResource):
    champion, _ = _champion_parts(lakehouse)
    ev = evaluate_risk_model(model, pl.read_parquet(training_set.path), lakehouse.lake.read_table("users"), champion)
    gates = pair_gates(ev, classifier_evaluation["gates_passed"], classifier_evaluation["version"], training.gates())
    ev["gates"] = {g.name: {"passed": g.passed, "message": g.message} for g in gates}
    ev["gates_passed"] = all(g.passed for g in gates)
    ev["classifier"] = {k: classifier_evaluation[k] for k in ("version", "text_only", "baseline_text_only", "loso",
                                                              "baseline_loso", "qa_gold_text_only", "gates_passed")}
    registry = Registry(lakehouse.lake.models)
    registry.register(registry_entry(model, ev, git_sha()))
    yield dg.Output(ev, metadata={
        "model_version": model.version, "content_classifier_version": ev["content_classifier_version"],
        "test_macro_pr_auc": round(ev["test"]["macro_pr_auc"], 4),
        "classifier_alone_test_macro_pr_auc": round(ev["classifier_alone_test"]["macro_pr_auc"], 4),
        **({"qa_gold_macro_pr_auc": round(ev["qa_gold"]["macro_pr_auc"], 4)} if ev["qa_gold"] else {}),
        "test_rows": ev["test"]["rows"],
        "pr_curves": dg.MetadataValue.path(ev["plots"]["pr_curves"]),
    })
    for g in gates:
        yield dg.AssetCheckResult(check_name=g.name, passed=g.passed, description=g.message,
                                  metadata={"value": float(g.value), "bound": float(g.bound)})


evaluation_assets = [content_classifier_evaluation, text_evaluation, risk_model_evaluation]


@dg.asset(
    group_name="deployment",
    kinds={"python"},
    ins={"pair": dg.AssetIn("risk_model_evaluation"), "text": dg.AssetIn("text_evaluation")},
)
def deployed_model(context: dg.AssetExecutionContext, pair: dict, text: dict, lakehouse: LakehouseResource) -> dict:
    """The champion pair: promoted when the content classifier and the risk model passed every gate (who, when
    and why are recorded in the registry); otherwise the current champion stays."""
    registry = Registry(lakehouse.lake.models)
    decision = deploy(registry, pair, [text], actor=f"dagster run {context.run_id}")
    champion = registry.champion()
    context.add_output_metadata({"champion": decision["champion"] or "none",
                                 "promoted": decision["promoted"] or "none", "reason": decision["reason"]})
    return {**decision, "path": str(registry.artifact_dir(champion)) if champion else None}
