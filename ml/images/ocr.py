"""Text in images, read offline by rapidocr-onnxruntime 1.4.4 (PP-OCRv4 detection and recognition ONNX
weights ship inside its wheel; nothing is downloaded), one engine per process.

Settings (`OcrParams`), each measured on rendered corpus texts (docs/matching.md has the figures):
- detection sees the image at its own size, shrunk only when its longer side passes 960 px
  (`det_limit_type="max"`). The package default ("min", 736) *enlarges* a 640 x 360 upload to
  1308 x 736 first: that was 1.8x slower and doubled the character error rate on our renders.
- no text-angle classifier: uploads are upright, and it changed no output while costing time.
- ONNX Runtime runs one intra-op thread by default, so one engine fits a Ray task with
  `num_cpus=1`; a single process alone on a machine may pass more.
- spaces: the recogniser is the Chinese-and-English PP-OCR model, which often runs English words
  together ("memberofthe"). Its CTC decoder knows where each character sits on the line, in
  columns of 8 px at the model's 48 px line height, so a gap wider than `space_gap_columns`
  between two characters is read as a space. PaddleOCR's own word-box rule starts a word after a
  gap of 4 columns; measured on 60 renders, no restoration gave CER 5.6%, a gap of 4 11.4%, 5 4.9%,
  6 4.3%, 7 5.2%. It needs the recogniser's per-character positions, which rapidocr's one-call API
  flattens away, so `_read_lines` drives the engine's detector and recogniser itself; the package
  is pinned to the version this was written against.

`character_error_rate` is the measure used everywhere OCR is evaluated: edit distance between the
normalised reference and the normalised reading, divided by the reference length.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image
from rapidfuzz.distance import Levenshtein

from ml.images.decode import DecodeLimits, ImageRejection, decode_image
from ml.text import normalise


@dataclass(frozen=True)
class OcrParams:
    """How the OCR engine runs; the defaults are the measured choices in the module docstring."""

    intra_op_threads: int = 1
    det_limit_side_len: int = 960
    rec_batch_num: int = 16
    min_line_confidence: float = 0.5
    space_gap_columns: float = 6.0

    def __post_init__(self) -> None:
        if self.intra_op_threads < 1:
            raise ValueError(f"OcrParams.intra_op_threads must be at least 1, got {self.intra_op_threads}")
        if self.det_limit_side_len < 64:
            raise ValueError(f"OcrParams.det_limit_side_len must be at least 64 px, got {self.det_limit_side_len}")


@dataclass(frozen=True)
class OcrResult:
    """What OCR read in one image: lines joined in reading order (top to bottom, left to right),
    their mean recognition confidence (0.0 when no line was read), how many lines, and the time."""

    text: str
    confidence: float
    boxes: int
    seconds: float


class OcrEngine:
    """One loaded rapidocr engine (about 1 s to load, 15 MB of weights); reuse it for many images."""

    def __init__(self, params: OcrParams = OcrParams()) -> None:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:  # rapidocr needs opencv-python, which links the system's libGL and glib
            raise RuntimeError(
                f"the OCR engine cannot load ({exc}); on Debian or Ubuntu install the libraries OpenCV "
                "links against: apt-get install libgl1 libglib2.0-0"
            ) from exc

        self.params = params
        threads = params.intra_op_threads
        self._engine = RapidOCR(
            intra_op_num_threads=threads,
            inter_op_num_threads=1,
            det_limit_type="max",
            det_limit_side_len=params.det_limit_side_len,
            rec_batch_num=params.rec_batch_num,
            text_score=params.min_line_confidence,
            use_cls=False,
        )

    def read(self, image: Image.Image) -> OcrResult:
        """Read the text in an RGB image."""
        start = time.perf_counter()
        lines = self._read_lines(np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1]))
        kept = [(text, conf) for text, conf in lines if conf >= self.params.min_line_confidence and text]
        return OcrResult(
            text=" ".join(text for text, _ in kept),
            confidence=round(float(np.mean([c for _, c in kept])), 4) if kept else 0.0,
            boxes=len(kept),
            seconds=round(time.perf_counter() - start, 4),
        )

    def read_many(self, images: Iterable[Image.Image]) -> list[OcrResult]:
        return [self.read(image) for image in images]

    def _read_lines(self, bgr: np.ndarray) -> list[tuple[str, float]]:
        """(text, confidence) per detected line in reading order, spaces restored from the decoder's
        character positions. Mirrors RapidOCR.__call__ of 1.4.4 up to recognition."""
        engine = self._engine
        img, _, _ = engine.preprocess(bgr)  # only clamps sides to [30, 2000] px
        img, _ = engine.maybe_add_letterbox(img, {})  # pads a very flat strip the way __call__ does
        boxes, _ = engine.auto_text_det(img)  # sorted top to bottom, then left to right
        if boxes is None:
            return []
        recognised, _ = engine.text_rec(engine.get_crop_img_list(img, boxes), True)
        return [(self._spaced(info), float(conf)) for _, conf, info in recognised]

    def _spaced(self, info) -> str:
        _, words, columns, _, _ = info
        chars = [c for word in words for c in word]
        positions = [p for word in columns for p in word]
        out: list[str] = []
        for i, char in enumerate(chars):
            if (
                i
                and char != " "
                and chars[i - 1] != " "
                and positions[i] - positions[i - 1] > self.params.space_gap_columns
            ):
                out.append(" ")
            out.append(char)
        return " ".join("".join(out).split())


@cache
def engine_for(params: OcrParams = OcrParams()) -> OcrEngine:
    """This process's engine for `params`: loaded once, then shared (one engine per process)."""
    return OcrEngine(params)


