"""The image and known-bad paths' evaluation (ml/evaluation/matching.py) on small sets built here."""

import numpy as np
import polars as pl
import pytest

from ml.evaluation import matching
from ml.features.images import image_codes
from ml.images.render import render_text_image
from ml.matching.pdq import ORIGINAL_AND_MIRROR

pytestmark = pytest.mark.unit

TEXTS = [
    "free gift card for the first fifty people who call 555 0199 today",
    "you are the worst person on this whole app and everyone knows it",
    "win an iphone now just click the link in my bio and enter your details",
    "limited offer cheap followers and likes message me for the price list",
    "your account was locked verify your password at the page below",
    "meet hot singles in your area tonight no signup needed just tap here",
]


def test_ocr_error_is_grouped_by_each_perturbation_an_image_carries():
    truth = pl.DataFrame(
        {
            "content_id": [1, 2, 3],
            "media_sha256": ["a", "b", "c"],
            "kind": ["text", "text", "picture"],
            "drawn_text": ["hello world", "abcdefghij", ""],
            "perturbations": ["blur+jpeg", "jpeg", "blur"],
            "original_sha256": [None, None, None],
        }
    )
    read = pl.DataFrame({"media_sha256": ["a", "b", "c"], "text": ["hello world", "abcdefghiX", ""], "rejected": ""})
    cer = {r["perturbation"]: r for r in matching.ocr_error_by_perturbation(truth, read).iter_rows(named=True)}
    assert cer["blur"]["images"] == 1 and cer["blur"]["mean_cer"] == 0.0  # the picture has no text to read
    assert cer["jpeg"]["images"] == 2 and cer["jpeg"]["mean_cer"] == pytest.approx(0.05)
    assert cer["all"]["images"] == 2 and cer["all"]["mean_cer"] == pytest.approx(0.05)
    assert matching.overall_cer(matching.ocr_error_by_perturbation(truth, read)) == pytest.approx(0.05)


def test_pdq_evaluation_finds_re_uploads_and_no_benign_image_at_the_radius():
    rng = np.random.default_rng(0)
    originals = [render_text_image(t, rng).image for t in TEXTS]
    benign = matching.benign_images(40, ["a lovely day at the beach with my family and friends"] * 16)
    evaluation = matching.pdq_evaluation(originals, benign)
    at = evaluation.table.filter(pl.col("radius") == 18).row(0, named=True)
    assert at["recall_mirror"] == 1.0 and at["recall_recompress"] == 1.0
    assert at["false_matches"] == 0
    assert evaluation.benign == 40 and evaluation.bank_size == len(originals)


def test_re_uploads_in_the_lake_are_matched_against_their_originals_codes():
    rng = np.random.default_rng(1)
    image = render_text_image(TEXTS[0], rng).image
    other = render_text_image(TEXTS[3], rng).image
    mirrored = image.transpose(0)  # FLIP_LEFT_RIGHT

    def row(sha, im):
        codes, quality = image_codes(im, ORIGINAL_AND_MIRROR)
        return {"media_sha256": sha, "pdq_codes": codes.tobytes(), "pdq_quality": int(quality)}

    read = pl.DataFrame([row("o", image), row("m", mirrored), row("x", other)])
    truth = pl.DataFrame(
        {"media_sha256": ["m", "x"], "original_sha256": ["o", "o"], "evasion": ["mirror", "crop"]},
    )
    recall = dict(matching.lake_reupload_recall(truth, read).select("evasion", "matched").iter_rows())
    assert recall == {"crop": 0.0, "mirror": 1.0}  # a different image is no copy


def test_campaign_variants_are_found_and_distinct_texts_are_not():
    rng = np.random.default_rng(2)
    # letters only: the matching form masks digits, so "w1x" and "w2x" would be one word
    words = ["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 6)) for _ in range(300)]
    texts = [" ".join(rng.choice(words, 14)) + f" call {rng.integers(10**6, 10**7)}" for _ in range(200)]
    metrics = matching.near_duplicate_evaluation(texts).filter(pl.col("threshold") == 0.5).row(0, named=True)
    assert metrics["copies"] == 100 and metrics["pairs"] == 200
    assert metrics["recall"] > 0.8
    assert metrics["precision"] == 1.0
