"""Declarative automation as wired in the code location: a new champion re-scores the latest day,
new scores rebuild the review queue, and nothing is requested while an input is missing."""

import dagster as dg
import pytest

from orchestration.definitions import defs
from orchestration.settings import last_complete_day

DAY = last_complete_day().isoformat()
# The day's raw tables, the text read in its images (an image post is scored on it) and its hash-bank
# matches (the bank_match rule reads them).
RAW_INPUTS = ("content", "users", "reports", "decisions", "appeals", "image_text", "bank_matches")
# The campaigns the campaign rule reads (not partitioned: the lake's campaigns as of the last ingest).
CAMPAIGN_INPUTS = ("campaigns", "campaign_members")


@pytest.fixture(scope="module")
def definitions():
    return defs()


def materialized(instance, key: str, partition: str | None = None) -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=key, partition=partition))


def tick(definitions, instance, cursor=None):
    return dg.evaluate_automation_conditions(defs=definitions, instance=instance, cursor=cursor)


def test_a_new_champion_rescores_the_latest_day_and_then_the_review_queue_follows(definitions):
    with dg.DagsterInstance.ephemeral() as instance:
        first = tick(definitions, instance)
        assert first.total_requested == 0  # nothing landed yet: nothing to score
        for key in RAW_INPUTS:
            materialized(instance, key, DAY)
        for key in CAMPAIGN_INPUTS:
            materialized(instance, key)
        waiting = tick(definitions, instance, first.cursor)
        assert waiting.get_num_requested(dg.AssetKey("content_scores")) == 0  # no deployed_model yet
        materialized(instance, "deployed_model")
        promoted = tick(definitions, instance, waiting.cursor)
        assert promoted.get_requested_partitions(dg.AssetKey("content_scores")) == {DAY}
        # The queue also reads the day's warehouse facts: not before they exist.
        assert promoted.get_num_requested(dg.AssetKey("mart_review_queue")) == 0

        materialized(instance, "content_scores", DAY)
        for key in ("fct_content", "fct_moderation_actions", "dim_users"):
            materialized(instance, key, DAY)
        scored = tick(definitions, instance, promoted.cursor)
        assert scored.get_requested_partitions(dg.AssetKey("mart_review_queue")) == {DAY}
        assert scored.get_num_requested(dg.AssetKey("content_scores")) == 0  # handled: not asked twice
