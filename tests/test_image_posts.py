"""Image posts through the pipeline's library half: the simulator's image posts and their files, the
image_text rows (OCR once per file, rejected files with their reason), and how an image post reaches
the classifier (caption, then the text in the image) and the risk model (image features)."""

from __future__ import annotations

import hashlib
from datetime import datetime

import numpy as np
import polars as pl

from ml.features.images import (
    IMAGE_TEXT_SCHEMA,
    image_features,
    image_post_text,
    images_to_read,
    read_images,
)
from ml.images.decode import media_path
from ml.images.ocr import character_error_rate
from ml.images.render import render_text_image
from ml.images.transforms import encode_image
from ml.lake import Lake

SPAM = "Win a free phone now, text WIN to 80800 today"


def test_image_text_reads_each_file_once_and_gives_a_bad_file_its_reason(tmp_path):
    lake = Lake(tmp_path)
    data = encode_image(render_text_image(SPAM, np.random.default_rng(3), "flyer").image, "PNG")
    good = hashlib.sha256(data).hexdigest()
    files = {media_path(good, "png"): data, media_path("0" * 64, "jpg"): b"GIF89a broken"}
    assert [lake.write_media(p, d) for p, d in files.items()] == [True, True]
    assert lake.write_media(media_path(good, "png"), data) is False  # stored once

    posted = pl.DataFrame({"media_sha256": [good, "0" * 64, good], "media_path": [*files, media_path(good, "png")]})
    known, new = images_to_read(posted, pl.DataFrame(schema=IMAGE_TEXT_SCHEMA))
    assert known.height == 0 and new["media_sha256"].to_list() == [good, "0" * 64]
    read = read_images(
        [lake.media_file(p) for p in new["media_path"]],
        new["media_sha256"],
        new["media_path"],
        datetime(2026, 1, 1),
        on_ray=False,
    )
    assert read.schema == pl.Schema(IMAGE_TEXT_SCHEMA)
    assert character_error_rate(SPAM, read["text"][0]) < 0.1 and read["rejected"][0] == ""
    assert read["pdq_quality"][0] >= 50 and len(read["pdq"][0]) == 64
    assert read["rejected"][1] == "not_an_image" and read["pdq_codes"][1] == b""

    # A second pass reads nothing; a file that was missing when tried is tried again.
    _, again = images_to_read(posted, read)
    assert again.height == 0
    missing = read.with_columns(
        rejected=pl.when(pl.col("rejected") != "").then(pl.lit("unreadable")).otherwise("rejected")
    )
    _, retried = images_to_read(posted, missing)
    assert retried["media_sha256"].to_list() == ["0" * 64]


def test_an_image_post_is_read_as_its_caption_then_its_image_text_and_gets_image_features():
    content = pl.DataFrame(
        {
            "content_id": [1, 2, 3],
            "text": ["lol", "plain text post", "no text found"],
            "media_type": ["image", "text", "image"],
            "media_sha256": ["a", None, "b"],
        }
    )
    image_text = pl.DataFrame(
        {"media_sha256": ["a", "b"], "text": ["TEXT WIN TO 80800", ""], "confidence": [0.9, 0.0]},
    )
    assert image_post_text(content, image_text)["text"].to_list() == [
        "lol TEXT WIN TO 80800",
        "plain text post",
        "no text found",
    ]
    features = image_features(content, image_text)
    assert features["has_image"].to_list() == [1, 0, 1]
    assert features["ocr_confidence"].to_list() == [np.float32(0.9), 0.0, 0.0]
    share = features["image_text_share"].to_list()
    assert 0.8 < share[0] < 1 and share[1:] == [0.0, 0.0]
    # An external file of texts (no media column) is left as it is.
    assert image_post_text(content.drop("media_sha256"), image_text).equals(content.drop("media_sha256"))


def test_the_simulator_stores_each_image_post_once_and_ring_copies_name_their_removed_original(pool):
    from datetime import date, timedelta

    from ml.simulator import simulate_days
    from ml.world import SimConfig

    config = SimConfig(seed=11, users=600, content_per_day=400, image_share=0.02, start_date=date(2026, 3, 1))
    tables = simulate_days(config, pool, config.start_date, config.start_date + timedelta(days=9))
    content, truth, media = tables["content"], tables["image_truth"], tables["media"]
    images = content.filter(pl.col("media_type") == "image")
    assert images.height > 20 and content.filter(pl.col("media_type") == "text")["media_sha256"].null_count() == (
        content.height - images.height
    )
    assert set(images["media_path"]) == set(media["media_path"]) and media["media_sha256"].is_unique().all()
    assert all(hashlib.sha256(d).hexdigest() == s for s, d in media.select("media_sha256", "data").iter_rows())
    copies = truth.filter(pl.col("original_content_id").is_not_null())
    assert copies.height > 0 and copies["evasion"].null_count() == 0
    # A copy's original is a removed image post of the same world, and the copy's file differs from it.
    assert (copies["media_sha256"] != copies["original_sha256"]).all()
    removed = tables["decisions"].filter(pl.col("action") == "remove")["content_id"]
    assert copies["original_content_id"].is_in(removed.implode()).all()
