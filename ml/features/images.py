"""What the pipeline reads from an image post once, and how an image post reaches the models.

`image_text` holds one row per distinct image file (its SHA-256): the text OCR read in it, with the
confidence, line count and time, and its PDQ codes (ml.matching.pdq.image_codes under
ORIGINAL_AND_MIRROR: reference original, reference mirror, robust original, robust mirror), so
neither OCR nor hashing ever sees an image twice (`read_images`). A file that is not an acceptable
image gets a row too, with `rejected` saying why (ml.images.decode), so it is not tried again.

An image post reaches the content classifier as text: its caption followed by the text in its image
(`image_post_text`), wherever content text is built for features, training and scoring. The risk model
also sees `IMAGE_FEATURES`: whether the item is an image, OCR's confidence and the image's share of the
text. (The PDQ codes are kept for hash-bank matching, ml/matching/banks.py.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from ml.images.decode import DecodedImage, DecodeLimits, ImageRejection, RejectReason, decode_image
from ml.images.ocr import OcrParams, OcrResult, read_sources, read_sources_on_ray
from ml.lake import Lake
from ml.matching.pdq import BITS, ORIGINAL_AND_MIRROR, codes_to_hex, image_codes

CODES_PER_IMAGE = 2 * len(ORIGINAL_AND_MIRROR)  # reference and robust, each as is and mirrored
CODE_BYTES = BITS // 8
IMAGE_TEXT_SCHEMA: dict[str, pl.DataType] = {
    "media_sha256": pl.String,
    "media_path": pl.String,
    "text": pl.String,  # what OCR read, lines in reading order ("" when nothing)
    "confidence": pl.Float64,  # mean recognition confidence of the lines kept (0 when none)
    "boxes": pl.Int32,  # lines read
    "seconds": pl.Float64,  # OCR time of this image
    "rejected": pl.String,  # why the file is not an image we read ("" when read)
    "pdq": pl.String,  # reference PDQ hash, ThreatExchange's hex ("" when rejected)
    "pdq_quality": pl.Int32,  # PDQ quality 0-100 (below 50: neither banked nor matched)
    "pdq_codes": pl.Binary,  # CODES_PER_IMAGE x 32 bytes (empty when rejected)
    "read_at": pl.Datetime("us"),  # when this image was read (naive UTC): once ever
}
# Fewer new images than this are read in the step's own process: OCR reads one in ~0.22 s on a core,
# and starting a local Ray cluster took 5-6 s of an ingest run (its log, 2 cores) before any actor, so a
# batch this small is done before Ray would be. Larger batches go to Ray actors, which on a cluster
# spread them over every node's cores.
RAY_MIN_IMAGES = 64
IMAGE_TEXT = "image_text"  # the table, under lake/features/image_text/date=D/ (the days the image was posted)
# What the risk model reads about images (ml/training/matrix.py), in the content_features table.
IMAGE_FEATURES: tuple[str, ...] = ("has_image", "ocr_confidence", "image_text_share")


def image_text_table(lake: Lake) -> pl.DataFrame:
    """Every image read so far, one row per distinct file (empty before the first read)."""
    if not lake.partitions(IMAGE_TEXT, root=lake.features):
        return pl.DataFrame(schema=IMAGE_TEXT_SCHEMA)
    return lake.read_table(IMAGE_TEXT, root=lake.features).drop("date").unique("media_sha256", keep="first")


def images_to_read(posted: pl.DataFrame, read: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What OCR still has to read: (the rows of `read`, the image_text table, that stand, and the distinct
    files of `posted` (rows with media_sha256) not among them). A file that was missing when last tried
    is tried again, since it may have arrived since; every other file, read or rejected, never is."""
    known = read.filter(pl.col("rejected") != str(RejectReason.UNREADABLE))
    new = posted.filter(~pl.col("media_sha256").is_in(known["media_sha256"].implode())).unique(
        "media_sha256", keep="first", maintain_order=True
    )
    return known, new


def read_images(
    paths: Sequence[Path],
    keys: Sequence[str],
    media_paths: Sequence[str],
    read_at: datetime,
    params: OcrParams = OcrParams(),
    limits: DecodeLimits = DecodeLimits(),
    on_ray: bool = True,
) -> pl.DataFrame:
    """`image_text` rows for image files: OCR on Ray actors (`read_sources_on_ray`, Ray connected by the
    caller; in this process when `on_ray` is False), then PDQ codes here. `keys` are their SHA-256s."""
    if not len(paths):
        return pl.DataFrame(schema=IMAGE_TEXT_SCHEMA)
    ocr = (read_sources_on_ray if on_ray else read_sources)(list(paths), params, limits)
    rows = []
    for key, media, path, result in zip(keys, media_paths, paths, ocr):
        decoded = decode_image(path, limits) if isinstance(result, OcrResult) else result
        row = {"media_sha256": key, "media_path": media, "read_at": read_at}
        if isinstance(decoded, ImageRejection):
            rows.append({**row, **_rejected(decoded)})
            continue
        rows.append({**row, **_read(result, decoded)})
    return pl.DataFrame(rows, schema=IMAGE_TEXT_SCHEMA)


