"""Safe image loading: bytes or a path in, an upright RGB picture or a typed rejection out.

Every upload reaches OCR, PDQ hashing and the lake through `decode_image`, so this is the one place
that decides what counts as an image. It never lets an exception out: whatever the bytes are, the
caller gets either a `DecodedImage` or an `ImageRejection` whose `reason` a program can branch on
(HTTP 4xx, a flagged batch row) and whose `message` tells a person what to send instead.

Limits (`DecodeLimits`, defaults below) and why:
- bytes: 20 MiB. A 12-megapixel phone photo is 3-8 MB as JPEG; 20 MiB leaves room for PNG
  screenshots while bounding what one request can make us read and hash.
- pixels: 40 megapixels (e.g. 8000 x 5000). Decoding costs width x height x 3 bytes (120 MB at the
  limit) whatever the file size, so a small file declaring a huge canvas (a decompression bomb) is
  refused from its header, before any pixel is decoded. Pillow's own guard (`Image.MAX_IMAGE_PIXELS`,
  89 megapixels, an error at twice that) is process-global; it is neither read nor changed here:
  its warning is silenced only around our own `open`, its error is caught and answered like ours.
- formats: JPEG, PNG, WebP, GIF and BMP, the formats browsers and phones upload. Only those decoders
  ever see the bytes (`Image.open(formats=...)`); a file in another format is named from its magic
  bytes (TIFF, HEIC, AVIF, PDF, SVG, ...) so the message can say what it is without parsing it.
- animation: an animated GIF or WebP is decoded to its first frame and flagged `animated`.

The content hash is the SHA-256 of the bytes as received, and `media_path` is where the lake keeps
one file per distinct image (`media/<first 2 hex>/<sha256>.<ext>`, the extension from the real
format, not from a file name). EXIF orientation is applied, so a phone photo is hashed and read
the way people see it; transparency is flattened onto white, as a viewer shows it.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow format name -> the extension a stored file gets.
SUPPORTED_FORMATS: dict[str, str] = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}

# Magic bytes of formats people upload that we do not accept, to name them in the rejection.
# Recognised without running their parsers: a format we refuse should not exercise its decoder.
_KNOWN_UNSUPPORTED: tuple[tuple[int, bytes, str], ...] = (
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"%PDF", "PDF"),
    (0, b"8BPS", "Photoshop (PSD)"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (0, b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (0, b"\xff\x4f\xff\x51", "JPEG 2000"),
    (0, b"\xff\x0a", "JPEG XL"),
    (0, b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
    (4, b"ftypmp4", "MP4 video"),
    (4, b"ftypisom", "MP4 video"),
    (4, b"ftypqt", "QuickTime video"),
)


class RejectReason(StrEnum):
    """Why an upload is not an image we take (stable values: callers map them to status codes)."""

    EMPTY = "empty"
    UNREADABLE = "unreadable"  # a path that cannot be read
    TOO_LARGE = "too_large"  # more bytes than the byte limit
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_FORMAT = "unsupported_format"
    TOO_MANY_PIXELS = "too_many_pixels"  # decompression bomb guard
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"  # the header parses but the pixel data does not


@dataclass(frozen=True)
class DecodeLimits:
    """What `decode_image` accepts; the defaults are argued in the module docstring."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    formats: tuple[str, ...] = tuple(SUPPORTED_FORMATS)

    def __post_init__(self) -> None:
        unknown = set(self.formats) - set(SUPPORTED_FORMATS)
        if unknown:
            raise ValueError(
                f"DecodeLimits.formats: {sorted(unknown)} not decodable here; choose from {list(SUPPORTED_FORMATS)}"
            )
        if self.max_bytes <= 0 or self.max_pixels <= 0:
            raise ValueError("DecodeLimits.max_bytes and max_pixels must be positive")


@dataclass(frozen=True)
class DecodedImage:
    """A decoded upload: `image` is a fully loaded RGB picture, upright per EXIF."""

    image: Image.Image
    sha256: str  # of the bytes as received
    format: str  # Pillow's name: JPEG, PNG, WEBP, GIF, BMP
    byte_size: int
    animated: bool  # True: more than one frame; `image` is the first

    @property
    def extension(self) -> str:
        return SUPPORTED_FORMATS[self.format]

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height

    @property
    def media_path(self) -> str:
        """Where the lake stores this image, relative to the lake root: media/<2 hex>/<sha256>.<ext>."""
        return media_path(self.sha256, self.extension)


@dataclass(frozen=True)
class ImageRejection:
    """An upload that is not accepted: `reason` for programs, `message` for the person who sent it."""

    reason: RejectReason
    message: str
    byte_size: int
    sha256: str | None  # None when the bytes were never read (a missing path, over the byte limit)


def media_path(sha256: str, extension: str) -> str:
    """The lake-relative path of one distinct image file (see /work/shared/DESIGN.md)."""
    return f"media/{sha256[:2]}/{sha256}.{extension}"


