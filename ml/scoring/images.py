"""Images in online scoring: decode, OCR and PDQ-hash request images off the text path, and match banks.

An image item of `POST /v1/score` is read here before it is scored like any text (its caption plus
the text OCR found in it). Reading costs 0.5-1 s of CPU per image against a few milliseconds for a
text, so it has its own bounded pool and limits, and an image burst can never hold up text:
- `image_threads` threads read images (OCR with one ONNX thread each, so the other cores keep
  scoring text); text scoring never waits for this pool (ml/scoring/batching.py has its own);
- at most `image_max_waiting` images are waiting or being read at once; a request whose images do
  not fit is refused at once with 503 and Retry-After, rather than queueing behind a burst;
- an image not read within `image_timeout_s` of its request's arrival is answered 504 (its
  thread finishes the image and is then free; the waiting bound counts it until then).

Decoding is `ml.images.decode_image`, the one place that decides what is an image: each typed
rejection becomes a 4xx naming the item and the reason (over the byte limit: 413; a format we do
not take: 415; empty, truncated, corrupt, not an image, a decompression bomb: 422). An animated
image is read from its first frame and the answer says so.

Known-bad matching reads the `hash_banks` table through ml/matching's API (`entries_from_frame`,
`BankIndex`): the PDQ codes of the image (and its mirror) against every PDQ bank at
`ml.matching.threshold.DEFAULT_RADIUS`, and the image text and the caption against every text bank.
The table is re-read when its files change; with no table, matches are empty.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from ml.images.decode import DecodedImage, DecodeLimits, ImageRejection, RejectReason, decode_image
from ml.matching.bank_matches import bank_features_of
from ml.matching.banks import BankIndex, entries_from_frame
from ml.matching.pdq import ORIGINAL_AND_MIRROR, image_codes
from ml.matching.threshold import DEFAULT_RADIUS

# HTTP status of each rejection: too many bytes is the body's size, a known format we refuse is the
# media type; everything else is content that cannot be processed as sent.
REJECTION_STATUS: dict[RejectReason, int] = {RejectReason.TOO_LARGE: 413, RejectReason.UNSUPPORTED_FORMAT: 415}
ANIMATED_NOTE = "animated image: only its first frame was read"


class ImageRefused(Exception):
    """An image request answered with an error: `status`, and the JSON `body` to send."""

    def __init__(self, status: int, body: dict[str, Any], retry_after_s: int | None = None):
        super().__init__(body.get("error", ""))
        self.status, self.body, self.retry_after_s = status, body, retry_after_s


@dataclass(frozen=True)
class ImageRead:
    """What reading one image gave: the decoded picture's facts, its OCR text and its PDQ codes."""

    decoded: DecodedImage
    text: str
    confidence: float
    boxes: int
    quality: int  # PDQ's
    matches: list[dict[str, Any]]  # bank entries the image (PDQ) or its caption and text (near-duplicate) match
    # The risk model's BANK_FEATURES as batch scoring builds them (the image by PDQ, the text read in it by
    # near-duplicate; not the caption), or None when no bank was loaded to search.
    bank_features: tuple[int, float] | None = None

    def facts(self) -> dict[str, Any]:
        d = self.decoded
        out: dict[str, Any] = {
            "sha256": d.sha256,
            "format": d.format,
            "width": d.width,
            "height": d.height,
            "bytes": d.byte_size,
            "animated": d.animated,
            "ocr_text": self.text,
            "ocr_confidence": self.confidence,
            "ocr_lines": self.boxes,
            "pdq_quality": self.quality,
        }
        if d.animated:
            out["note"] = ANIMATED_NOTE
        return out


class BankSource:
    """The `BankIndex` of the hash-bank table under `directory` (Parquet files in `entries_frame`'s
    shape), rebuilt when the files change; None while there is no table."""

    def __init__(self, directory: Path | None):
        self.directory = directory
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._index: BankIndex | None = None

    def _files(self) -> list[Path]:
        if self.directory is None or not self.directory.is_dir():
            return []
        return sorted(self.directory.rglob("*.parquet"))

    def index(self) -> BankIndex | None:
        files = self._files()
        stamp = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
        with self._lock:
            if stamp != self._stamp:
                frame = pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed") if files else None
                self._index = BankIndex(entries_from_frame(frame)) if frame is not None and frame.height else None
                self._stamp = stamp
            return self._index


