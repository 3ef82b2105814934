"""Named image transforms: what real uploads do to a picture, and what evaders do to a removed one.

Two families, each a tuple of names into `TRANSFORMS`, so the simulator, tests and evaluation
iterate over the same list:
- `UPLOAD_PERTURBATIONS`: what happens to any photo on its way to a platform (JPEG re-compression,
  a little blur, a slight tilt, sensor noise, a resize). The simulator applies one or two to every
  image it posts; OCR accuracy is reported per perturbation.
- `EVASIONS`: what ring accounts do when re-uploading a removed image so that an exact hash no longer
  matches (resize, crop up to 10%, re-compress, mirror, a border, an emoji or a watermark on top,
  brightness). PDQ match recall is reported per evasion.

A transform is a pure function of the picture and a NumPy generator (its strength is drawn from a
stated range), so a seed fixes the result.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from ml.images.render import BUILTIN_FACE, font_faces


@dataclass(frozen=True)
class ImageTransform:
    """A named change to a picture; `description` states its strength range."""

    name: str
    family: str  # upload | evasion
    description: str
    apply: Callable[[Image.Image, np.random.Generator], Image.Image]


def encode_image(image: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    """The bytes of `image` in `fmt` (JPEG at `quality`, or PNG, WEBP, GIF, BMP)."""
    buffer = io.BytesIO()
    rgb = image.convert("RGB")
    if fmt.upper() in ("JPEG", "WEBP"):
        rgb.save(buffer, fmt.upper(), quality=int(quality))
    else:
        rgb.save(buffer, fmt.upper())
    return buffer.getvalue()


def _reencode(image: Image.Image, quality: int) -> Image.Image:
    return Image.open(io.BytesIO(encode_image(image, "JPEG", quality))).convert("RGB")


def _scale(image: Image.Image, factor: float) -> Image.Image:
    w, h = image.size
    return image.resize((max(8, round(w * factor)), max(8, round(h * factor))), Image.Resampling.LANCZOS)


# --- uploads ----------------------------------------------------------------------------------


def _jpeg(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return _reencode(image, int(rng.integers(50, 86)))


def _blur(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 1.2))))


def _rotate(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    angle = float(rng.uniform(1.0, 3.0)) * (1 if rng.random() < 0.5 else -1)
    corner = image.getpixel((0, 0))
    return image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=False, fillcolor=corner)


def _noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + rng.normal(0, rng.uniform(3, 8), size=pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _downscale(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return _scale(image, float(rng.uniform(0.6, 0.9)))


# --- evasions ---------------------------------------------------------------------------------


def _resize(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    factor = float(rng.uniform(0.4, 0.75)) if rng.random() < 0.5 else float(rng.uniform(1.25, 1.6))
    return _scale(image, factor)


def _crop(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Up to 10% of each dimension cut away, split at random between the two sides."""
    w, h = image.size
    cut_w, cut_h = int(w * rng.uniform(0.03, 0.10)), int(h * rng.uniform(0.03, 0.10))
    left, top = int(rng.integers(0, cut_w + 1)), int(rng.integers(0, cut_h + 1))
    return image.crop((left, top, w - (cut_w - left), h - (cut_h - top)))


