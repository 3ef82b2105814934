"""PDQ codes, the exact Hamming-radius index, radius selection, and text near-duplicates."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from PIL import Image, ImageOps

from ml.images.render import render_benign_image, render_text_image
from ml.matching.clusters import component_labels, components_frame
from ml.matching.index import HammingIndex, brute_force_search, recall, self_matches
from ml.matching.pdq import (
    ORIGINAL_AND_MIRROR,
    Dihedral,
    codes_to_hex,
    hamming,
    hex_problem,
    hex_to_codes,
    image_codes,
    pdq_hash,
    trim_frame,
)
from ml.matching.text import (
    NearDuplicateIndex,
    TextMatchParams,
    find_artifacts,
    matching_form,
    near_duplicate_clusters,
    near_duplicate_pairs,
    pair_metrics,
)
from ml.matching.threshold import HashedImages, choose_radius, evaluate_radii

SPAM = "Congratulations! You have won a $1000 Walmart gift card. Click http://bit.ly/abc123 to claim before midnight"
VARIANT = "congratulations!!! u have won a $500 walmart gift card 🎉 tap http://tinyurl.com/x9 to claim before midnight"
UNRELATED = "The council meeting about the new cycle lanes has been moved to Thursday evening at the library"


def _flip(codes: np.ndarray, bits: int, rng) -> np.ndarray:
    unpacked = np.unpackbits(codes)
    unpacked[rng.choice(256, size=bits, replace=False)] ^= 1
    return np.packbits(unpacked)


# --- PDQ ------------------------------------------------------------------------------------------


def test_hex_round_trips_and_bad_hashes_are_named():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, size=(5, 32), dtype=np.uint8)
    hexes = codes_to_hex(codes)
    assert all(len(h) == 64 for h in hexes)
    assert np.array_equal(hex_to_codes(hexes), codes)
    assert np.array_equal(hex_to_codes([h.upper() for h in hexes]), codes)
    assert "63 characters" in hex_problem("a" * 63)
    assert "non-hex" in hex_problem("g" * 64)
    with pytest.raises(ValueError, match="hash 1"):
        hex_to_codes(["0" * 64, "xyz"])


def test_hamming_counts_differing_bits():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, size=32, dtype=np.uint8)
    assert int(hamming(a, _flip(a, 17, rng))) == 17
    assert int(hamming(a, a)) == 0


def test_a_mirrored_upload_matches_exactly_through_its_mirror_code():
    image = render_text_image(SPAM, np.random.default_rng(2), "flyer").image
    banked, _ = image_codes(image)
    query, _ = image_codes(ImageOps.mirror(image), ORIGINAL_AND_MIRROR)
    assert int(hamming(query[1], banked[0])) == 0  # reference code of the flipped-back pixels
    assert int(hamming(query[3], banked[1])) == 0  # robust code likewise


def test_a_solid_border_is_trimmed_back_to_the_image():
    image = render_text_image(SPAM, np.random.default_rng(3), "meme").image
    bordered = ImageOps.expand(image, border=25, fill=(10, 200, 30))
    assert trim_frame(bordered).size == image.size
    screenshot = render_text_image(SPAM, np.random.default_rng(3), "screenshot").image
    assert trim_frame(screenshot) is screenshot  # edges differ (bars): nothing to trim


def test_a_featureless_image_has_low_quality():
    assert pdq_hash(Image.new("RGB", (300, 200), (120, 120, 120))).quality < 50
    assert pdq_hash(render_text_image(SPAM, np.random.default_rng(4), "meme").image).trusted


def test_dihedral_names_the_pixel_operation():
    image = render_benign_image(np.random.default_rng(5)).image
    codes, _ = image_codes(image, (Dihedral.ROTATE_180,))
    turned, _ = image_codes(image.rotate(180))
    assert int(hamming(codes[0], turned[0])) == 0


# --- index ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tables,radii", [(16, (0, 8, 15, 16, 18, 31, 32, 47)), (8, (0, 7, 8, 23))])
def test_index_finds_exactly_what_an_exhaustive_scan_finds(tables, radii):
    rng = np.random.default_rng(tables)
    codes = rng.integers(0, 256, size=(5000, 32), dtype=np.uint8)
    targets = rng.integers(0, len(codes), size=300)
    queries = np.stack([_flip(codes[t], int(d), rng) for t, d in zip(targets, rng.integers(0, 48, size=300))])
    index = HammingIndex(tables)
    index.add(codes)
    for radius in radii:
        found, truth = index.search(queries, radius), brute_force_search(codes, queries, radius)
        assert len(truth) > 0 or radius == 0
        assert recall(found, truth) == 1.0 and len(found) == len(truth), radius
        assert np.array_equal(found.distance, truth.distance)


def test_index_refuses_a_radius_its_flips_do_not_cover():
    index = HammingIndex(16)
    assert index.flips(18) == [1, 1, 1] + [0] * 13  # 18 = 16 + 2: three tables need one flip
    assert index.flips(31) == [1] * 16 and index.flips(5) == [0] * 6 + [-1] * 10
    index.add(np.zeros((1, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="brute_force_search"):
        index.search(np.zeros((1, 32), dtype=np.uint8), index.max_radius() + 1)
    with pytest.raises(ValueError, match=r"\(n, 32\)"):
        index.add(np.zeros((3, 31), dtype=np.uint8))


def test_self_matches_pair_each_near_copy_once():
    rng = np.random.default_rng(7)
    base = rng.integers(0, 256, size=(50, 32), dtype=np.uint8)
    codes = np.concatenate([base, np.stack([_flip(c, 5, rng) for c in base[:10]])])
    pairs = self_matches(codes, 18)
    assert sorted(zip(pairs.query.tolist(), pairs.entry.tolist())) == [(i, 50 + i) for i in range(10)]
    # Two codes per item (reference and robust): a pair close in either is one pair, at its closest.
    two = np.stack([codes, np.stack([_flip(c, 3, rng) for c in codes])], axis=1)
    pairs = self_matches(two, 18)
    assert len(pairs) == 10 and pairs.distance.max() <= 8


# --- radius selection -----------------------------------------------------------------------------


def test_choose_radius_takes_the_largest_radius_within_the_false_match_bound():
    rng = np.random.default_rng(8)
    bank = rng.integers(0, 256, size=(40, 32), dtype=np.uint8)
    originals = HashedImages(bank[:, None, :], np.full(40, 100))
    near = HashedImages(np.stack([_flip(c, 10, rng) for c in bank])[:, None, :], np.full(40, 100))
    far = HashedImages(np.stack([_flip(c, 30, rng) for c in bank])[:, None, :], np.full(40, 100))
    # Benign: random codes, plus one sitting 25 bits from a banked code.
    benign_codes = np.concatenate([rng.integers(0, 256, size=(999, 32), dtype=np.uint8), _flip(bank[0], 25, rng)[None]])
    benign = HashedImages(benign_codes[:, None, :], np.full(1000, 100))
    evaluation = evaluate_radii(originals, {"near": near, "far": far}, benign, radii=range(0, 41))
    table = evaluation.table
    assert table.filter(pl.col("radius") == 10)["recall_near"].item() == 1.0
    assert table.filter(pl.col("radius") == 29)["recall_far"].item() == 0.0
    assert table.filter(pl.col("radius") == 25)["false_matches"].item() == 1
    assert choose_radius(evaluation, max_false_match_rate=0.0).radius == 24
    assert choose_radius(evaluation, max_false_match_rate=0.001).radius >= 25
    with pytest.raises(ValueError, match="no radius"):
        choose_radius(evaluate_radii(originals, {}, HashedImages(bank[:, None, :], np.full(40, 100))), 0.0)


def test_low_quality_images_neither_bank_nor_match():
    rng = np.random.default_rng(9)
    bank = rng.integers(0, 256, size=(4, 32), dtype=np.uint8)
    originals = HashedImages(bank[:, None, :], np.array([100, 100, 100, 10]))
    copies = HashedImages(bank[:, None, :], np.array([100, 100, 10, 100]))
    evaluation = evaluate_radii(originals, {"same": copies}, copies, radii=[0])
    assert evaluation.bank_size == 3
    assert evaluation.table["recall_same"].item() == pytest.approx(2 / 3)
    assert evaluation.table["false_matches"].item() == 2  # the low-quality copy is never looked up


# --- text -----------------------------------------------------------------------------------------


def test_matching_form_masks_what_campaigns_rotate():
    assert matching_form(SPAM) == (
        "congratulations you have won a <num> walmart gift card click <url> to claim before midnight"
    )
    assert matching_form("Call +44 (0)20 7946 0958 now!!! Sooooo good") == "call <phone> now soo good"


def test_artifacts_are_normalised_so_copies_compare_equal():
    found = find_artifacts("Visit HTTPS://www.Example.com/Deal/ or mail Bob@Example.COM, call 0800-123-4567.")
    assert found.urls == ("example.com/deal",)
    assert found.emails == ("bob@example.com",)
    assert found.phones == ("08001234567",)


def test_a_varied_near_copy_matches_and_an_unrelated_text_does_not():
    index = NearDuplicateIndex()
    index.add(["bank-1"], [SPAM])
    found = index.query([VARIANT, UNRELATED, SPAM])
    assert found.filter(pl.col("query_row") == 0)["key"].to_list() == ["bank-1"]
    assert found.filter(pl.col("query_row") == 1).is_empty()
    assert found.filter(pl.col("query_row") == 2)["jaccard"].item() == 1.0


def test_a_family_of_thousands_of_variants_is_matched_in_bounded_chunks_with_the_same_answer(monkeypatch):
    """A ring's reworded posts share their band buckets: the index confirms their candidates a chunk at a
    time (ml/matching/text.py CANDIDATE_BUDGET, JACCARD_BATCH); tiny chunks give the one-pass answer."""
    import ml.matching.text as text_matching
    from ml.ring_campaigns import campaign_texts

    variants = campaign_texts(np.random.default_rng(5), SPAM, "varied", 300) + [UNRELATED]
    index = NearDuplicateIndex()
    index.add([f"t{i}" for i in range(len(variants))], variants)
    whole = index.query(variants)
    monkeypatch.setattr(text_matching, "CANDIDATE_BUDGET", 500)
    monkeypatch.setattr(text_matching, "JACCARD_BATCH", 97)
    assert index.query(variants).equals(whole)
    assert whole["query_row"].n_unique() == len(variants) and whole.height > 10 * len(variants)


def test_too_short_texts_are_not_matched():
    index = NearDuplicateIndex()
    usable = index.add([1, 2], ["thank you", SPAM])
    assert usable.tolist() == [False, True]
    assert index.query(["thank you"]).is_empty()


def test_clusters_join_chains_of_near_copies_across_posts():
    texts = [SPAM, VARIANT, UNRELATED, VARIANT.replace("midnight", "friday midnight"), "short"]
    clusters = near_duplicate_clusters(["p1", "p2", "p3", "p4", "p5"], texts)
    assert clusters.filter(pl.col("id").is_in(["p1", "p2", "p4"]))["cluster"].unique().to_list() == [0]
    assert clusters.filter(pl.col("id") == "p3")["cluster_size"].item() == 1
    assert clusters.filter(pl.col("id") == "p5")["cluster_size"].item() == 1
    pairs = near_duplicate_pairs(["p1", "p2", "p3"], texts[:3])
    assert pairs.select("left", "right").rows() == [("p1", "p2")]


def test_components_label_each_item_by_its_first_member():
    assert component_labels(5, np.array([3, 1]), np.array([4, 3])).tolist() == [0, 1, 2, 1, 1]
    frame = components_frame(["a", "b", "c"], np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    assert frame["cluster_size"].to_list() == [1, 1, 1]
    with pytest.raises(ValueError, match="positions"):
        component_labels(2, np.array([0]), np.array([2]))


def test_pair_metrics_report_precision_and_recall_per_threshold():
    metrics = pair_metrics([SPAM, SPAM], [VARIANT, UNRELATED], [True, False], [0.3, 0.95])
    low, high = metrics.row(0, named=True), metrics.row(1, named=True)
    assert (low["precision"], low["recall"]) == (1.0, 1.0)
    assert high["recall"] == 0.0
    with pytest.raises(ValueError, match="threshold"):
        TextMatchParams(threshold=0.0)
