"""The images of a file scored offline (`trustlake score --image-column`): each row's image path is read
safely (ml.images.decode) and its text by OCR (ml.images.ocr, in this process), so the row is scored on
its caption followed by the text in its image, as the pipeline scores an image post.

A bad image never stops the file and never loses its row: the row is scored on its caption alone and
flagged in `image_flag` with the reason (ml.images.decode.RejectReason: empty, unreadable, too_large,
not_an_image, unsupported_format, too_many_pixels, truncated, corrupt). An animated image is read from
its first frame and flagged `animated_first_frame`, so nobody takes it for the whole animation. A
relative path is taken from the input file's folder; an empty cell is a row without an image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from ml.images.decode import DecodedImage, DecodeLimits, decode_image
from ml.images.ocr import OcrParams, engine_for

ANIMATED = "animated_first_frame"
IMAGE_COLUMNS_SCHEMA: dict[str, pl.DataType] = {"image_text": pl.String, "image_flag": pl.String}


def read_image_column(
    paths: Sequence[str | None], base: Path, params: OcrParams = OcrParams(), limits: DecodeLimits = DecodeLimits()
) -> pl.DataFrame:
    """One row per path, in order: `image_text` (what OCR read; null without a readable image) and
    `image_flag` (why the image was not read, or that only its first frame was; null when all is well)."""
    text: list[str | None] = []
    flag: list[str | None] = []
    engine = None
    for raw in paths:
        if raw is None or not raw.strip():
            text.append(None)
            flag.append(None)
            continue
        path = Path(raw.strip())
        decoded = decode_image(path if path.is_absolute() else Path(base) / path, limits)
        if not isinstance(decoded, DecodedImage):
            text.append(None)
            flag.append(str(decoded.reason))
            continue
        engine = engine or engine_for(params)
        text.append(engine.read(decoded.image).text)
        flag.append(ANIMATED if decoded.animated else None)
    return pl.DataFrame({"image_text": text, "image_flag": flag}, schema=IMAGE_COLUMNS_SCHEMA)


__all__ = ["ANIMATED", "IMAGE_COLUMNS_SCHEMA", "read_image_column"]