def _rejected(rejection: ImageRejection) -> dict:
    return {
        "text": "",
        "confidence": 0.0,
        "boxes": 0,
        "seconds": 0.0,
        "rejected": str(rejection.reason),
        "pdq": "",
        "pdq_quality": 0,
        "pdq_codes": b"",
    }


def _read(result: OcrResult, decoded: DecodedImage) -> dict:
    codes, quality = image_codes(decoded.image, ORIGINAL_AND_MIRROR)
    return {
        "text": result.text,
        "confidence": result.confidence,
        "boxes": result.boxes,
        "seconds": result.seconds,
        "rejected": "",
        "pdq": codes_to_hex(codes[:1])[0],
        "pdq_quality": quality,
        "pdq_codes": codes.tobytes(),
    }


def codes_of(image_text: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(n, CODES_PER_IMAGE, 32) uint8 codes and (n,) qualities of `image_text` rows; a rejected image
    gets zero codes and quality 0 (below PDQ's floor, so it never matches)."""
    out = np.zeros((image_text.height, CODES_PER_IMAGE, CODE_BYTES), dtype=np.uint8)
    for i, blob in enumerate(image_text["pdq_codes"].to_list()):
        if blob:
            out[i] = np.frombuffer(blob, dtype=np.uint8).reshape(CODES_PER_IMAGE, CODE_BYTES)
    return out, image_text["pdq_quality"].fill_null(0).to_numpy().astype(np.int32)


def bank_codes(codes: np.ndarray) -> np.ndarray:
    """The codes a bank keeps of an image, (n, 2, 32): reference and robust of the image as it is."""
    return codes[:, [0, len(ORIGINAL_AND_MIRROR)]]


def image_post_text(frame: pl.DataFrame, image_text: pl.DataFrame | None) -> pl.DataFrame:
    """`frame` (rows with `text` and `media_sha256`) with each image post's text as the classifier reads
    it: the caption, then the text read in the image. Rows without an image, or whose image has no text
    (yet), keep their text; a frame without `media_sha256` (an external file of texts) is returned as is."""
    if image_text is None or "media_sha256" not in frame.columns or frame.is_empty():
        return frame
    read = image_text.select("media_sha256", pl.col("text").alias("_image_text")).unique("media_sha256")
    return (
        frame.join(read, on="media_sha256", how="left", maintain_order="left")
        .with_columns(text=caption_and_image_text(pl.col("text"), pl.col("_image_text")))
        .drop("_image_text")
    )


def caption_and_image_text(caption: pl.Expr, image_text: pl.Expr) -> pl.Expr:
    """The text an image post is classified on: its caption, then the text read in its image (the caption
    alone when the image has no text)."""
    combined = pl.concat_str([caption.fill_null(""), image_text], separator=" ").str.strip_chars()
    return pl.when(image_text.fill_null("") != "").then(combined).otherwise(caption)


def image_features(content: pl.DataFrame, image_text: pl.DataFrame | None) -> pl.DataFrame:
    """content_id, has_image, ocr_confidence and image_text_share (characters of the combined text that
    came from the image) for every row of raw `content`."""
    has_image = ((pl.col("media_type") == "image") if "media_type" in content.columns else pl.lit(False)).fill_null(
        False
    )
    base = content.select("content_id", "text", has_image.alias("has_image"), *_sha(content))
    read = (
        image_text.select("media_sha256", pl.col("text").alias("_read"), pl.col("confidence").alias("_confidence"))
        if image_text is not None
        else pl.DataFrame(schema={"media_sha256": pl.String, "_read": pl.String, "_confidence": pl.Float64})
    ).unique("media_sha256")
    joined = base.join(read, on="media_sha256", how="left", maintain_order="left")
    read_chars = pl.col("_read").fill_null("").str.len_chars()
    total = (pl.col("text").fill_null("").str.strip_chars().str.len_chars() + read_chars + 1).cast(pl.Float32)
    return joined.select(
        "content_id",
        pl.col("has_image").cast(pl.Int8),
        pl.col("_confidence").fill_null(0.0).cast(pl.Float32).alias("ocr_confidence"),
        pl.when(read_chars > 0).then(read_chars / total).otherwise(0.0).cast(pl.Float32).alias("image_text_share"),
    )


def _sha(content: pl.DataFrame) -> list[pl.Expr]:
    if "media_sha256" in content.columns:
        return [pl.col("media_sha256")]
    return [pl.lit(None, pl.String).alias("media_sha256")]


__all__ = [
    "CODES_PER_IMAGE",
    "IMAGE_FEATURES",
    "IMAGE_TEXT",
    "IMAGE_TEXT_SCHEMA",
    "bank_codes",
    "caption_and_image_text",
    "codes_of",
    "image_features",
    "image_post_text",
    "image_text_table",
    "images_to_read",
    "read_images",
]
