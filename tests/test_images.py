"""Safe decoding (every bad kind of upload answered with its reason), rendering and transforms."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from ml.images.decode import DecodedImage, DecodeLimits, ImageRejection, RejectReason, decode_image, media_path
from ml.images.render import (
    BUILTIN_FACE,
    MIN_FONT_PX,
    TEXT_LAYOUTS,
    font_faces,
    render_benign_image,
    render_text_image,
)
from ml.images.transforms import EVASIONS, TRANSFORMS, UPLOAD_PERTURBATIONS, apply_transforms, encode_image

TEXT = "Congratulations you won a free cruise call 0800 123 4567 or visit claim-prize.com today to collect it"


def _picture(width: int = 120, height: int = 80, seed: int = 0) -> Image.Image:
    cells = np.random.default_rng(seed).integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    return Image.fromarray(cells).resize((width, height), Image.Resampling.BICUBIC)


def _encoded(fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    _picture().save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height, with one tiny compressed row of data: a bomb's shape."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def _rejected(result, reason: RejectReason) -> ImageRejection:
    assert isinstance(result, ImageRejection), f"expected a {reason} rejection, got {result}"
    assert result.reason == reason, result.message
    assert result.message
    return result


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("GIF", "gif"), ("BMP", "bmp")])
def test_accepted_formats_decode_to_rgb_with_hash_and_extension_from_the_real_format(fmt, ext, tmp_path):
    data = _encoded(fmt)
    path = tmp_path / "upload.jpg"  # the name lies about the format; the bytes decide
    path.write_bytes(data)
    for source in (data, path):
        result = decode_image(source)
        assert isinstance(result, DecodedImage), result
        assert result.image.mode == "RGB" and result.image.size == (120, 80)
        assert result.format == fmt and result.extension == ext and not result.animated
        assert result.byte_size == len(data)
        assert result.media_path == f"media/{result.sha256[:2]}/{result.sha256}.{ext}"
    assert media_path("ab" + "0" * 62, "png") == f"media/ab/ab{'0' * 62}.png"


def test_empty_bytes_are_rejected():
    _rejected(decode_image(b""), RejectReason.EMPTY)


def test_bytes_that_are_no_image_are_rejected():
    result = _rejected(decode_image(b"<html><body>hello</body></html>"), RejectReason.NOT_AN_IMAGE)
    assert "JPEG" in result.message  # says what to send instead


@pytest.mark.parametrize(
    "data,named",
    [
        (b"II*\x00" + b"\x00" * 64, "TIFF"),
        (b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64, "HEIC"),
        (b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'></svg>", "SVG"),
        (b"%PDF-1.7\n" + b"\x00" * 64, "PDF"),
    ],
)
def test_known_unsupported_formats_are_named(data, named):
    assert named in _rejected(decode_image(data), RejectReason.UNSUPPORTED_FORMAT).message


def test_a_real_tiff_is_unsupported_not_garbage():
    assert "TIFF" in _rejected(decode_image(_encoded("TIFF")), RejectReason.UNSUPPORTED_FORMAT).message


def test_a_format_left_out_of_the_limits_is_unsupported():
    limits = DecodeLimits(formats=("JPEG", "PNG"))
    _rejected(decode_image(_encoded("GIF"), limits), RejectReason.NOT_AN_IMAGE)
    assert isinstance(decode_image(_encoded("PNG"), limits), DecodedImage)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_truncated_files_are_rejected_as_truncated(fmt):
    data = _encoded(fmt)
    _rejected(decode_image(data[: len(data) // 2]), RejectReason.TRUNCATED)


def test_a_header_declaring_more_pixels_than_the_limit_is_refused_before_decoding():
    # 7,000 x 7,000 = 49 megapixels: over our 40, under Pillow's own (process-wide) guard.
    result = _rejected(decode_image(_png_header_only(7000, 7000)), RejectReason.TOO_MANY_PIXELS)
    assert "49,000,000" in result.message and "40,000,000" in result.message


def test_a_decompression_bomb_past_pillows_guard_is_refused_and_global_state_is_untouched():
    before_limit, before_filters = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    _rejected(decode_image(_png_header_only(30000, 30000)), RejectReason.TOO_MANY_PIXELS)
    assert Image.MAX_IMAGE_PIXELS == before_limit
    assert warnings.filters == before_filters


def test_more_bytes_than_the_limit_are_refused_without_decoding(tmp_path):
    data = _encoded("PNG")
    limits = DecodeLimits(max_bytes=len(data) - 1)
    _rejected(decode_image(data, limits), RejectReason.TOO_LARGE)
    path = tmp_path / "big.png"
    path.write_bytes(data)
    _rejected(decode_image(path, limits), RejectReason.TOO_LARGE)


def test_an_animated_gif_decodes_its_first_frame_and_says_so():
    frames = [Image.new("RGB", (40, 30), colour) for colour in ("red", "blue", "green")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    result = decode_image(buffer.getvalue())
    assert isinstance(result, DecodedImage) and result.animated
    assert result.image.getpixel((5, 5)) == (255, 0, 0)


def test_a_missing_path_is_unreadable(tmp_path):
    _rejected(decode_image(tmp_path / "nope.png"), RejectReason.UNREADABLE)


def test_exif_orientation_and_transparency_are_applied_as_a_viewer_shows_them():
    wide = Image.new("RGB", (60, 20), "black")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    wide.save(buffer, "JPEG", exif=exif.tobytes())
    assert decode_image(buffer.getvalue()).image.size == (20, 60)
    clear = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    buffer = io.BytesIO()
    clear.save(buffer, "PNG")
    assert decode_image(buffer.getvalue()).image.getpixel((3, 3)) == (255, 255, 255)


def test_no_byte_string_makes_decoding_raise():
    rng = np.random.default_rng(3)
    valid = [_encoded(f) for f in ("JPEG", "PNG", "WEBP", "GIF", "BMP")]
    for i in range(300):
        data = bytearray(valid[i % len(valid)])
        for position in rng.integers(0, len(data), size=int(rng.integers(1, 20))):
            data[position] = int(rng.integers(0, 256))
        if i % 7 == 0:
            data = data[: int(rng.integers(0, len(data)))]
        result = decode_image(bytes(data))
        assert isinstance(result, DecodedImage | ImageRejection)


# --- rendering ------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", TEXT_LAYOUTS)
def test_a_layout_draws_the_text_it_reports_within_the_upload_size_range(layout):
    rendered = render_text_image(TEXT, np.random.default_rng(5), layout)
    assert rendered.layout == layout
    assert 320 <= rendered.image.width <= 800 and rendered.image.height <= 1200
    assert rendered.font_size >= MIN_FONT_PX
    drawn = rendered.text.lower().split()
    assert set(drawn) <= set(TEXT.lower().split()) and len(drawn) >= len(TEXT.split()) // 2


def test_a_flyer_puts_phone_numbers_and_links_on_their_own_lines_last():
    rendered = render_text_image(TEXT, np.random.default_rng(1), "flyer")
    assert rendered.text.endswith("0800 123 4567 claim-prize.com")


def test_a_text_too_long_to_fit_is_cut_at_a_word_boundary_and_reports_what_was_drawn():
    long_text = " ".join(f"word{i}" for i in range(600))
    rendered = render_text_image(long_text, np.random.default_rng(2), "meme")
    words = rendered.text.split()
    assert 0 < len(words) < 600
    assert set(words) <= set(long_text.split())


def test_rendering_is_deterministic_for_a_seed_and_varies_across_seeds():
    first = encode_image(render_text_image(TEXT, np.random.default_rng(9)).image, "PNG")
    again = encode_image(render_text_image(TEXT, np.random.default_rng(9)).image, "PNG")
    other = encode_image(render_text_image(TEXT, np.random.default_rng(10)).image, "PNG")
    assert first == again and first != other


def test_without_dejavu_the_builtin_font_renders(tmp_path):
    faces = font_faces(tmp_path)  # a directory with no font files
    assert [f.name for f in faces] == [BUILTIN_FACE]
    for layout in TEXT_LAYOUTS:
        rendered = render_text_image(TEXT, np.random.default_rng(0), layout, faces)
        assert rendered.font == BUILTIN_FACE and rendered.text


def test_dejavu_faces_are_found_when_installed():
    names = [f.name for f in font_faces()]
    assert names[-1] == BUILTIN_FACE
    if any(f.path is not None for f in font_faces()):
        assert "dejavu-sans" in names


def test_benign_images_carry_no_text_and_differ():
    rng = np.random.default_rng(4)
    images = [render_benign_image(rng) for _ in range(5)]
    assert all(r.text == "" and r.layout == "benign" for r in images)
    assert len({encode_image(r.image, "PNG") for r in images}) == 5


def test_an_empty_text_is_refused_with_a_pointer_to_benign_images():
    with pytest.raises(ValueError, match="render_benign_image"):
        render_text_image("   ", np.random.default_rng(0))


# --- transforms -----------------------------------------------------------------------------------


def test_every_transform_is_named_in_one_family_and_changes_the_picture_deterministically():
    assert set(UPLOAD_PERTURBATIONS) | set(EVASIONS) == set(TRANSFORMS)
    assert {"resize", "crop", "recompress", "mirror", "border", "emoji", "watermark", "brightness"} <= set(EVASIONS)
    base = render_text_image(TEXT, np.random.default_rng(0), "meme").image
    for name, transform in TRANSFORMS.items():
        out = transform.apply(base, np.random.default_rng(1))
        again = transform.apply(base, np.random.default_rng(1))
        assert out.mode == "RGB", name
        assert np.array_equal(np.asarray(out), np.asarray(again)), name
        assert out.size != base.size or not np.array_equal(np.asarray(out), np.asarray(base)), name


def test_a_crop_takes_at_most_ten_percent_of_each_side_pair():
    base = Image.new("RGB", (500, 400), "white")
    for seed in range(20):
        w, h = TRANSFORMS["crop"].apply(base, np.random.default_rng(seed)).size
        assert 450 <= w < 500 and 360 <= h < 400


def test_apply_transforms_names_an_unknown_transform():
    with pytest.raises(ValueError, match="unknown transform 'sepia'"):
        apply_transforms(Image.new("RGB", (10, 10)), ["sepia"], np.random.default_rng(0))
