"""How well the image and known-bad paths work, measured on the lake's own images and texts.

- OCR: the character error rate of every text image the simulator posted, by the perturbation it was
  posted with (what `image_text` read against what was drawn: no image is read again).
- What OCR costs the content classifier: its macro PR-AUC on the image posts' texts as OCR read them
  against the same texts posted as text (the label is the corpus text's).
- PDQ: recall of every evasion at the matching radius, with the lake's text images as banked
  originals each re-uploaded under every evasion, and the rate at which distinct benign images
  (rendered from a fixed seed, pictures and benign-text renders) match any of them. The ring
  re-uploads actually in the lake are reported beside it (few, but real).
- Text near-duplicates: recall and precision of the text banks' matching on campaign variants of the
  lake's spam and scam texts (`campaign_variant`), against pairs of distinct such texts.

`bench/matching.py` measures the same on rendered corpus texts at bench sizes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ml.images.decode import DecodeLimits, ImageRejection, decode_image
from ml.images.ocr import character_error_rate
from ml.images.render import render_benign_image, render_text_image
from ml.images.transforms import EVASIONS, TRANSFORMS, UPLOAD_PERTURBATIONS, apply_transforms
from ml.matching.pdq import ORIGINAL_AND_MIRROR
from ml.matching.text import TextMatchParams, pair_metrics
from ml.matching.threshold import DEFAULT_RADIUS, RadiusEvaluation, evaluate_radii, hash_images
from ml.taxonomy import POLICIES
from ml.training.metrics import macro_pr_auc, pr_auc_by_policy

TEXT_THRESHOLDS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)


def ocr_error_by_perturbation(truth: pl.DataFrame, read: pl.DataFrame) -> pl.DataFrame:
    """Per upload perturbation: text images posted with it, their mean and median character error rate.
    `truth` is `image_truth` (drawn_text, perturbations "a+b"), `read` is `image_text` (text, rejected);
    an image carrying several perturbations counts under each, and under "all" once."""
    rows = (
        truth.filter(pl.col("kind") == "text", pl.col("original_sha256").is_null())
        .unique("media_sha256")
        .join(read.filter(pl.col("rejected") == "").select("media_sha256", "text"), on="media_sha256")
    )
    cer = [character_error_rate(d, t) for d, t in zip(rows["drawn_text"].to_list(), rows["text"].to_list())]
    scored = rows.select(pl.col("perturbations").fill_null("").str.split("+").alias("perturbation")).with_columns(
        pl.Series("cer", cer, dtype=pl.Float64)
    )
    by = (
        scored.explode("perturbation")
        .with_columns(
            pl.when(pl.col("perturbation") == "").then(pl.lit("none")).otherwise("perturbation").alias("perturbation")
        )
        .group_by("perturbation")
        .agg(
            pl.len().alias("images"), pl.col("cer").mean().alias("mean_cer"), pl.col("cer").median().alias("median_cer")
        )
        .sort("perturbation")
    )
    overall = scored.select(
        pl.lit("all").alias("perturbation"),
        pl.len().cast(pl.UInt32).alias("images"),
        pl.col("cer").mean().alias("mean_cer"),
        pl.col("cer").median().alias("median_cer"),
    )
    return pl.concat([by, overall])


def overall_cer(by_perturbation: pl.DataFrame) -> float:
    """The mean character error rate over every text image (the "all" row of `ocr_error_by_perturbation`)."""
    return float(by_perturbation.filter(pl.col("perturbation") == "all")["mean_cer"][0])


@dataclass(frozen=True)
class OcrCost:
    """The content classifier on the same texts posted as text and read from images by OCR."""

    posts: int
    as_text: dict[str, float]  # PR-AUC per policy (NaN where a policy has no post)
    through_ocr: dict[str, float]

    @property
    def macro_as_text(self) -> float:
        return macro_pr_auc(self.as_text)

    @property
    def macro_through_ocr(self) -> float:
        return macro_pr_auc(self.through_ocr)


def ocr_cost(predict_proba, truth: pl.DataFrame, read: pl.DataFrame, content_truth: pl.DataFrame) -> OcrCost:
    """`predict_proba` maps a frame with a `text` column to probabilities over POLICIES (the content
    classifier's text-only scorer). Every text image post, scored on its drawn text and on its OCR text."""
    posts = (
        truth.filter(pl.col("kind") == "text")
        .join(
            read.filter(pl.col("rejected") == "").select("media_sha256", pl.col("text").alias("ocr_text")),
            on="media_sha256",
        )
        .join(content_truth.select("content_id", "true_policy"), on="content_id")
    )
    labels = posts["true_policy"].replace_strict(POLICIES, list(range(len(POLICIES)))).to_numpy()
    as_text = predict_proba(posts.select(pl.col("drawn_text").alias("text")))
    through_ocr = predict_proba(posts.select(pl.col("ocr_text").alias("text")))
    return OcrCost(posts.height, pr_auc_by_policy(labels, as_text), pr_auc_by_policy(labels, through_ocr))


def original_text_images(truth: pl.DataFrame, content: pl.DataFrame) -> pl.DataFrame:
    """The lake's distinct text images as first posted (not ring re-uploads): media_sha256, media_path."""
    firsts = truth.filter(pl.col("kind") == "text", pl.col("original_sha256").is_null()).select("content_id")
    return (
        content.join(firsts, on="content_id")
        .select("media_sha256", "media_path")
        .unique("media_sha256")
        .sort("media_sha256")
    )


def decode_all(paths: list[Path], limits: DecodeLimits = DecodeLimits()) -> list:
    """The images of `paths`, decoded safely; files that are not acceptable images are left out."""
    images = []
    for path in paths:
        decoded = decode_image(Path(path), limits)
        if not isinstance(decoded, ImageRejection):
            images.append(decoded.image)
    return images


def benign_images(n: int, benign_texts: list[str], seed: int = 5) -> list:
    """`n` distinct benign images: rendered pictures, and renders of benign texts (two in five) with an
    upload perturbation each, as the false-match denominator."""
    rng = np.random.default_rng(seed)
    texts = benign_texts[: n * 2 // 5]
    images = [render_benign_image(rng).image for _ in range(n - len(texts))]
    images += [
        apply_transforms(render_text_image(t, rng).image, [str(rng.choice(UPLOAD_PERTURBATIONS))], rng) for t in texts
    ]
    return images


def pdq_evaluation(originals: list, benign: list, seed: int = 3) -> RadiusEvaluation:
    """Recall of each evasion (every original re-uploaded under it) and the benign false-match rate, per
    radius (`ml.matching.threshold.evaluate_radii`)."""
    rng = np.random.default_rng(seed)
    banked = hash_images(originals)
    reuploads = {
        name: hash_images([TRANSFORMS[name].apply(image, rng) for image in originals], ORIGINAL_AND_MIRROR)
        for name in EVASIONS
    }
    return evaluate_radii(banked, reuploads, hash_images(benign, ORIGINAL_AND_MIRROR))


def lake_reupload_recall(truth: pl.DataFrame, read: pl.DataFrame, radius: int = DEFAULT_RADIUS) -> pl.DataFrame:
    """The ring re-uploads in the lake: per evasion, how many there are and the share within `radius`
    of their original (closest of the re-upload's as-is and mirrored codes to the original's reference
    and robust codes, from `image_text`), beside the count whose original PDQ could not vouch for."""
    from ml.features.images import bank_codes, codes_of
    from ml.matching.pdq import MIN_QUALITY
    from ml.matching.threshold import own_distances

    copies = truth.filter(pl.col("original_sha256").is_not_null())
    codes = read.select("media_sha256", pl.col("pdq_codes").fill_null(b""), "pdq_quality")
    pairs = copies.join(codes, on="media_sha256").join(
        codes.rename(
            {"media_sha256": "original_sha256", "pdq_codes": "original_codes", "pdq_quality": "original_quality"}
        ),
        on="original_sha256",
    )
    if pairs.is_empty():
        return pl.DataFrame(schema={"evasion": pl.String, "reuploads": pl.UInt32, "matched": pl.Float64})
    q_codes, q_quality = codes_of(pairs.select("pdq_codes", "pdq_quality"))
    o_codes, o_quality = codes_of(
        pairs.select(pl.col("original_codes").alias("pdq_codes"), pl.col("original_quality").alias("pdq_quality"))
    )
    distance = own_distances(bank_codes(o_codes), q_codes)
    usable = (q_quality >= MIN_QUALITY) & (o_quality >= MIN_QUALITY)
    return (
        pairs.select(pl.col("evasion").fill_null("none"))
        .with_columns(pl.Series("hit", usable & (distance <= radius)))
        .group_by("evasion")
        .agg(pl.len().alias("reuploads"), pl.col("hit").mean().alias("matched"))
        .sort("evasion")
    )


# --- text --------------------------------------------------------------------------------------------

_EMOJI = ["🔥", "💰", "👉", "✅", "😀", "!!!", "🎉"]
_SWAPS = {"free": "FREE", "win": "w1n", "click": "tap", "now": "today", "call": "ring", "you": "u", "your": "ur"}


def campaign_variant(text: str, rng: np.random.Generator) -> str:
    """A ring's per-post rewrite of a text: new numbers and link, a word or two swapped or dropped,
    emoji and punctuation, case."""
    text = re.sub(r"\d", lambda m: str(int(rng.integers(0, 10))), text)
    text = re.sub(r"(https?://\S+|www\.\S+)", lambda m: f"http://bit.ly/{rng.integers(10**5, 10**6)}", text)
    words = text.split()
    for _ in range(int(rng.integers(1, 3))):
        if len(words) > 4:
            i = int(rng.integers(len(words)))
            action = int(rng.integers(3))
            if action == 0:
                words[i] = _SWAPS.get(words[i].lower(), words[i].upper())
            elif action == 1:
                del words[i]
            else:
                words.insert(i, str(rng.choice(_EMOJI)))
    out = " ".join(words)
    if rng.random() < 0.5:
        out = out + " " + str(rng.choice(_EMOJI))
    return out.lower() if rng.random() < 0.3 else out


def near_duplicate_evaluation(
    texts: list[str],
    seed: int = 11,
    thresholds: tuple[float, ...] = TEXT_THRESHOLDS,
    params: TextMatchParams = TextMatchParams(),
) -> pl.DataFrame:
    """Precision and recall per Jaccard threshold: the first half of `texts` paired with a campaign variant
    of itself (copies), and with the second half's texts (distinct texts, not copies)."""
    rng = np.random.default_rng(seed)
    half = len(texts) // 2
    left = texts[:half] + texts[:half]
    right = [campaign_variant(t, rng) for t in texts[:half]] + texts[half : 2 * half]
    return pair_metrics(left, right, [True] * half + [False] * half, thresholds, params)


__all__ = [
    "OcrCost",
    "benign_images",
    "campaign_variant",
    "decode_all",
    "lake_reupload_recall",
    "near_duplicate_evaluation",
    "ocr_cost",
    "ocr_error_by_perturbation",
    "original_text_images",
    "overall_cer",
    "pdq_evaluation",
]