def read_images(images: Iterable[Image.Image], params: OcrParams = OcrParams()) -> list[OcrResult]:
    """Read many images in this process with its one engine."""
    return engine_for(params).read_many(images)


def read_sources(
    sources: Sequence[bytes | Path], params: OcrParams = OcrParams(), limits: DecodeLimits = DecodeLimits()
) -> list[OcrResult | ImageRejection]:
    """Decode (safely, see ml.images.decode) and read each image file or upload; a source that is not an
    acceptable image comes back as its `ImageRejection`, in its place."""
    engine = engine_for(params)
    out: list[OcrResult | ImageRejection] = []
    for source in sources:
        decoded = decode_image(source, limits)
        out.append(decoded if isinstance(decoded, ImageRejection) else engine.read(decoded.image))
    return out


class _OcrWorker:
    """A Ray actor body: one engine per worker process, loaded when the actor starts."""

    def __init__(self, params: OcrParams, limits: DecodeLimits) -> None:
        self.params, self.limits = params, limits
        engine_for(params)

    def read(self, sources: list[bytes | Path]) -> list[OcrResult | ImageRejection]:
        return read_sources(sources, self.params, self.limits)


def read_sources_on_ray(
    sources: Sequence[bytes | Path],
    params: OcrParams = OcrParams(),
    limits: DecodeLimits = DecodeLimits(),
    workers: int | None = None,
    batch_size: int = 8,
) -> list[OcrResult | ImageRejection]:
    """`read_sources` spread over Ray actors (each `num_cpus=1`, one engine each), results in input order.

    Ray must already be connected in this process (the orchestration's Ray resource connects to a
    local cluster or to RAY_ADDRESS). `workers` defaults to the cluster's CPUs; asking for more than
    the cluster has fails here rather than waiting forever for a placement. Paths must be readable
    from every worker (a shared lake); pass bytes otherwise.
    """
    import ray
    from ray.util import ActorPool

    if not ray.is_initialized():
        raise RuntimeError("read_sources_on_ray needs a connected Ray (ray.init(...) or the Ray resource) first")
    if not sources:
        return []
    cpus = int(ray.cluster_resources().get("CPU", 0))
    per_worker = max(1, params.intra_op_threads)
    workers = workers or max(1, cpus // per_worker)
    if workers * per_worker > cpus:
        raise ValueError(
            f"{workers} OCR workers x {per_worker} CPU each need {workers * per_worker} CPUs; the Ray cluster has {cpus}"
        )
    batches = [list(sources[i : i + batch_size]) for i in range(0, len(sources), batch_size)]
    worker = ray.remote(num_cpus=per_worker)(_OcrWorker)
    actors = [worker.remote(params, limits) for _ in range(min(workers, len(batches)))]
    try:
        pool = ActorPool(actors)
        return [result for batch in pool.map(lambda actor, b: actor.read.remote(b), batches) for result in batch]
    finally:
        for actor in actors:
            ray.kill(actor)


def results_frame(keys: Sequence[str], results: Sequence[OcrResult | ImageRejection]) -> pl.DataFrame:
    """One row per image: key (e.g. its sha256), text, confidence, boxes, seconds, and `rejected` (the
    rejection reason, "" when read) - the shape of the `image_text` table."""
    if len(keys) != len(results):
        raise ValueError(f"results_frame: {len(keys)} keys for {len(results)} results")
    read = [r if isinstance(r, OcrResult) else OcrResult("", 0.0, 0, 0.0) for r in results]
    return pl.DataFrame(
        {
            "key": list(keys),
            "text": [r.text for r in read],
            "confidence": [r.confidence for r in read],
            "boxes": [r.boxes for r in read],
            "seconds": [r.seconds for r in read],
            "rejected": [str(r.reason) if isinstance(r, ImageRejection) else "" for r in results],
        },
        schema={
            "key": pl.String,
            "text": pl.String,
            "confidence": pl.Float64,
            "boxes": pl.Int32,
            "seconds": pl.Float64,
            "rejected": pl.String,
        },
    )


def cer_form(text: str) -> str:
    """The form CER compares: `ml.text.normalise` (NFKC, HTML entities, case folded, one space) without
    pictographs and box-drawing signs (Unicode "other symbols": emoji, hearts, bars) and emoji
    variation selectors, which carry no text for the classifier and which OCR rightly does not read."""
    kept = "".join(c for c in normalise(text) if unicodedata.category(c) != "So" and not 0xFE00 <= ord(c) <= 0xFE0F)
    return " ".join(kept.split())


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Edit distance between the normalised texts over the normalised reference's length (0.0 for two
    empty texts; a reading of an empty reference costs its own length)."""
    ref, hyp = cer_form(reference), cer_form(hypothesis)
    if not ref:
        return float(len(hyp) > 0)
    return Levenshtein.distance(ref, hyp) / len(ref)


__all__ = [
    "OcrEngine",
    "OcrParams",
    "OcrResult",
    "character_error_rate",
    "engine_for",
    "read_images",
    "read_sources",
    "read_sources_on_ray",
    "results_frame",
]