def _recompress(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return _reencode(image, int(rng.integers(25, 50)))


def _mirror(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return ImageOps.mirror(image)


def _border(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    w, h = image.size
    width = max(2, int(min(w, h) * rng.uniform(0.03, 0.08)))
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    return ImageOps.expand(image, border=width, fill=colour)


def _emoji(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A smiley sticker over a corner, 12-20% of the shorter side."""
    out = image.copy()
    w, h = out.size
    size = int(min(w, h) * rng.uniform(0.12, 0.20))
    x = int(rng.choice([size // 4, w - size - size // 4]))
    y = int(rng.choice([size // 4, h - size - size // 4]))
    draw = ImageDraw.Draw(out)
    draw.ellipse((x, y, x + size, y + size), fill=(255, 204, 0), outline=(150, 100, 0), width=max(1, size // 20))
    eye = max(2, size // 9)
    for ex in (x + size * 0.32, x + size * 0.62):
        draw.ellipse((ex, y + size * 0.3, ex + eye, y + size * 0.3 + eye * 1.5), fill=(60, 40, 0))
    draw.arc(
        (x + size * 0.22, y + size * 0.35, x + size * 0.78, y + size * 0.8),
        20,
        160,
        fill=(60, 40, 0),
        width=max(2, size // 14),
    )
    return out


def _watermark(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A half-transparent @handle in a corner, as reposting apps stamp."""
    base = image.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    w, h = base.size
    handle = "@" + "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz0123456789_"), size=int(rng.integers(5, 11))))
    faces = [f for f in font_faces() if f.name != BUILTIN_FACE] or list(font_faces())
    font = faces[0].at(max(12, int(min(w, h) * rng.uniform(0.04, 0.07))))
    text_w = font.getlength(handle)
    x = int(w - text_w - w * 0.03) if rng.random() < 0.5 else int(w * 0.03)
    y = int(h * 0.9) if rng.random() < 0.7 else int(h * 0.04)
    ImageDraw.Draw(layer).text(
        (x, y),
        handle,
        font=font,
        fill=(255, 255, 255, int(rng.integers(110, 180))),
        stroke_width=1,
        stroke_fill=(0, 0, 0, 90),
    )
    return Image.alpha_composite(base, layer).convert("RGB")


def _brightness(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    factor = float(rng.uniform(0.65, 0.85)) if rng.random() < 0.5 else float(rng.uniform(1.15, 1.35))
    return ImageEnhance.Brightness(image).enhance(factor)


_ALL = (
    ImageTransform("jpeg", "upload", "JPEG re-compression at quality 50-85", _jpeg),
    ImageTransform("blur", "upload", "Gaussian blur, radius 0.5-1.2 px", _blur),
    ImageTransform("rotate", "upload", "a 1-3 degree tilt, corners filled with the edge colour", _rotate),
    ImageTransform("noise", "upload", "Gaussian noise, sigma 3-8 grey levels", _noise),
    ImageTransform("downscale", "upload", "resized to 60-90%", _downscale),
    ImageTransform("resize", "evasion", "resized to 40-75% or 125-160%", _resize),
    ImageTransform("crop", "evasion", "3-10% of each dimension cut away", _crop),
    ImageTransform("recompress", "evasion", "JPEG re-compression at quality 25-49", _recompress),
    ImageTransform("mirror", "evasion", "flipped left to right", _mirror),
    ImageTransform("border", "evasion", "a solid border of 3-8% of the shorter side", _border),
    ImageTransform("emoji", "evasion", "a smiley sticker over a corner, 12-20% of the shorter side", _emoji),
    ImageTransform("watermark", "evasion", "a half-transparent @handle near an edge", _watermark),
    ImageTransform("brightness", "evasion", "brightness x0.65-0.85 or x1.15-1.35", _brightness),
)
TRANSFORMS: dict[str, ImageTransform] = {t.name: t for t in _ALL}
UPLOAD_PERTURBATIONS: tuple[str, ...] = tuple(t.name for t in _ALL if t.family == "upload")
EVASIONS: tuple[str, ...] = tuple(t.name for t in _ALL if t.family == "evasion")


def apply_transforms(image: Image.Image, names: tuple[str, ...] | list[str], rng: np.random.Generator) -> Image.Image:
    """`image` after each named transform in order."""
    for name in names:
        if name not in TRANSFORMS:
            raise ValueError(f"unknown transform {name!r}; choose from {sorted(TRANSFORMS)}")
        image = TRANSFORMS[name].apply(image, rng)
    return image


__all__ = [
    "EVASIONS",
    "TRANSFORMS",
    "UPLOAD_PERTURBATIONS",
    "ImageTransform",
    "apply_transforms",
    "encode_image",
]
