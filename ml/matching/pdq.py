"""PDQ perceptual hashes of images (Meta's open algorithm, via the `pdqhash` C++ binding), in
ThreatExchange's hex form, plus a robust variant that survives the edits evaders make.

A PDQ hash is 256 bits; two images whose hashes differ in at most ~31 bits (ThreatExchange's
`PDQ_CONFIDENT_MATCH_THRESHOLD`) look the same to a person. Hex is 64 characters, most significant
bit first: the bridge test image of the ThreatExchange repository hashes here to the value its
Java and Python tests expect (f8f8f0ce...9b22), so hashes imported from ThreatExchange and hashes
computed here compare bit for bit. Codes for the index are the same bits as 32 uint8 bytes.

Quality (0-100) is PDQ's own measure of how much structure the image has; the PDQ documentation
says hashes of quality below 50 (flat colour, faint gradients) should not be trusted for matching,
so `MIN_QUALITY` gates what may match or enter a bank.

Every image gets two kinds of code (`image_codes`), and matching takes the closer:
- the reference code: PDQ of the image as it is, what ThreatExchange banks hold;
- the robust code: PDQ of the image after `canonical`, which removes a uniform frame around it
  (`trim_frame`) and downsamples it to PDQ's own 64 x 64 working size with Pillow's antialiasing
  filter. Measured on rendered memes, screenshots and flyers (docs/matching.md): PDQ's box filter
  lets the fine strokes of text alias, so a 50-75% resize moved the reference code by a median of
  32 bits and the robust one by 5; a 3-8% solid border moved the reference code by 76-116 bits
  and the robust one by 0.
Mirrors are hashed from flipped pixels, not with `pdqhash.compute_dihedral`: its mirrored hash
differed from the hash of the actually flipped image by 10-60 bits on 26 of 45 rendered images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import pdqhash
from PIL import Image

BITS = 256
HEX_LENGTH = BITS // 4
CODE_BYTES = BITS // 8
THREATEXCHANGE_THRESHOLD = 31
MIN_QUALITY = 50
CANONICAL_SIZE = 64  # PDQ's own working resolution


class Dihedral(IntEnum):
    """The eight ways to turn or flip an image; a query hashed under MIRROR too matches a left-right
    flipped re-upload of a banked image."""

    ORIGINAL = 0
    MIRROR = 1  # flipped left to right
    FLIP = 2  # flipped top to bottom
    ROTATE_180 = 3
    ROTATE_90 = 4  # counter-clockwise
    ROTATE_270 = 5
    TRANSPOSE = 6
    TRANSVERSE = 7


ORIGINAL_AND_MIRROR: tuple[Dihedral, ...] = (Dihedral.ORIGINAL, Dihedral.MIRROR)
DIHEDRAL: tuple[Dihedral, ...] = tuple(Dihedral)


def turned(pixels: np.ndarray, variant: Dihedral) -> np.ndarray:
    """An (h, w, 3) pixel array under `variant`, contiguous for pdqhash."""
    ops = {
        Dihedral.ORIGINAL: lambda a: a,
        Dihedral.MIRROR: lambda a: a[:, ::-1],
        Dihedral.FLIP: lambda a: a[::-1],
        Dihedral.ROTATE_180: lambda a: a[::-1, ::-1],
        Dihedral.ROTATE_90: lambda a: np.rot90(a, 1),
        Dihedral.ROTATE_270: lambda a: np.rot90(a, 3),
        Dihedral.TRANSPOSE: lambda a: a.transpose(1, 0, 2),
        Dihedral.TRANSVERSE: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
    }
    return np.ascontiguousarray(ops[Dihedral(variant)](pixels))


@dataclass(frozen=True)
class PdqHash:
    """An image's PDQ hash (64 hex chars) and quality (0-100)."""

    hex: str
    quality: int

    @property
    def trusted(self) -> bool:
        return self.quality >= MIN_QUALITY


def _pixels(image: Image.Image) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


def _codes(pixels: np.ndarray, variants: Sequence[Dihedral]) -> tuple[np.ndarray, int]:
    codes, quality = [], 0
    for i, variant in enumerate(variants):
        bits, q = pdqhash.compute(turned(pixels, variant))
        codes.append(np.packbits(bits.astype(np.uint8)))
        quality = int(q) if i == 0 else quality
    return np.stack(codes), quality


def pdq_hash(image: Image.Image) -> PdqHash:
    """The reference PDQ hash of an image as it is (what ThreatExchange computes)."""
    codes, quality = _codes(_pixels(image), (Dihedral.ORIGINAL,))
    return PdqHash(codes_to_hex(codes)[0], quality)