class ImageReader:
    """Reads request images in its own bounded pool; `read(images)` answers or raises `ImageRefused`."""

    def __init__(
        self,
        threads: int,
        max_waiting: int,
        timeout_s: float,
        decode_limits: DecodeLimits,
        banks: BankSource,
        retry_after_s: int = 1,
        ocr=None,
    ):
        self.decode_limits, self.timeout_s, self.banks = decode_limits, timeout_s, banks
        self.max_waiting, self.retry_after_s = max_waiting, retry_after_s
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="image")
        self._waiting = 0  # images queued or being read, until their thread is done with them
        self._waiting_lock = threading.Lock()
        self._local = threading.local()
        self._ocr = ocr  # an object with .read(image) -> OcrResult; None: one OcrEngine per thread

    def _engine(self):
        if self._ocr is not None:
            return self._ocr
        engine = getattr(self._local, "engine", None)
        if engine is None:
            from ml.images.ocr import OcrEngine  # onnxruntime and OpenCV: loaded by the first image only

            engine = self._local.engine = OcrEngine()
        return engine

    def _read_one(self, data: bytes, caption: str) -> ImageRead | ImageRejection:
        """In an image thread: decode, OCR, hash and match one image."""
        decoded = decode_image(data, self.decode_limits)
        if isinstance(decoded, ImageRejection):
            return decoded
        result = self._engine().read(decoded.image)
        codes, quality = image_codes(decoded.image, ORIGINAL_AND_MIRROR)
        index = self.banks.index()
        if index is None:
            return ImageRead(decoded, result.text, result.confidence, result.boxes, quality, [])
        matches = self._matches(index, codes, quality, {"image_text": result.text, "caption": caption})
        features = bank_features_of([m for m in matches if m["kind"] == "pdq" or m.get("of") == "image_text"])
        return ImageRead(decoded, result.text, result.confidence, result.boxes, quality, matches, features)

    def _matches(
        self, index: BankIndex, codes: np.ndarray, quality: int, texts: dict[str, str]
    ) -> list[dict[str, Any]]:
        """PDQ matches of the image, and near-duplicate matches of its text and of its caption, each
        on its own (a banked image's entry is the text read in it, which a caption would dilute); a text
        match says which text matched (`of`: image_text or caption)."""
        out = []
        for row in index.match_images(codes[None], np.array([quality]), DEFAULT_RADIUS).iter_rows(named=True):
            source = index.entries[row["entry"]].provenance.source
            out.append({"bank": row["bank"], "policy": row["policy"], "kind": "pdq", "distance": row["distance"]})
            out[-1]["source"] = source
        which = [name for name, text in texts.items() if text.strip()]
        found = index.match_texts([texts[name] for name in which]) if which else None
        if found is None or found.height == 0:
            return out
        found = found.with_columns(of=pl.col("query").replace_strict(dict(enumerate(which)), return_dtype=pl.String))
        best = found.group_by("bank", "policy", "entry", "of").agg(pl.col("jaccard").max()).sort("entry", "of")
        for row in best.iter_rows(named=True):
            source = index.entries[row["entry"]].provenance.source
            jaccard = round(row["jaccard"], 4)
            out.append({"bank": row["bank"], "policy": row["policy"], "kind": "text", "jaccard": jaccard})
            out[-1].update(of=row["of"], source=source)
        return out

    def decode_base64(self, position: int, value: str) -> bytes:
        """The bytes of item `position`'s image; refused before decoding when plainly over the limit."""
        limit = self.decode_limits.max_bytes
        if len(value) // 4 * 3 > limit + 2:
            raise _refusal(
                position,
                RejectReason.TOO_LARGE,
                f"the image has about {len(value) // 4 * 3:,} bytes, "
                f"more than the limit of {limit:,}; compress or scale it down",
            )
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageRefused(
                422,
                {"error": "invalid request", "problems": [f"items.{position}.image: not valid base64 ({exc})"]},
            ) from exc

    async def read(self, images: dict[int, tuple[bytes, str]]) -> dict[int, ImageRead]:
        """Read every image (item position -> (bytes, caption)) in the image pool, within the waiting
        bound and the timeout; the first rejection (in item order) refuses the request."""
        if len(images) > self.max_waiting:  # would never fit: say so rather than ask for a retry
            raise ImageRefused(
                422,
                {"error": f"{len(images)} images in one request; send at most {self.max_waiting} per request"},
            )
        with self._waiting_lock:
            waiting = self._waiting
            if waiting + len(images) <= self.max_waiting:
                self._waiting += len(images)
        if waiting + len(images) > self.max_waiting:
            raise ImageRefused(
                503,
                {"error": f"image reading busy: {waiting} images waiting (at most {self.max_waiting}); retry later"},
                self.retry_after_s,
            )
        futures = {}
        for position, (data, caption) in images.items():
            # Released when the thread is done with the image (or it is cancelled before it starts),
            # not when the request stops waiting: a timed-out image still occupies its thread.
            work = self._pool.submit(self._read_one, data, caption)
            work.add_done_callback(self._release)
            futures[position] = asyncio.wrap_future(work)
        try:
            async with asyncio.timeout(self.timeout_s):
                results = dict(zip(futures, await asyncio.gather(*futures.values())))
        except TimeoutError:
            raise ImageRefused(
                504, {"error": f"the image(s) could not be read within {self.timeout_s:g} s; retry later"}
            ) from None
        for position, result in sorted(results.items()):
            if isinstance(result, ImageRejection):
                raise _refusal(position, result.reason, result.message)
        return results

    def _release(self, _future) -> None:
        with self._waiting_lock:
            self._waiting -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _refusal(position: int, reason: RejectReason, message: str) -> ImageRefused:
    return ImageRefused(
        REJECTION_STATUS.get(reason, 422),
        {"error": "image refused", "reason": str(reason), "problems": [f"items.{position}.image: {reason}: {message}"]},
    )
