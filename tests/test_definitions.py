"""The Dagster graph as users see it: keys, groups, lineage and checks (a visible contract)."""

import dagster as dg
import pytest

from orchestration.definitions import defs

RAW = ["users", "content", "reports", "decisions", "appeals", "qa_audits"]
MARTS = ["fct_content", "fct_moderation_actions", "dim_users", "mart_policy_daily", "mart_prevalence_daily",
         "mart_appeals", "mart_moderator_quality", "mart_review_sla", "mart_reporter_quality", "training_labels"]


@pytest.fixture(scope="module")
def graph():
    return defs.resolve_asset_graph()


def test_every_raw_table_is_a_daily_partitioned_asset_in_group_raw(graph):
    for key in RAW:
        node = graph.get(dg.AssetKey(key))
        assert node.group_name == "raw"
        assert node.partitions_def is not None and node.partitions_def.get_partition_keys()[0] == "2026-10-01"
        assert "parquet" in node.kinds and node.description


def test_lineage_runs_raw_to_staging_to_intermediate_to_marts(graph):
    def parents(key):
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}

    assert parents("stg_platform__content") == {"content"}
    assert parents("stg_platform__decisions") == {"decisions"}
    assert {"stg_platform__decisions", "stg_platform__appeals", "stg_platform__qa_audits"} <= parents(
        "int_resolved_content_labels")
    assert "int_resolved_content_labels" in parents("fct_content")
    assert parents("training_labels") == {"int_resolved_content_labels", "stg_platform__content",
                                          "int_moderator_qa_agreement", "stg_reference__labelled_texts"}
    assert parents("stg_reference__labelled_texts") == {"reference_labels"}
    assert parents("mart_label_issues") == {"label_issues", "training_labels"}
    assert set(MARTS) <= parents("published_marts")
    for mart in MARTS:
        assert graph.get(dg.AssetKey(mart)).group_name == "warehouse"


def test_dbt_tests_are_asset_checks_on_the_assets_they_test(graph):
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert ("content", "source_unique_raw_content_content_id") in checks
    assert ("stg_platform__decisions",
            "relationships_stg_platform__decisions_content_id__content_id__ref_stg_platform__content_") in checks
    assert ("decisions", "source_accepted_values_raw_decisions_action__remove__restrict__no_action") in checks
    assert ("fct_content", "unique_fct_content_content_id") in checks
    assert ("mart_prevalence_daily", "assert_qa_prevalence_in_unit_interval") in checks
    assert ("training_labels", "assert_label_resolution_total") in checks
    assert ("stg_platform__decisions", "assert_decision_not_before_content") in checks
    assert ("stg_platform__appeals", "assert_appeal_references_removal") in checks
    assert len(checks) >= 100


def test_every_duckdb_writer_shares_one_pool(graph):
    from assets.warehouse import published_marts, warehouse_models

    assert warehouse_models.op.pool == "duckdb"
    assert published_marts.op.pool == "duckdb"


def test_every_asset_has_a_description(graph):
    missing = [k.to_user_string() for k in graph.get_all_asset_keys()
               if graph.has(k) and graph.get(k).is_materializable and not graph.get(k).description]
    assert missing == []


def test_feature_assets_carry_blocking_quality_checks_and_drift(graph):
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    for table in ("content_features", "author_features", "network_features"):
        assert graph.get(dg.AssetKey(table)).group_name == "features"
        for check in ("schema", "null_rates", "value_ranges", "covers_labelled_content", "drift_psi"):
            assert (table, check) in checks


def test_models_take_the_training_set_as_a_real_input(graph):
    from assets.training import baseline_model, content_classifier, risk_model, text_model

    for asset in (content_classifier, text_model, baseline_model, risk_model):
        assert dg.AssetKey("training_set") in asset.keys_by_input_name.values()
        assert graph.get(asset.key).group_name == "training"
    assert {"content_features", "author_features", "network_features", "training_labels"} <= {
        k.to_user_string() for k in graph.get(dg.AssetKey("training_set")).parent_keys}


def test_the_risk_model_is_stacked_on_the_content_classifier_and_evaluated_as_a_pair(graph):
    def parents(key):
        return {k.to_user_string() for k in graph.get(dg.AssetKey(key)).parent_keys}

    assert {"content_classifier", "label_issues"} <= parents("risk_model")
    assert {"content_classifier", "baseline_model", "training_set"} <= parents("content_classifier_evaluation")
    assert {"risk_model", "content_classifier_evaluation"} <= parents("risk_model_evaluation")
    checks = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    for gate in ("beats_baseline_text_only", "baseline_not_better_on_any_held_out_source", "no_regression_vs_champion"):
        assert ("content_classifier_evaluation", gate) in checks
    assert ("risk_model_evaluation", "content_classifier_gates") in checks