def trim_frame(image: Image.Image, tolerance: int = 12, keep: float = 0.2) -> Image.Image:
    """`image` without a uniform frame: when all four outer lines are one and the same colour, each
    side loses its lines of that colour until the content starts; repeated while a new frame shows
    (a border on a flat margin goes, then the margin). A line is one colour when its mean deviation
    is <= `tolerance` grey levels and at most 1% of its pixels are off by more than 3x that (JPEG
    noise passes, a line through text does not). An image whose edges differ (a screenshot's bars)
    is left alone, so two copies of it cannot be cut differently. At least `keep` of each
    dimension remains."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    height, width = pixels.shape[:2]
    top, bottom, left, right = 0, height, 0, width
    min_h, min_w = max(8, int(height * keep)), max(8, int(width * keep))

    def flat(lines: np.ndarray, colour: np.ndarray) -> np.ndarray:
        deviation = np.abs(lines - colour).max(axis=-1)
        return (deviation.mean(axis=-1) <= tolerance) & ((deviation > 3 * tolerance).mean(axis=-1) <= 0.01)

    def band(lines: np.ndarray, colour: np.ndarray) -> int:
        """How many leading lines are `colour`, read in growing blocks (the first block usually settles it)."""
        done, block = 0, 8
        while done < len(lines):
            ok = flat(lines[done : done + block], colour)
            if not ok.all():
                return done + int(np.argmin(ok))
            done += len(ok)
            block *= 2
        return done

    for _ in range(4):
        view = pixels[top:bottom, left:right]
        edges = (view[0], view[-1], view[:, 0], view[:, -1])
        colour = np.median(view[0], axis=0)
        if not all(flat(edge[None], colour)[0] for edge in edges):
            break
        room_h, room_w = (bottom - top - min_h) // 2, (right - left - min_w) // 2
        if room_h <= 0 or room_w <= 0:
            break
        cut_top = band(view[:room_h], colour)
        cut_bottom = band(view[::-1][:room_h], colour)
        cut_left = band(view[:, :room_w].transpose(1, 0, 2), colour)
        cut_right = band(view[:, ::-1][:, :room_w].transpose(1, 0, 2), colour)
        top, bottom, left, right = top + cut_top, bottom - cut_bottom, left + cut_left, right - cut_right
    if (top, bottom, left, right) == (0, height, 0, width):
        return image
    return image.crop((left, top, right, bottom))


def canonical(image: Image.Image) -> Image.Image:
    """The image the robust code is computed from: frame trimmed, antialiased down to 64 x 64."""
    return trim_frame(image.convert("RGB")).resize((CANONICAL_SIZE, CANONICAL_SIZE), Image.Resampling.LANCZOS)


def image_codes(image: Image.Image, variants: Sequence[Dihedral] = (Dihedral.ORIGINAL,)) -> tuple[np.ndarray, int]:
    """The codes an image is banked or looked up under: the reference code of each of its `variants`,
    then the robust code of each ((2 x len(variants), 32) uint8), and its reference PDQ quality.
    A bank takes (ORIGINAL,); an upload is looked up with ORIGINAL_AND_MIRROR."""
    reference, quality = _codes(_pixels(image), variants)
    robust, _ = _codes(_pixels(canonical(image)), variants)
    return np.concatenate([reference, robust]), quality


def hex_to_codes(hexes: Sequence[str]) -> np.ndarray:
    """(n, 32) uint8 codes from 64-char hex hashes; raises ValueError naming the first bad one."""
    try:  # the common case, a bank of valid hashes, in one pass
        if all(len(value) == HEX_LENGTH for value in hexes):
            return np.frombuffer(bytes.fromhex("".join(hexes)), dtype=np.uint8).reshape(len(hexes), CODE_BYTES).copy()
    except (ValueError, TypeError):
        pass  # find and name the bad one below
    out = np.empty((len(hexes), CODE_BYTES), dtype=np.uint8)
    for i, value in enumerate(hexes):
        problem = hex_problem(value)
        if problem:
            raise ValueError(f"hash {i} ({value!r}): {problem}")
        out[i] = np.frombuffer(bytes.fromhex(value), dtype=np.uint8)
    return out


def codes_to_hex(codes: np.ndarray) -> list[str]:
    """64-char lower-case hex strings of (n, 32) uint8 codes."""
    return [row.tobytes().hex() for row in np.asarray(codes, dtype=np.uint8)]


def hex_problem(value: str) -> str:
    """Why `value` is not a PDQ hash in hex ("" when it is one)."""
    if not isinstance(value, str):
        return f"expected text, got {type(value).__name__}"
    if len(value) != HEX_LENGTH:
        return f"has {len(value)} characters; a PDQ hash has {HEX_LENGTH} hex characters (256 bits)"
    bad = sorted({c for c in value if c not in "0123456789abcdefABCDEF"})
    if bad:
        return f"contains non-hex characters {''.join(bad)!r}"
    return ""


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between (n, 32) and (n, 32) (or (32,)) uint8 codes, row by row."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint8), np.asarray(b, np.uint8))).sum(
        axis=-1, dtype=np.int32
    )


__all__ = [
    "BITS",
    "CODE_BYTES",
    "DIHEDRAL",
    "Dihedral",
    "HEX_LENGTH",
    "MIN_QUALITY",
    "ORIGINAL_AND_MIRROR",
    "PdqHash",
    "THREATEXCHANGE_THRESHOLD",
    "codes_to_hex",
    "hamming",
    "hex_problem",
    "hex_to_codes",
    "pdq_hash",
    "image_codes",
    "trim_frame",
    "canonical",
    "turned",
    "CANONICAL_SIZE",
]
