"""Images in POST /v1/score: read (OCR, PDQ) and scored with their caption, matched against a hash bank,
every bad image answered 4xx with its reason, and images kept off the text path: a text request is
answered while an image is still being read, a full image queue is a 503, a slow image a 504."""

import asyncio
import base64
import io
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from ml.images.ocr import OcrResult
from ml.images.render import render_text_image
from ml.images.transforms import encode_image
from ml.matching.banks import ConfirmedRemoval, bank_removed_image, entries_frame
from ml.scoring.images import ANIMATED_NOTE
from ml.scoring.serving import ServingLimits, create_app
from ml.training.artifacts import PROBA_COLUMNS
from tests.helpers import labelled_training_frame, small_champion

FLYER = "Cheap followers and likes, message us on WhatsApp today for a special price"


@pytest.fixture(scope="module")
def models(pool, tmp_path_factory) -> Path:
    models = tmp_path_factory.mktemp("images") / "models"
    frame, _ = labelled_training_frame(pool, seed=41, days=6, rows=1500)
    small_champion(frame, models)
    return models


@pytest.fixture(scope="module")
def flyer() -> Image.Image:
    return render_text_image(FLYER, np.random.default_rng(3), "flyer").image


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post_all(app, bodies: list[dict]) -> list[httpx.Response]:
    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await asyncio.gather(*(client.post("/v1/score", json=b) for b in bodies))

    return asyncio.run(main())


