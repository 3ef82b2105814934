"""Pictures made from real labelled text, for the simulator: memes, chat screenshots, flyers, and benign
pictures with no text.

The simulator hands over a corpus text and a NumPy generator and gets back a `RenderedImage`: the
Pillow picture, and the text exactly as drawn in reading order (a long text is shortened at a word
boundary to what fits, a flyer moves its phone numbers and links to their own lines), which is the
reference OCR is measured against. Everything random comes from the generator, so a seed fixes the
pictures byte for byte on one Pillow build.

Fonts are the system's DejaVu family when its files are there (`DEJAVU_DIR`; each file is checked)
and Pillow's built-in scalable font (`ImageFont.load_default(size=...)`) always, so a clean CI machine
without DejaVu still renders; if this Pillow lacks FreeType, the built-in bitmap font is used at its
one size rather than failing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ml.matching.text import find_artifacts

DEJAVU_DIR = Path("/usr/share/fonts/truetype/dejavu")
# (face name, file, bold): the faces layouts choose from when the file exists.
_DEJAVU_FILES: tuple[tuple[str, str, bool], ...] = (
    ("dejavu-sans", "DejaVuSans.ttf", False),
    ("dejavu-sans-bold", "DejaVuSans-Bold.ttf", True),
    ("dejavu-sans-condensed-bold", "DejaVuSansCondensed-Bold.ttf", True),
    ("dejavu-serif", "DejaVuSerif.ttf", False),
    ("dejavu-serif-bold", "DejaVuSerif-Bold.ttf", True),
    ("dejavu-sans-mono", "DejaVuSansMono.ttf", False),
)
BUILTIN_FACE = "pillow-builtin"
TEXT_LAYOUTS: tuple[str, ...] = ("meme", "screenshot", "flyer")
BACKGROUNDS: tuple[str, ...] = ("gradient", "clouds", "shapes", "photo")
# Below this size the OCR model's detector starts to miss lines; layouts never draw smaller text.
MIN_FONT_PX = 16

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


@dataclass(frozen=True)
class FontFace:
    """A font the renderer may use: a TrueType file, or Pillow's built-in font when `path` is None."""

    name: str
    path: Path | None
    bold: bool

    def at(self, size: int) -> Font:
        return _load_font(self.path, size)


@dataclass(frozen=True)
class RenderedImage:
    """A rendered picture and the text drawn on it, in reading order ("" for a picture with no text)."""

    image: Image.Image
    layout: str  # meme, screenshot, flyer, benign
    text: str
    font: str  # the face of the body text ("" when no text)
    font_size: int
    background: str


@cache
def _load_font(path: Path | None, size: int) -> Font:
    if path is not None:
        return ImageFont.truetype(str(path), size)
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):  # a Pillow without FreeType: one bitmap size
        return ImageFont.load_default()


def font_faces(directory: Path | None = DEJAVU_DIR) -> tuple[FontFace, ...]:
    """The faces available here: each DejaVu file that exists and opens, then Pillow's built-in font."""
    faces = []
    for name, file, bold in _DEJAVU_FILES if directory is not None else ():
        path = Path(directory) / file
        if not path.is_file():  # checked here: Pillow would look the bare file name up elsewhere
            continue
        try:
            _load_font(path, 12)
        except OSError:  # missing or unreadable: this machine simply lacks the face
            continue
        faces.append(FontFace(name, path, bold))
    faces.append(FontFace(BUILTIN_FACE, None, False))
    return tuple(faces)


@cache
def _glyph(path: Path | None, char: str) -> bytes:
    image = Image.new("L", (48, 48))
    ImageDraw.Draw(image).text((8, 8), char, font=_load_font(path, 24), fill=255)
    return image.tobytes()


def _draws(face: FontFace, char: str) -> bool:
    """Whether the face has a glyph for `char` (it does not draw its "missing glyph" box instead)."""
    return char.isspace() or _glyph(face.path, char) != _glyph(face.path, "\uffff")


