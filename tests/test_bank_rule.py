"""The enforcement policy's `bank_match` rule: an item matched to a hash-bank entry is acted on by the
bank's rule, and the decision says which bank, its policy and where the entry came from."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from ml.enforcement import PolicyError, parse_policy
from ml.images.render import render_benign_image, render_text_image
from ml.images.transforms import TRANSFORMS
from ml.matching.banks import BankEntry, BankIndex, BankKind, ConfirmedRemoval, Imported, bank_removed_image
from ml.matching.pdq import ORIGINAL_AND_MIRROR, image_codes
from ml.matching.threshold import DEFAULT_RADIUS
from ml.taxonomy import POLICIES

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
IMPORTED_HASH = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
POLICY = """
version: 1
default: allow
rules:
  - name: known_bad_media
    bank_match: any
    action: remove
  - name: send_to_review
    policy: any
    score_at_least: review
    action: review
"""
THRESHOLDS = {p: {"auto_action": 0.9, "review": 0.5} for p in POLICIES if p != "benign"}


def low_scores(n: int) -> pl.DataFrame:
    """Scores no score rule acts on: only a bank match can."""
    return pl.DataFrame({f"p_{p}": [0.9 if p == "benign" else 0.02] * n for p in POLICIES})


def test_a_reupload_matched_to_a_confirmed_removal_is_removed_with_the_removal_as_provenance():
    rng = np.random.default_rng(5)
    removed = render_text_image("Win a free phone now, text WIN to 80800 today", rng, "flyer").image
    banked = bank_removed_image(removed, "removals", "spam", ConfirmedRemoval("decision-9", "content-9", NOW))
    imported = BankEntry(
        "te-scam", "scam", BankKind.PDQ, IMPORTED_HASH, Imported("te.csv", 4, "analyst@example.org", NOW)
    )
    index = BankIndex([*banked.entries, imported])
    uploads = [TRANSFORMS["mirror"].apply(removed, rng), render_benign_image(rng).image]
    codes = [image_codes(image, ORIGINAL_AND_MIRROR) for image in uploads]
    found = index.match_images(np.stack([c for c, _ in codes]), np.array([q for _, q in codes]), DEFAULT_RADIUS)
    closest = index.closest(found, index.match_texts(["", ""]))
    context = pl.DataFrame({"query": [0, 1]}).join(closest, on="query", how="left", maintain_order="left")

    decided = parse_policy(POLICY).decide_with_reasons(low_scores(2), THRESHOLDS, context)

    assert decided["action"].to_list() == ["remove", "allow"]
    assert decided["decided_by"].to_list() == ["known_bad_media", "default"]
    assert decided["bank_match"][0] == (
        "removals (spam): confirmed removal: decision decision-9 of content content-9, confirmed 2026-01-05 12:00 UTC"
    )
    assert decided["bank_match"][1] is None


def test_a_rule_naming_a_bank_acts_only_on_that_banks_matches_and_says_where_the_entry_came_from():
    policy = parse_policy(POLICY.replace("bank_match: any", "bank_match: te-scam"))
    context = pl.DataFrame(
        {
            "bank_match_bank": ["te-scam", "removals", None],
            "bank_match_policy": ["scam", "spam", None],
            "bank_match_provenance": ["imported from te.csv line 4 by analyst@example.org at 2026-01-05 12:00 UTC"]
            + [None, None],
        }
    )
    decided = policy.decide_with_reasons(low_scores(3), THRESHOLDS, context)
    assert decided["action"].to_list() == ["remove", "allow", "allow"]
    assert (
        decided["bank_match"][0]
        == "te-scam (scam): imported from te.csv line 4 by analyst@example.org at 2026-01-05 12:00 UTC"
    )
    # Without match columns (text scored outside the platform), a bank rule never acts.
    assert policy.decide(low_scores(1), THRESHOLDS).tolist() == ["allow"]


def test_a_bank_rule_may_also_ask_for_a_score_and_an_empty_bank_name_is_refused():
    policy = parse_policy(POLICY.replace("    bank_match: any\n", "    bank_match: any\n    score_at_least: 0.5\n"))
    context = pl.DataFrame({"bank_match_bank": ["b"], "bank_match_policy": ["spam"], "bank_match_provenance": ["x"]})
    assert policy.decide(low_scores(1), THRESHOLDS, context).tolist() == ["allow"]
    with pytest.raises(PolicyError, match="line 6: bank_match '' must be a bank name or any"):
        parse_policy(POLICY.replace("bank_match: any", "bank_match: ''"))


def test_a_batch_scored_with_match_columns_in_which_no_item_matched_has_no_bank_reasons():
    context = pl.DataFrame(
        {"bank_match_bank": [None, None], "bank_match_policy": [None, None], "bank_match_provenance": [None, None]},
        schema={c: pl.String for c in ("bank_match_bank", "bank_match_policy", "bank_match_provenance")},
    )
    decided = parse_policy(POLICY).decide_with_reasons(low_scores(2), THRESHOLDS, context)
    assert decided["action"].to_list() == ["allow", "allow"] and decided["bank_match"].to_list() == [None, None]
