"""Choosing the PDQ match radius from data: recall on evasive re-uploads against false matches on
distinct benign images.

ThreatExchange matches PDQ hashes at distance <= 31 of 256 bits. Whether that suits a platform
depends on its images (templated memes and screenshots sit closer together than photos) and on the
evasions its ring accounts use, so the radius is measured: `evaluate_radii` takes the hashes of
banked originals, of their re-uploads under each named transform, and of distinct benign images, and
tabulates per radius the recall per transform and the false-match rate; `choose_radius` takes the
largest radius whose false-match rate stays within a bound. The pipeline runs both on the
simulator's images; bench/matching.py on rendered ones.

Quality gate as in matching: an original below PDQ's quality floor is never banked (its re-uploads
leave the recall denominators), a re-upload below it is never queried (a miss), a benign image
below it is never queried (cannot false-match).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import faiss
import numpy as np
import polars as pl
from PIL import Image

from ml.matching.pdq import (
    BITS,
    MIN_QUALITY,
    THREATEXCHANGE_THRESHOLD,
    Dihedral,
    image_codes,
)

# The radius matching uses until the pipeline measures its own with choose_radius: what choose_radius
# picked in bench/matching.py (2,000 distinct benign renders and pictures against 299 banked memes,
# screenshots and flyers; docs/matching.md). Above it, benign chat screenshots start matching banked
# ones: a short chat shrunk to PDQ's 64 x 64 is mostly its app's layout.
DEFAULT_RADIUS = 18
DEFAULT_RADII: tuple[int, ...] = tuple(range(0, 65, 2)) + (31,)
# A benign upload wrongly matching a bank at most once in a thousand: every false match removes
# someone's post before a person looks at it.
MAX_FALSE_MATCH_RATE = 0.001


@dataclass(frozen=True)
class HashedImages:
    """PDQ codes of a set of images: `codes` (n, k, 32) uint8, k codes per image (1 for banked
    images; as-is and trimmed, each with its mirror, for queries), and `quality` (n,) int."""

    codes: np.ndarray
    quality: np.ndarray

    def __len__(self) -> int:
        return len(self.quality)

    @property
    def trusted(self) -> np.ndarray:
        return self.quality >= MIN_QUALITY


def hash_images(images: Iterable[Image.Image], variants: Sequence[Dihedral] = (Dihedral.ORIGINAL,)) -> HashedImages:
    """Codes of each image (`ml.matching.pdq.image_codes`): (ORIGINAL,) for banked images,
    ORIGINAL_AND_MIRROR for the uploads looked up against them."""
    codes, quality = [], []
    for image in images:
        c, q = image_codes(image, variants)
        codes.append(c)
        quality.append(q)
    stacked = np.stack(codes) if codes else np.zeros((0, 2 * len(variants), BITS // 8), np.uint8)
    return HashedImages(stacked, np.array(quality, dtype=np.int32))


def _flat_index(bank: np.ndarray):
    flat = faiss.IndexBinaryFlat(BITS)
    flat.add(np.ascontiguousarray(bank.reshape(-1, bank.shape[-1]), dtype=np.uint8))
    return flat


def nearest_distances(bank: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """For (m, kq, 32) query codes and (n, kb, 32) bank codes, each query's distance to its nearest
    bank entry over all code pairs; BITS + 1 when the bank is empty."""
    m, kq = queries.shape[:2]
    if len(bank) == 0 or m == 0:
        return np.full(m, BITS + 1, dtype=np.int32)
    distances, _ = _flat_index(bank).search(np.ascontiguousarray(queries.reshape(m * kq, -1), dtype=np.uint8), 1)
    return distances.reshape(m, kq).min(axis=1).astype(np.int32)


def pair_distances(bank: np.ndarray, queries: np.ndarray, radius: int) -> np.ndarray:
    """Distances of all (query, bank entry) pairs within `radius`, each pair once (its closest codes)."""
    m, kq = queries.shape[:2]
    if len(bank) == 0 or m == 0:
        return np.zeros(0, dtype=np.int32)
    kb = bank.shape[1]
    limits, distances, labels = _flat_index(bank).range_search(
        np.ascontiguousarray(queries.reshape(m * kq, -1), dtype=np.uint8), radius + 1
    )
    rows = np.repeat(np.arange(m * kq, dtype=np.int64) // kq, np.diff(limits.astype(np.int64)))
    pairs = pl.DataFrame({"q": rows, "e": labels.astype(np.int64) // kb, "d": distances.astype(np.int32)})
    return pairs.group_by("q", "e").agg(pl.col("d").min())["d"].to_numpy()


def own_distances(originals: np.ndarray, reuploads: np.ndarray) -> np.ndarray:
    """Distance of re-upload i to original i: the closest of their (kq x kb) code pairs."""
    xor = np.bitwise_xor(reuploads[:, :, None, :], originals[:, None, :, :])
    return np.bitwise_count(xor).sum(axis=3).min(axis=(1, 2)).astype(np.int32)


@dataclass(frozen=True)
class RadiusEvaluation:
    """Per radius: `recall_<transform>` (share of re-uploads matching their own original),
    `recall_min` over transforms, `false_match_rate` (share of benign images matching any bank
    entry), `false_matches`, and `false_pair_rate` (share of (benign, banked) pairs within the radius:
    the figure that carries over to a bank of another size, which a benign upload false-matches
    with probability about bank size x false_pair_rate). Plus what it was measured on."""

    table: pl.DataFrame
    bank_size: int
    benign: int
    reuploads: dict[str, int] = field(default_factory=dict)


def evaluate_radii(
    originals: HashedImages,
    reuploads: Mapping[str, HashedImages],
    benign: HashedImages,
    radii: Sequence[int] = DEFAULT_RADII,
) -> RadiusEvaluation:
    """Recall per transform and benign false-match rate at each radius (module docstring)."""
    bank_rows = np.flatnonzero(originals.trusted)
    bank = originals.codes[bank_rows]
    radii = sorted(set(int(r) for r in radii))
    columns: dict[str, list] = {"radius": radii}
    counts = {}
    for name, hashed in reuploads.items():
        if len(hashed) != len(originals):
            raise ValueError(f"evaluate_radii: {len(hashed)} '{name}' re-uploads for {len(originals)} originals")
        own = own_distances(bank, hashed.codes[bank_rows])
        own = np.where(hashed.trusted[bank_rows], own, BITS + 1)
        counts[name] = len(bank_rows)
        columns[f"recall_{name}"] = [float((own <= r).mean()) if len(own) else 0.0 for r in radii]
    nearest = nearest_distances(bank, benign.codes)
    nearest = np.where(benign.trusted, nearest, BITS + 1)
    columns["false_matches"] = [int((nearest <= r).sum()) for r in radii]
    columns["false_match_rate"] = [float((nearest <= r).mean()) if len(nearest) else 0.0 for r in radii]
    trusted_benign = benign.codes[benign.trusted]
    within = pair_distances(bank, trusted_benign, max(radii))
    pairs = max(len(benign) * len(bank_rows), 1)
    columns["false_pair_rate"] = [float((within <= r).sum()) / pairs for r in radii]
    table = pl.DataFrame(columns)
    recall_cols = [c for c in table.columns if c.startswith("recall_")]
    if recall_cols:
        table = table.with_columns(pl.min_horizontal(recall_cols).alias("recall_min"))
    return RadiusEvaluation(table, len(bank_rows), len(benign), counts)


@dataclass(frozen=True)
class RadiusChoice:
    radius: int
    false_match_rate: float
    recall_min: float
    reason: str


def choose_radius(
    evaluation: RadiusEvaluation, max_false_match_rate: float = MAX_FALSE_MATCH_RATE, max_radius: int = 47
) -> RadiusChoice:
    """The largest evaluated radius <= `max_radius` whose benign false-match rate is within the bound:
    recall only grows with the radius, so that is the most recall the bound allows."""
    table = evaluation.table.filter(pl.col("radius") <= max_radius)
    ok = table.filter(pl.col("false_match_rate") <= max_false_match_rate)
    if ok.is_empty():
        raise ValueError(
            f"no radius <= {max_radius} keeps the benign false-match rate within {max_false_match_rate}: "
            "the benign set has near-copies of banked images (check it is distinct) or the bound is too tight"
        )
    row = ok.sort("radius").row(-1, named=True)
    recall_min = float(row.get("recall_min", 0.0) or 0.0)
    reference = table.filter(pl.col("radius") == THREATEXCHANGE_THRESHOLD)
    note = ""
    if not reference.is_empty():
        ref = reference.row(0, named=True)
        note = (
            f"; ThreatExchange's {THREATEXCHANGE_THRESHOLD} would give false-match rate "
            f"{ref['false_match_rate']:.4f} and minimum recall {float(ref.get('recall_min', 0.0) or 0.0):.3f}"
        )
    reason = (
        f"largest radius with benign false-match rate <= {max_false_match_rate} over {evaluation.benign} "
        f"images against {evaluation.bank_size} banked originals: {row['radius']} (rate "
        f"{row['false_match_rate']:.4f}, minimum recall over transforms {recall_min:.3f}){note}"
    )
    return RadiusChoice(int(row["radius"]), float(row["false_match_rate"]), recall_min, reason)


__all__ = [
    "DEFAULT_RADII",
    "DEFAULT_RADIUS",
    "MAX_FALSE_MATCH_RATE",
    "HashedImages",
    "RadiusChoice",
    "RadiusEvaluation",
    "choose_radius",
    "evaluate_radii",
    "hash_images",
    "nearest_distances",
    "own_distances",
    "pair_distances",
]