def drawable_text(text: str, faces: tuple[FontFace, ...] | None = None) -> tuple[str, tuple[FontFace, ...]]:
    """The text as it can be drawn, and the faces to draw it with: NFKC-normalised (full-width letters
    become plain ones), without control and format characters; the faces that have every glyph, or,
    when none has, the face with the most and the text without the characters it lacks (emoji:
    there is no colour emoji font here). "" when nothing in the text can be drawn."""
    faces = faces or font_faces()
    text = unicodedata.normalize("NFKC", text)
    text = "".join(c for c in text if not unicodedata.category(c).startswith("C") or c.isspace())
    text = " ".join(text.split())
    chars = set(text)
    complete = tuple(f for f in faces if all(_draws(f, c) for c in chars))
    if complete:
        return text, complete
    best = max(faces, key=lambda f: sum(_draws(f, c) for c in chars))
    return " ".join("".join(c for c in text if _draws(best, c)).split()), (best,)


def render_text_image(
    text: str, rng: np.random.Generator, layout: str | None = None, faces: tuple[FontFace, ...] | None = None
) -> RenderedImage:
    """`text` drawn in `layout` (one of TEXT_LAYOUTS; drawn from `rng` when None). Characters no font
    here can draw are left out (see `drawable_text`); `RenderedImage.text` says what was drawn."""
    text, faces = drawable_text(text, faces)
    layout = layout or str(rng.choice(TEXT_LAYOUTS))
    words = text.split()
    if not words:
        raise ValueError(
            "render_text_image needs a text with at least one drawable word (check drawable_text first); "
            "use render_benign_image for a picture without text"
        )
    if layout == "meme":
        return _meme(words, rng, faces)
    if layout == "screenshot":
        return _screenshot(text, rng, faces)
    if layout == "flyer":
        return _flyer(text, rng, faces)
    raise ValueError(f"unknown layout {layout!r}; choose from {TEXT_LAYOUTS}")


def render_benign_image(rng: np.random.Generator, width: int | None = None, height: int | None = None) -> RenderedImage:
    """A picture with no text: one of BACKGROUNDS at a size in the usual upload range."""
    width = width or int(rng.integers(320, 801))
    height = height or int(width * rng.uniform(0.56, 1.34))
    kind = str(rng.choice(BACKGROUNDS))
    return RenderedImage(background(kind, width, height, rng), "benign", "", "", 0, kind)


# --- backgrounds ------------------------------------------------------------------------------