def test_an_image_is_read_scored_with_its_caption_and_matched_against_a_bank(models, flyer, tmp_path):
    banks = tmp_path / "hash_banks"
    banks.mkdir()
    banked = bank_removed_image(flyer, "removed", "spam", ConfirmedRemoval("d1", "c1"), ocr_text=FLYER)
    entries_frame(banked.entries).write_parquet(banks / "part-0.parquet")
    app = create_app(models, ServingLimits(), banks_dir=banks)
    # A re-upload: smaller and re-compressed, as evaders post it; and a text item beside it.
    reupload = encode_image(flyer.resize((flyer.width * 3 // 4, flyer.height * 3 // 4)), "JPEG", 70)
    body = {
        "items": [
            {"id": "img", "image": b64(reupload), "text": "look at this"},
            {"id": "txt", "text": "good morning everyone"},
        ]
    }
    (answer,) = post_all(app, [body])
    assert answer.status_code == 200, answer.text
    image, text = answer.json()["results"]
    assert image["id"] == "img" and text["id"] == "txt"
    facts = image["image"]
    assert facts["format"] == "JPEG" and facts["animated"] is False and "note" not in facts
    assert "whatsapp" in facts["ocr_text"].lower() and facts["ocr_lines"] >= 1
    assert all(0.0 <= image[c] <= 1.0 for c in PROBA_COLUMNS) and image["action"] in ("allow", "review", "remove")
    kinds = {(m["bank"], m["kind"], m["policy"], m["source"]) for m in image["bank_matches"]}
    assert ("removed", "pdq", "spam", "confirmed_removal") in kinds
    assert ("removed", "text", "spam", "confirmed_removal") in kinds
    assert "image" not in text and "bank_matches" not in text


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _bad_images(flyer: Image.Image) -> dict[str, tuple[bytes, int, str]]:
    """kind -> (bytes, status, reason)"""
    tiff = io.BytesIO()
    flyer.resize((120, 150)).save(tiff, "TIFF")
    bomb = _png(Image.new("1", (10_000, 10_000)))  # 100 megapixels in a few KB
    noisy = _png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)))
    jpeg = encode_image(flyer, "JPEG", 90)
    return {
        "not an image": (b"just some words, not a picture", 422, "not_an_image"),
        "zero bytes": (b"", 422, "empty"),
        "truncated": (jpeg[: len(jpeg) // 2], 422, "truncated"),
        "unsupported format": (tiff.getvalue(), 415, "unsupported_format"),
        "decompression bomb": (bomb, 422, "too_many_pixels"),
        "over the byte limit": (noisy, 413, "too_large"),
    }


def test_every_bad_image_kind_is_a_4xx_with_its_reason(models, flyer):
    bad = _bad_images(flyer)
    assert len(bad["over the byte limit"][0]) > 200_000 > len(bad["decompression bomb"][0])
    app = create_app(models, ServingLimits(image_max_bytes=200_000))
    bodies = [{"items": [{"text": "ok"}, {"image": b64(data)}]} for data, _, _ in bad.values()]
    bodies.append({"items": [{"image": "not base64 at all!"}]})
    bodies.append({"items": [{"id": "nothing"}]})
    answers = post_all(app, bodies)
    for (kind, (_, status, reason)), answer in zip(bad.items(), answers):
        assert answer.status_code == status, (kind, answer.text)
        body = answer.json()
        assert body["reason"] == reason and body["problems"][0].startswith(f"items.1.image: {reason}: "), kind
    assert answers[-2].status_code == 422 and "base64" in answers[-2].json()["problems"][0]
    assert answers[-1].status_code == 422 and "needs `text`" in answers[-1].json()["problems"][0]


def test_an_animated_image_is_read_from_its_first_frame_and_says_so(models, flyer):
    frames = [flyer.convert("RGB"), Image.new("RGB", flyer.size, (0, 0, 0))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100)
    app = create_app(models)
    (answer,) = post_all(app, [{"items": [{"image": b64(buffer.getvalue())}]}])
    assert answer.status_code == 200, answer.text
    facts = answer.json()["results"][0]["image"]
    assert facts["animated"] is True and facts["note"] == ANIMATED_NOTE
    assert "whatsapp" in facts["ocr_text"].lower()  # the first frame, not the black second one


class HeldOcr:
    """OCR that does not return until the test lets it: an image as slow as the test needs."""

    def __init__(self):
        self.started, self.release = threading.Event(), threading.Event()

    def read(self, image):
        self.started.set()
        self.release.wait(30)
        return OcrResult("held text", 0.9, 1, 0.0)


def test_a_slow_image_does_not_hold_up_text_and_a_full_image_queue_is_refused(models, flyer):
    """While one image is being read (held), a text request is answered, though only one request may
    be in flight (an image waiting for its images counts against the image limit instead); a second
    image request is refused at once with 503 + Retry-After; the held image is then answered."""
    ocr = HeldOcr()
    app = create_app(models, ServingLimits(max_in_flight=1, image_max_waiting=1, image_timeout_s=60), ocr=ocr)
    image = {"items": [{"image": b64(encode_image(flyer, "PNG"))}]}

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            held = asyncio.create_task(client.post("/v1/score", json=image))
            await asyncio.to_thread(ocr.started.wait, 30)
            text = await client.post("/v1/score", json={"items": [{"text": "hello there"}]})
            refused = await client.post("/v1/score", json=image)
            still_reading = not held.done()
            ocr.release.set()
            return text, refused, still_reading, await held

    text, refused, still_reading, held = asyncio.run(main())
    assert text.status_code == 200 and still_reading
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1" and "busy" in refused.json()["error"]
    assert held.status_code == 200 and held.json()["results"][0]["image"]["ocr_text"] == "held text"


def test_an_image_not_read_within_its_timeout_is_a_504(models, flyer):
    ocr = HeldOcr()
    app = create_app(models, ServingLimits(image_timeout_s=0.2), ocr=ocr)
    try:
        (answer,) = post_all(app, [{"items": [{"image": b64(encode_image(flyer, "PNG"))}]}])
    finally:
        ocr.release.set()
    assert answer.status_code == 504 and "within 0.2 s" in answer.json()["error"]


def test_an_image_item_with_context_is_scored_with_the_bank_features_its_read_found():
    # The risk model reads bank features as batch scoring builds them; the reader computes them per image.
    from ml.matching.bank_matches import NO_PDQ_MATCH
    from ml.scoring.images import ImageRead
    from ml.scoring.serving import Context, Item, items_frame, with_read

    read = ImageRead(None, "call now", 0.9, 1, 100, [], bank_features=(4, 0.7))
    with_context = Item(text="look", image="x", context=Context(account_age_days=2.0))
    row = items_frame([with_read(with_context, read)]).row(0, named=True)
    assert (row["text"], row["bank_pdq_distance"], row["bank_text_jaccard"]) == ("look call now", 4, 0.7)
    nothing = items_frame([with_read(with_context, ImageRead(None, "", 0.0, 0, 100, [], (NO_PDQ_MATCH, 0.0)))])
    assert (nothing["bank_pdq_distance"][0], nothing["bank_text_jaccard"][0]) == (NO_PDQ_MATCH, 0.0)
    # No banks searched: unknown, not "no match"; no context: the classifier answers alone, as in batch.
    assert "bank_pdq_distance" not in items_frame([with_read(with_context, ImageRead(None, "a", 1, 1, 100, []))])
    assert items_frame([with_read(Item(text="look", image="x"), read)]).columns == ["text"]


class FixedOcr:
    def __init__(self, text: str):
        self.text = text

    def read(self, image):
        return OcrResult(self.text, 0.9, 1, 0.0)


def test_the_reader_builds_bank_features_from_the_image_and_its_text_but_not_the_caption(flyer, tmp_path):
    # Batch scoring matches an image post by PDQ and by the text OCR read in it; a caption that copies a
    # banked text is reported as a match but is not a bank feature, or the two paths would disagree.
    from ml.images.decode import DecodeLimits
    from ml.matching.bank_matches import NO_PDQ_MATCH
    from ml.scoring.images import BankSource, ImageReader

    banks = tmp_path / "hash_banks"
    banks.mkdir()
    banked = bank_removed_image(flyer, "removed", "spam", ConfirmedRemoval("d1", "c1"), ocr_text=FLYER)
    entries_frame(banked.entries).write_parquet(banks / "part-0.parquet")
    data = encode_image(flyer, "PNG", 95)
    ocr = FixedOcr("a sunny day at the beach with friends and family")

    def read(directory, caption):
        reader = ImageReader(1, 4, 30.0, DecodeLimits(), BankSource(directory), ocr=ocr)
        return asyncio.run(reader.read({0: (data, caption)}))[0]

    captioned = read(banks, FLYER)
    assert {(m["kind"], m.get("of")) for m in captioned.matches} == {("pdq", None), ("text", "caption")}
    distance, jaccard = captioned.bank_features
    assert distance <= 18 and jaccard == 0.0
    ocr.text = FLYER  # now the text read in the image is the banked one
    assert read(banks, "").bank_features[1] >= 0.5
    assert read(tmp_path / "no-banks", FLYER).bank_features is None  # no bank loaded: unknown
    other = encode_image(render_text_image("good morning", np.random.default_rng(5), "meme").image, "PNG", 95)
    ocr.text = "good morning"
    reader = ImageReader(1, 4, 30.0, DecodeLimits(), BankSource(banks), ocr=ocr)
    assert asyncio.run(reader.read({0: (other, "")}))[0].bank_features == (NO_PDQ_MATCH, 0.0)
