"""Evaluation of each trained model (group `evaluation`) with blocking quality gates, and the
deployment that promotes the best candidate that passed (group `deployment`)."""

import dagster as dg
import polars as pl

from ml.deployment import deploy
from ml.evaluate_model import evaluate
from ml.evaluation import quality_gates
from ml.registry import Registry, registry_entry
from ml.taxonomy import POLICIES
from ml.training.artifacts import ModelArtifact
from ml.training.dataset import TrainingSetRef
from orchestration.code_version import git_sha
from orchestration.resources import LakehouseResource, TrainingResource

CANDIDATES = ("lightgbm_model", "text_model")  # the baseline is evaluated for reference only
GATES = ("min_pr_auc", "no_regression_vs_champion", "calibration", "slice_gap")


def _summary_table(ev: dict) -> str:
    rows = ["| policy | PR-AUC | ROC-AUC | P@auto | R@auto | R@review | ECE | QA-gold PR-AUC | champion PR-AUC |",
            "|---|---|---|---|---|---|---|---|---|"]
    for p in POLICIES[1:]:
        t = ev["test"]["policies"][p]
        g = ev["qa_gold"]["policies"][p]["pr_auc"] if ev["qa_gold"] else float("nan")
        c = ev["champion_test"]["policies"][p]["pr_auc"] if ev["champion_test"] else float("nan")
        rows.append(f"| {p} | {t['pr_auc']:.3f} | {t['roc_auc']:.3f} | {t['precision_at_auto_action']:.3f} | "
                    f"{t['recall_at_auto_action']:.3f} | {t['recall_at_review']:.3f} | {t['calibration_error']:.3f} "
                    f"| {g:.3f} | {c:.3f} |")
    return "\n".join(rows)


def evaluation_asset(model_key: str) -> dg.AssetsDefinition:
    name = model_key.removesuffix("_model") + "_evaluation"
    gated = model_key in CANDIDATES

    @dg.asset(
        name=name,
        group_name="evaluation",
        kinds={"python"},
        ins={"model": dg.AssetIn(model_key), "training_set": dg.AssetIn("training_set")},
        deps=["users"],
        check_specs=[dg.AssetCheckSpec(g, asset=name, blocking=True) for g in GATES] if gated else None,
        description=f"Evaluation of `{model_key}` on the test split and the QA-gold sample, with slices, "
        "operating points and the champion on the same rows"
        + (". Quality gates block promotion." if gated else " (reference only, never promoted)."),
    )
    def _evaluation(context: dg.AssetExecutionContext, model: ModelArtifact, training_set: TrainingSetRef,
                    lakehouse: LakehouseResource, training: TrainingResource):
        lake = lakehouse.lake
        registry = Registry(lake.models)
        champ_entry = registry.champion()
        champion = ModelArtifact.read(champ_entry["path"]) if champ_entry else None
        ev = evaluate(model, pl.read_parquet(training_set.path), lake.read_table("users"), champion)
        gates = quality_gates(ev, training.gates())
        ev["gates"] = {g.name: {"passed": g.passed, "message": g.message, "value": g.value, "bound": g.bound}
                       for g in gates}
        ev["gates_passed"] = all(g.passed for g in gates)
        if gated:
            registry.register(registry_entry(model, ev, git_sha()))
        headline = {
            "model_version": model.version,
            "test_macro_pr_auc": ev["test"]["macro_pr_auc"],
            "qa_gold_macro_pr_auc": ev["qa_gold"]["macro_pr_auc"] if ev["qa_gold"] else float("nan"),
            "qa_gold_rows": ev["qa_gold"]["rows"] if ev["qa_gold"] else 0,
            "max_calibration_error": ev["test"]["max_calibration_error"],
            "champion_version": ev["champion_version"] or "none",
            "champion_test_macro_pr_auc": ev["champion_test"]["macro_pr_auc"] if ev["champion_test"] else float("nan"),
            **{f"test_pr_auc/{p}": ev["test"]["policies"][p]["pr_auc"] for p in POLICIES},
            "summary": dg.MetadataValue.md(_summary_table(ev)),
            "pr_curves": dg.MetadataValue.path(ev["plots"]["pr_curves"]),
            "calibration_plot": dg.MetadataValue.path(ev["plots"]["calibration"]),
            "slices": dg.MetadataValue.json(ev["slices"]),
        }
        yield dg.Output(ev, metadata=headline)
        if gated:
            for g in gates:
                yield dg.AssetCheckResult(check_name=g.name, passed=g.passed, description=g.message,
                                          metadata={"value": float(g.value), "bound": float(g.bound)})

    return _evaluation


evaluation_assets = [evaluation_asset(k) for k in ("lightgbm_model", "text_model", "baseline_model")]


@dg.asset(
    group_name="deployment",
    kinds={"python"},
    ins={"lightgbm": dg.AssetIn("lightgbm_evaluation"), "text": dg.AssetIn("text_evaluation")},
)
def deployed_model(context: dg.AssetExecutionContext, lightgbm: dict, text: dict,
                   lakehouse: LakehouseResource) -> dict:
    """The champion: the best candidate that passed every gate is promoted (who, when and why are
    recorded in the registry); when none passed, the current champion stays."""
    registry = Registry(lakehouse.lake.models)
    decision = deploy(registry, [lightgbm, text], actor=f"dagster run {context.run_id}")
    champion = registry.champion()
    context.add_output_metadata({
        "champion": decision["champion"] or "none", "promoted": decision["promoted"] or "none",
        "reason": decision["reason"],
        "champion_test_macro_pr_auc": (champion or {}).get("metrics", {}).get("test_macro_pr_auc", float("nan")),
    })
    return {**decision, "path": champion["path"] if champion else None}