def background(kind: str, width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A picture-like background: a gradient, soft clouds, flat shapes, or all three ("photo")."""
    if kind == "gradient":
        return _gradient(width, height, rng)
    if kind == "clouds":
        return _clouds(width, height, rng)
    if kind == "shapes":
        return _shapes(Image.new("RGB", (width, height), _colour(rng)), rng, int(rng.integers(4, 12)))
    if kind == "photo":
        base = Image.blend(_gradient(width, height, rng), _clouds(width, height, rng), float(rng.uniform(0.3, 0.7)))
        base = _shapes(base, rng, int(rng.integers(2, 7))).filter(ImageFilter.GaussianBlur(float(rng.uniform(1, 4))))
        grain = rng.normal(0, rng.uniform(2, 8), size=(height, width, 1))
        return Image.fromarray(np.clip(np.asarray(base, dtype=np.float32) + grain, 0, 255).astype(np.uint8))
    raise ValueError(f"unknown background {kind!r}; choose from {BACKGROUNDS}")


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(c) for c in rng.integers(lo, hi, size=3))


def _gradient(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = xx * np.cos(angle) / width + yy * np.sin(angle) / height
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return Image.fromarray((a + (b - a) * t[..., None]).astype(np.uint8))


def _clouds(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    cells = rng.integers(0, 256, size=(int(rng.integers(3, 9)), int(rng.integers(3, 9)), 3), dtype=np.uint8)
    return Image.fromarray(cells).resize((width, height), Image.Resampling.BICUBIC)


def _shapes(base: Image.Image, rng: np.random.Generator, count: int) -> Image.Image:
    out = base.copy()
    draw = ImageDraw.Draw(out)
    w, h = out.size
    for _ in range(count):
        x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
        x1, y1 = x0 + int(rng.integers(w // 10, w // 2)), y0 + int(rng.integers(h // 10, h // 2))
        kind = int(rng.integers(3))
        if kind == 0:
            draw.ellipse((x0, y0, x1, y1), fill=_colour(rng))
        elif kind == 1:
            draw.rectangle((x0, y0, x1, y1), fill=_colour(rng))
        else:
            points = [(int(rng.integers(x0, x1)), int(rng.integers(y0, y1))) for _ in range(3)]
            draw.polygon(points, fill=_colour(rng))
    return out


def _luminance(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _contrasting(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return (20, 20, 20) if _luminance(rgb) > 140 else (245, 245, 245)


# --- text fitting -----------------------------------------------------------------------------


def _wrap(words: list[str], font: Font, width: int) -> list[str]:
    """Greedy word wrap by drawn width; a word wider than the line is cut by characters."""
    lines: list[str] = []
    line = ""
    for word in words:
        candidate = f"{line} {word}" if line else word
        if font.getlength(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while font.getlength(word) > width and len(word) > 1:
            cut = max(1, int(len(word) * width / font.getlength(word)))
            while cut > 1 and font.getlength(word[:cut]) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        lines.append(line)
    return lines


def _line_height(font: Font) -> int:
    top, bottom = font.getbbox("Ãg")[1::2]
    return int((bottom - top) * 1.25) + 2


def _fit(words: list[str], face: FontFace, size: int, box_w: int, box_h: int) -> tuple[Font, int, list[str], list[str]]:
    """The largest size <= `size` whose wrapped lines fit the box; at MIN_FONT_PX the text is cut to
    the lines that fit. Returns (font, size, lines, words left undrawn)."""
    while True:
        font = face.at(size)
        lines = _wrap(words, font, box_w)
        if len(lines) * _line_height(font) <= box_h or size <= MIN_FONT_PX:
            break
        size = max(MIN_FONT_PX, int(size * 0.88))
    keep = max(1, box_h // _line_height(font))
    if len(lines) <= keep:
        return font, size, lines, []
    drawn = " ".join(lines[:keep]).split()
    return font, size, lines[:keep], words[len(drawn) :]


def _draw_lines(
    draw: ImageDraw.ImageDraw,
    lines: list[str],
    font: Font,
    box: tuple[int, int, int, int],
    fill,
    align: str = "center",
    stroke: int = 0,
    stroke_fill=None,
) -> int:
    """Draw `lines` from the top of `box` (x0, y0, x1, y1); returns the y below the last line."""
    x0, y, x1, _ = box
    step = _line_height(font)
    for line in lines:
        width = font.getlength(line)
        x = x0 if align == "left" else x0 + (x1 - x0 - width) / 2
        draw.text((x, y), line, font=font, fill=fill, stroke_width=stroke, stroke_fill=stroke_fill)
        y += step
    return y


def _pick_face(faces: tuple[FontFace, ...], rng: np.random.Generator, bold: bool | None = None) -> FontFace:
    pool = [f for f in faces if bold is None or f.bold == bold or f.path is None] or list(faces)
    return pool[int(rng.integers(len(pool)))]


# --- layouts ----------------------------------------------------------------------------------


def _meme(words: list[str], rng: np.random.Generator, faces: tuple[FontFace, ...]) -> RenderedImage:
    """A caption over a picture: white letters outlined in black, top and bottom, often in capitals."""
    width = int(rng.integers(360, 801))
    height = int(width * rng.uniform(0.75, 1.1))
    kind = str(rng.choice(BACKGROUNDS))
    image = background(kind, width, height, rng)
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.5:
        words = [w.upper() for w in words]
    face = _pick_face(faces, rng, bold=True)
    margin = width // 20
    band = int(height * 0.3)
    split = len(words) if len(words) <= 3 else max(1, int(len(words) * rng.uniform(0.35, 0.55)))
    size = int(width * rng.uniform(0.06, 0.09))
    font, size, top_lines, rest = _fit(words[:split], face, size, width - 2 * margin, band)
    stroke = max(1, size // 14)
    _draw_lines(draw, top_lines, font, (margin, margin // 2, width - margin, band), "white", "center", stroke, "black")
    drawn = " ".join(top_lines)
    bottom_words = rest + words[split:]
    if bottom_words:
        font_b, _, bottom_lines, _ = _fit(bottom_words, face, size, width - 2 * margin, band)
        y0 = height - margin // 2 - len(bottom_lines) * _line_height(font_b)
        _draw_lines(
            draw, bottom_lines, font_b, (margin, y0, width - margin, height), "white", "center", stroke, "black"
        )
        drawn = f"{drawn} {' '.join(bottom_lines)}"
    return RenderedImage(image, "meme", drawn, face.name, size, kind)


def _chunks(text: str, rng: np.random.Generator) -> list[list[str]]:
    """A text split into 1-4 chat messages, at sentence ends where there are some."""
    sentences = [s.split() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.split()]
    if len(sentences) == 1 and len(sentences[0]) > 12 and rng.random() < 0.6:
        words = sentences[0]
        cut = int(len(words) * rng.uniform(0.3, 0.7))
        sentences = [words[:cut], words[cut:]]
    if len(sentences) > 4:
        per = -(-len(sentences) // 4)
        sentences = [sum(sentences[i : i + per], []) for i in range(0, len(sentences), per)]
    return sentences


def _screenshot(text: str, rng: np.random.Generator, faces: tuple[FontFace, ...]) -> RenderedImage:
    """A phone chat: a top bar, message bubbles left and right, an input bar; no text but the messages."""
    width = int(rng.integers(320, 521))
    height = int(width * rng.uniform(1.5, 1.95))
    dark = rng.random() < 0.35
    page = (18, 18, 22) if dark else _colour(rng, 235, 256)
    image = Image.new("RGB", (width, height), page)
    draw = ImageDraw.Draw(image)
    bar = (40, 40, 48) if dark else _colour(rng, 200, 245)
    top, bottom = int(height * 0.09), int(height * 0.92)
    draw.rectangle((0, 0, width, top), fill=bar)
    draw.ellipse((width // 20, top // 4, width // 20 + top // 2, top // 4 + top // 2), fill=_colour(rng, 60, 200))
    draw.rectangle((0, bottom, width, height), fill=bar)
    draw.rounded_rectangle((width // 25, bottom + 8, width * 5 // 6, height - 8), radius=12, fill=page)
    face = _pick_face(faces, rng, bold=False)
    size = int(rng.integers(17, 24))
    mine = _colour(rng, 0, 140) if rng.random() < 0.5 else (0, 122, 255)
    theirs = (58, 58, 64) if dark else (229, 229, 234)
    y, pad = top + 14, 10
    drawn: list[str] = []
    side = int(rng.integers(2))
    for chunk in _chunks(text, rng):
        bubble_w = int(width * 0.72)
        room = bottom - 12 - y - 2 * pad
        if room < MIN_FONT_PX * 2:
            break
        font, _, lines, rest = _fit(chunk, face, size, bubble_w - 2 * pad, room)
        line_w = max(font.getlength(line) for line in lines)
        box_h = len(lines) * _line_height(font) + 2 * pad
        colour = mine if side else theirs
        x0 = width - 12 - int(line_w) - 2 * pad if side else 12
        draw.rounded_rectangle((x0, y, x0 + int(line_w) + 2 * pad, y + box_h), radius=14, fill=colour)
        _draw_lines(
            draw, lines, font, (x0 + pad, y + pad, x0 + pad + int(line_w), y + box_h), _contrasting(colour), "left"
        )
        drawn.append(" ".join(lines))
        y += box_h + 12
        side = 1 - side
        if rest:
            break
    return RenderedImage(image, "screenshot", " ".join(drawn), face.name, size, "flat")


def _flyer(text: str, rng: np.random.Generator, faces: tuple[FontFace, ...]) -> RenderedImage:
    """A poster: a bold title, the body, then the text's phone numbers, links and e-mails on their own
    highlighted lines (where spam flyers put them)."""
    width = int(rng.integers(400, 721))
    height = int(width * rng.uniform(1.2, 1.45))
    kind = str(rng.choice(("gradient", "clouds", "flat")))
    paper = _colour(rng, 170, 256)
    if kind == "flat":
        image = Image.new("RGB", (width, height), paper)
    else:  # a pale picture, so dark text stays readable
        image = Image.blend(background(kind, width, height, rng), Image.new("RGB", (width, height), paper), 0.7)
    draw = ImageDraw.Draw(image)
    margin = width // 14
    if rng.random() < 0.6:
        draw.rectangle(
            (margin // 3, margin // 3, width - margin // 3, height - margin // 3),
            outline=_colour(rng, 0, 120),
            width=max(3, width // 120),
        )
    ink = (20, 20, 20)
    contacts = find_artifacts(text).spans
    body_text = text
    for start, end in sorted(contacts, reverse=True):
        body_text = body_text[:start] + " " + body_text[end:]
    contact_lines = [text[s:e] for s, e in sorted(contacts)]
    words = body_text.split() or [text[s:e] for s, e in contacts[:1]]
    n_title = min(len(words), int(rng.integers(2, 6))) if len(words) > 4 else len(words)
    title_face, body_face = _pick_face(faces, rng, bold=True), _pick_face(faces, rng, bold=False)
    title_size = int(width * rng.uniform(0.07, 0.1))
    y = margin
    title_font, title_size, title_lines, title_rest = _fit(
        words[:n_title], title_face, title_size, width - 2 * margin, height // 4
    )
    y = _draw_lines(
        draw, title_lines, title_font, (margin, y, width - margin, height), (170, 20, 20) if rng.random() < 0.5 else ink
    )
    drawn = [" ".join(title_lines)]
    contact_h = len(contact_lines) * (_line_height(body_face.at(max(MIN_FONT_PX, width // 22))) + 8)
    body_words = title_rest + words[n_title:]
    body_size = int(rng.integers(max(MIN_FONT_PX, width // 32), max(MIN_FONT_PX + 1, width // 20)))
    if body_words:
        room = height - margin - contact_h - y - 10
        if room > MIN_FONT_PX:
            font, body_size, lines, _ = _fit(body_words, body_face, body_size, width - 2 * margin, room)
            y = _draw_lines(
                draw, lines, font, (margin, y + 10, width - margin, height), ink, str(rng.choice(("left", "center")))
            )
            drawn.append(" ".join(lines))
    if contact_lines:
        font = title_face.at(max(MIN_FONT_PX, width // 22))
        y = max(y + 10, height - margin - contact_h)
        band = _colour(rng, 0, 100)
        for line in contact_lines:
            step = _line_height(font)
            draw.rectangle((margin, y, width - margin, y + step + 4), fill=band)
            fitted = _wrap([line], font, width - 2 * margin - 8)[0]
            draw.text((margin + 4, y + 2), fitted, font=font, fill=(255, 255, 255))
            drawn.append(fitted)
            y += step + 8
    return RenderedImage(image, "flyer", " ".join(d for d in drawn if d), body_face.name, body_size, kind)


__all__ = [
    "BACKGROUNDS",
    "BUILTIN_FACE",
    "DEJAVU_DIR",
    "FontFace",
    "MIN_FONT_PX",
    "RenderedImage",
    "TEXT_LAYOUTS",
    "background",
    "drawable_text",
    "font_faces",
    "render_benign_image",
    "render_text_image",
]
