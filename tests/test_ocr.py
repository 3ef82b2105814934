"""OCR with the packaged PP-OCR model: reads rendered text within the measured error, batches, and
answers bad uploads in place."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ml.images.decode import ImageRejection, RejectReason
from ml.images.ocr import (
    OcrParams,
    OcrResult,
    character_error_rate,
    read_images,
    read_sources,
    read_sources_on_ray,
    results_frame,
)
from ml.images.render import TEXT_LAYOUTS, render_benign_image, render_text_image
from ml.images.transforms import encode_image

KNOWN = "Limited offer: send your bank PIN to our agent today and we will double your savings, guaranteed"
# bench/matching.py (`--only ocr`): over 60 rendered corpus texts, CER mean 0.020, median 0.009,
# 90th percentile 0.056, worst 0.125 (a shouted meme caption with words run together).
CER_BOUND = 0.06


def test_ocr_reads_a_rendered_known_text_in_every_layout_within_the_measured_error():
    """Each layout's rendering of KNOWN (seed 0) must be read with CER <= CER_BOUND, the 90th
    percentile measured on 60 renders of real corpus texts; a worse reading means the engine,
    its settings or the space restoration regressed."""
    rendered = [render_text_image(KNOWN, np.random.default_rng(0), layout) for layout in TEXT_LAYOUTS]
    results = read_images([r.image for r in rendered])
    for r, result in zip(rendered, results):
        assert character_error_rate(r.text, result.text) <= CER_BOUND, (r.layout, r.text, result.text)
        assert result.boxes >= 1 and 0.5 <= result.confidence <= 1.0 and result.seconds > 0


def test_a_picture_without_text_reads_as_nothing():
    result = read_images([Image.new("RGB", (400, 300), (200, 220, 240))])[0]
    assert result == OcrResult("", 0.0, 0, result.seconds)


def test_character_error_rate_compares_normalised_text():
    assert character_error_rate("Hello  World", "hello world") == 0.0
    assert character_error_rate("Ｈｅｌｌｏ ❤️", "hello") == 0.0  # full-width and pictographs
    assert character_error_rate("abcd", "abxd") == 0.25
    assert character_error_rate("", "") == 0.0 and character_error_rate("", "x") == 1.0


def test_sources_that_are_not_images_come_back_as_their_rejection_in_place():
    good = encode_image(render_benign_image(np.random.default_rng(1)).image, "PNG")
    results = read_sources([b"not an image", good, b""])
    assert isinstance(results[0], ImageRejection) and results[0].reason == RejectReason.NOT_AN_IMAGE
    assert isinstance(results[1], OcrResult)
    assert results[2].reason == RejectReason.EMPTY
    frame = results_frame(["a", "b", "c"], results)
    assert frame["rejected"].to_list() == ["not_an_image", "", "empty"]
    assert frame.columns == ["key", "text", "confidence", "boxes", "seconds", "rejected"]
    with pytest.raises(ValueError, match="2 keys for 3 results"):
        results_frame(["a", "b"], results)


def test_settings_are_checked():
    with pytest.raises(ValueError, match="intra_op_threads"):
        OcrParams(intra_op_threads=0)


def test_ray_path_needs_a_connected_ray():
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray connection from another test is open")
    with pytest.raises(RuntimeError, match="connected Ray"):
        read_sources_on_ray([b"x"])


@pytest.mark.e2e
def test_ocr_on_ray_workers_reads_what_one_process_reads():
    """Two actors of one CPU each on a local cluster, results in input order, rejections in place."""
    import ray

    rng = np.random.default_rng(3)
    images = [render_text_image(KNOWN, rng, layout).image for layout in TEXT_LAYOUTS]
    sources = [encode_image(im, "PNG") for im in images] + [b"garbage"]
    local = read_sources(sources)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with pytest.raises(ValueError, match="need 3 CPUs; the Ray cluster has 2"):
            read_sources_on_ray(sources, workers=3)
        remote = read_sources_on_ray(sources, workers=2, batch_size=1)
    finally:
        ray.shutdown()
    assert [r.text for r in remote[:3]] == [r.text for r in local[:3]]
    assert isinstance(remote[3], ImageRejection)
    buffer = io.BytesIO(sources[0])
    assert Image.open(buffer).size == images[0].size