def decode_image(source: bytes | Path, limits: DecodeLimits = DecodeLimits()) -> DecodedImage | ImageRejection:
    """Decode `source` (the bytes of an upload, or a file's path) within `limits`; never raises."""
    data = _read(source, limits)
    if isinstance(data, ImageRejection):
        return data
    size, digest = len(data), hashlib.sha256(data).hexdigest()

    def reject(reason: RejectReason, message: str) -> ImageRejection:
        return ImageRejection(reason, message, size, digest)

    if size == 0:
        return reject(RejectReason.EMPTY, "the file is empty (0 bytes); send the image file itself")
    try:
        with warnings.catch_warnings():
            # Pillow warns (process-wide setting) above its own pixel limit; ours is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data), formats=list(limits.formats))
    except Image.DecompressionBombError:
        return reject(
            RejectReason.TOO_MANY_PIXELS,
            f"the image declares a canvas of hundreds of millions of pixels (a decompression bomb); images may have "
            f"at most {limits.max_pixels:,} pixels",
        )
    except UnidentifiedImageError:
        named = _sniff_unsupported(data)
        if named:
            return reject(RejectReason.UNSUPPORTED_FORMAT, f"{named} is not accepted; send {_accepted(limits)}")
        return reject(
            RejectReason.NOT_AN_IMAGE, f"the bytes are not an image in any accepted format ({_accepted(limits)})"
        )
    except Exception as exc:  # a parser's own error on a damaged header: still a rejection, not a crash
        if _riff_truncated(data):
            return _decode_failure(EOFError(), "WEBP", size, digest)
        return reject(RejectReason.CORRUPT, f"the image header is damaged ({type(exc).__name__}: {exc})")

    with opened:
        width, height = opened.size
        if width * height > limits.max_pixels:
            return reject(
                RejectReason.TOO_MANY_PIXELS,
                f"the image declares {width} x {height} = {width * height:,} pixels, more than the limit of "
                f"{limits.max_pixels:,}; scale it down before uploading",
            )
        if width == 0 or height == 0:
            return reject(RejectReason.CORRUPT, f"the image declares an empty canvas ({width} x {height})")
        animated = bool(getattr(opened, "is_animated", False))
        try:
            opened.load()  # the first frame only; the only place pixel data is decoded
            picture = _upright_rgb(opened)
        except Exception as exc:
            return _decode_failure(exc, opened.format, size, digest)
        return DecodedImage(picture, digest, opened.format, size, animated)


def _read(source: bytes | Path, limits: DecodeLimits) -> bytes | ImageRejection:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if len(data) > limits.max_bytes:
            return ImageRejection(RejectReason.TOO_LARGE, _too_large(len(data), limits), len(data), None)
        return data
    path = Path(source)
    try:
        size = path.stat().st_size
        if size > limits.max_bytes:
            return ImageRejection(RejectReason.TOO_LARGE, _too_large(size, limits), size, None)
        with path.open("rb") as handle:
            # Read one byte past the limit: a file growing after stat() is still bounded.
            data = handle.read(limits.max_bytes + 1)
    except OSError as exc:
        return ImageRejection(RejectReason.UNREADABLE, f"cannot read {path}: {exc.strerror or exc}", 0, None)
    if len(data) > limits.max_bytes:
        return ImageRejection(RejectReason.TOO_LARGE, _too_large(len(data), limits), len(data), None)
    return data


def _upright_rgb(opened: Image.Image) -> Image.Image:
    picture = ImageOps.exif_transpose(opened) or opened
    if picture.mode in ("RGBA", "LA", "PA") or (picture.mode == "P" and "transparency" in picture.info):
        rgba = picture.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return picture.convert("RGB")


def _decode_failure(exc: Exception, fmt: str | None, size: int, digest: str) -> ImageRejection:
    text = str(exc)
    if isinstance(exc, EOFError) or "truncated" in text.lower():
        return ImageRejection(
            RejectReason.TRUNCATED,
            f"the {fmt} file ends before its image data does ({size:,} bytes received); the upload was cut "
            "short: send the complete file",
            size,
            digest,
        )
    return ImageRejection(
        RejectReason.CORRUPT, f"the {fmt} image data is damaged ({type(exc).__name__}: {text})", size, digest
    )


def _riff_truncated(data: bytes) -> bool:
    """A WebP (RIFF) file shorter than the size its header declares: libwebp refuses it without saying why."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return False
    return int.from_bytes(data[4:8], "little") + 8 > len(data)


def _sniff_unsupported(data: bytes) -> str | None:
    for offset, magic, name in _KNOWN_UNSUPPORTED:
        if data[offset : offset + len(magic)] == magic:
            return name
    head = data[:512].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "SVG"
    return None


def _accepted(limits: DecodeLimits) -> str:
    return ", ".join(limits.formats)


def _too_large(size: int, limits: DecodeLimits) -> str:
    return f"the file has {size:,} bytes, more than the limit of {limits.max_bytes:,}; compress or scale it down"


__all__ = [
    "SUPPORTED_FORMATS",
    "DecodeLimits",
    "DecodedImage",
    "ImageRejection",
    "RejectReason",
    "decode_image",
    "media_path",
]
