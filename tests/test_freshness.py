"""What `trustlake run` rebuilds (orchestration/freshness.py), on a small graph materialized for real in
an ephemeral Dagster instance: a daily raw asset, features over all of it, a model with its own data
version, and daily scores that read the raw day and the model."""

from __future__ import annotations

import dagster as dg
import pytest

from assets.metadata import DECLINED
from orchestration.freshness import Freshness, ranges, stale_partitions

DAYS = dg.StaticPartitionsDefinition(["d1", "d2", "d3"])
VERSION = {"model": "m1"}


def graph(feature_code: str = "f1"):
    @dg.asset(partitions_def=DAYS, code_version="r1")
    def raw() -> int:
        return 1

    @dg.asset(deps=[raw], code_version=feature_code)
    def features() -> None:
        return None

    @dg.asset(deps=[features], code_version="c1")
    def model() -> dg.Output[None]:
        return dg.Output(None, data_version=dg.DataVersion(VERSION["model"]))

    @dg.asset(partitions_def=DAYS, deps=[raw, model], code_version="s1")
    def scores() -> None:
        return None

    @dg.asset(deps=[features], code_version="t1", output_required=False)
    def deep_model():
        yield dg.AssetObservation(asset_key="deep_model", metadata={DECLINED: "no GPU"})

    @dg.asset(deps=[deep_model], code_version="e1")
    def deep_evaluation() -> None:
        return None

    assets = [raw, features, model, scores, deep_model, deep_evaluation]
    return assets, dg.Definitions(assets=assets).resolve_asset_graph()


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def build(instance, assets, names, partition=None):
    selection = [a for a in assets if a.key.path[-1] in names]
    result = dg.materialize(selection, instance=instance, partition_key=partition, raise_on_error=True)
    assert result.success


def stale(instance, asset_graph, partitions=("d1", "d2", "d3")):
    keys = {k for k in asset_graph.materializable_asset_keys}
    return {
        (k.to_user_string(), p): why
        for (k, p), why in Freshness(instance, asset_graph).stale(keys, list(partitions)).items()
    }


def build_all(instance, assets):
    for day in ("d1", "d2", "d3"):
        build(instance, assets, {"raw"}, day)
    build(instance, assets, {"features", "model", "deep_model"})
    for day in ("d1", "d2", "d3"):
        build(instance, assets, {"scores"}, day)


def test_nothing_built_is_all_stale_and_everything_built_is_fresh(instance):
    assets, g = graph()
    before = stale(instance, g)
    assert before[("raw", "d1")] == "raw d1 was never built"
    assert before[("model", None)] == "model was never built"
    build_all(instance, assets)
    assert stale(instance, g) == {}


def test_a_new_day_rebuilds_what_reads_it_and_not_the_other_days(instance):
    assets, g = graph()
    build_all(instance, assets)
    build(instance, assets, {"raw"}, "d2")  # d2 landed again (new rows)
    now = stale(instance, g)
    assert now[("features", None)] == "raw was built after it"
    assert now[("model", None)] == "upstream features is rebuilt first"
    # every day's scores read the model, which is rebuilt first; the other days' raw partitions are not
    assert now[("scores", "d1")] == now[("scores", "d2")] == "upstream model is rebuilt first"
    assert ("raw", "d1") not in now and ("raw", "d3") not in now
    assert stale_partitions(now, ["d1", "d2", "d3"]) == ["d1", "d2", "d3"]


def test_a_model_rebuilt_with_the_same_data_version_leaves_its_scores_alone(instance):
    assets, g = graph()
    build_all(instance, assets)
    build(instance, assets, {"model"})  # rebuilt, same champion
    assert stale(instance, g) == {}
    VERSION["model"] = "m2"
    try:
        build(instance, assets, {"model"})
        now = stale(instance, g)
        assert now[("scores", "d1")] == "model has a new data version"
        assert stale_partitions(now, ["d1", "d2", "d3"]) == ["d1", "d2", "d3"]
    finally:
        VERSION["model"] = "m1"


def test_changed_code_makes_an_asset_and_its_descendants_stale(instance):
    assets, _ = graph()
    build_all(instance, assets)
    _, changed = graph(feature_code="f2")
    now = stale(instance, changed)
    assert now[("features", None)] == "features: its code changed"
    assert ("model", None) in now and ("raw", "d1") not in now


def test_an_asset_that_declined_to_build_is_fresh_until_its_inputs_change(instance):
    assets, g = graph()
    build_all(instance, assets)
    now = stale(instance, g)
    assert ("deep_model", None) not in now and ("deep_evaluation", None) not in now
    build(instance, assets, {"features"})
    assert ("deep_model", None) in stale(instance, g)


def test_stale_days_group_into_ranges():
    days = ["d1", "d2", "d3", "d4", "d5"]
    assert ranges(["d5", "d1", "d2", "d4"], days) == [("d1", "d2"), ("d4", "d5")]
    assert ranges([], days) == []
    # an unpartitioned stale asset in a daily job: the last day rebuilds it
    assert stale_partitions({(dg.AssetKey("reference_labels"), None): "changed"}, days) == ["d5"]
