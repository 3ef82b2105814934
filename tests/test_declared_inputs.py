"""Lineage in the UI is the truth: every asset of evaluation, features and monitoring declares what it
reads. The graph is walked for each asset's declared parents, and its code (the asset function and the
module helpers it calls) is read for what it actually touches: a raw table by name, the published
marts file, or the model registry's champion."""

import ast
import inspect
import textwrap

import dagster as dg
import pytest

from assets import evaluation, features, monitoring
from orchestration.definitions import defs
from tests.helpers import code_location_assets

RAW_TABLES = {"users", "content", "reports", "decisions", "appeals", "qa_audits"}


@pytest.fixture(scope="module")
def graph():
    return defs().resolve_asset_graph()


def parents(graph, key: str) -> set[str]:
    return {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}


def _called_helpers(fn, module) -> list:
    """`fn` and every function of its own module that it calls, transitively."""
    seen, todo = [], [fn]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.append(f)
        tree = ast.parse(textwrap.dedent(inspect.getsource(f)))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                helper = getattr(module, node.func.id, None)
                if inspect.isfunction(helper) and helper.__module__ == module.__name__:
                    todo.append(helper)
    return seen


def touched(asset: dg.AssetsDefinition, module) -> dict[str, set[str]]:
    """What the asset's code reads: raw tables named in `read_table(...)` (constants, or a tuple of the
    module's), whether it opens the published marts, and whether it asks the registry for the champion."""
    out = {"raw": set(), "marts": set(), "champion": set()}
    for f in _called_helpers(asset.op.compute_fn.decorated_fn, module):
        source = textwrap.dedent(inspect.getsource(f))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "read_table" and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant):
                    out["raw"].add(arg.value)
                elif isinstance(arg, ast.Name):  # `for t in RAW_INPUTS: read_table(t)`
                    for loop in ast.walk(ast.parse(source)):
                        if isinstance(loop, ast.comprehension | ast.For) and getattr(loop.target, "id", None) == arg.id:
                            iterable = loop.iter
                            if isinstance(iterable, ast.Name) and isinstance(getattr(module, iterable.id, None), tuple):
                                out["raw"] |= set(getattr(module, iterable.id))
                            elif isinstance(iterable, ast.Tuple):
                                out["raw"] |= {e.value for e in iterable.elts if isinstance(e, ast.Constant)}
        if "marts_db" in source:
            out["marts"].add(f.__name__)
        if ".champion()" in source:
            out["champion"].add(f.__name__)
    return out


EVALUATION = ["content_classifier_evaluation", "text_evaluation", "risk_model_evaluation"]
MONITORING = ["monitoring_reference", "model_drift", "live_precision", "prevalence_gap"]


@pytest.mark.parametrize("name", EVALUATION)
def test_evaluations_compare_with_a_declared_champion_not_the_registry_file(graph, name):
    [asset] = code_location_assets(name)
    used = touched(asset, evaluation)
    assert not used["champion"], f"{name} reads the registry's champion itself ({used['champion']})"
    assert "incumbent_champion" in parents(graph, name)
    assert used["raw"] <= parents(graph, name), used["raw"] - parents(graph, name)


def test_the_incumbent_champion_is_the_only_evaluation_asset_reading_the_registry(graph):
    used = touched(evaluation.incumbent_champion, evaluation)
    assert used["champion"] == {"incumbent_champion"}
    assert parents(graph, "content_classifier_evaluation") >= {
        "content_classifier",
        "baseline_model",
        "training_set",
        "label_issues",
        "incumbent_champion",
    }


@pytest.mark.parametrize("name", list(features.TABLES))
def test_feature_tables_declare_every_raw_table_and_the_marts_they_read(graph, name):
    declared = parents(graph, name)
    assert set(features.TABLES[name].reads) <= declared
    # The coverage check reads training_labels from the published marts file.
    assert "marts_db" in inspect.getsource(features.labelled_content_ids)
    assert {"training_labels", "published_marts"} <= declared
    # Raw tables, the text read in images (the image_text asset, which content_features reads) and the text
    # signatures the campaigns asset keeps (campaign_features reads them).
    assert set(features.TABLES[name].reads) <= RAW_TABLES | set(features.DERIVED)


@pytest.mark.parametrize("name", MONITORING)
def test_monitoring_assets_declare_what_they_read(graph, name):
    [asset] = code_location_assets(name)
    used = touched(asset, monitoring)
    declared = parents(graph, name)
    assert used["raw"] <= declared, used["raw"] - declared
    if used["marts"]:
        assert "published_marts" in declared, f"{name} reads marts.duckdb ({used['marts']}) without declaring it"
    assert not used["champion"], f"{name} asks the registry for the champion instead of reading deployed_model"
    # The champion it watches comes from an input: deployed_model directly, or its reference.
    assert declared & {"deployed_model", "monitoring_reference"}
