"""The simulator's image posts: which posts are pictures, what they show, how they are uploaded, and the
ring accounts that post removed images again, changed the way evaders change them.

- A share of a day's regular posts are images: `SimConfig.image_share` of an ordinary account's posts,
  `IMAGE_AFFINITY` times that for trolls and rings (spam and scam rings post flyers). An image post keeps
  the corpus text its policy drew and shows it (ml.images.render: a meme, a chat screenshot or a flyer),
  with a short caption from `CAPTIONS` as the post's text; its label is the text's label. Half of the
  benign image posts are a picture with no text instead, the text then being the caption. Every upload
  goes through one or two `UPLOAD_PERTURBATIONS` and is stored as JPEG (a screenshot as PNG half the
  time, as phones save them).
- Rings fight removals. They appeal the removal of their images (`RING_APPEAL_RATE`), and after the
  appeal is lost, or soon after a removal they did not appeal, members of the ring post the image
  again 1-3 times (`REUPLOADS`), each copy changed by one of the `EVASIONS` (resize, crop, re-compression,
  mirror, border, sticker, watermark, brightness) under a new caption. A bank built from confirmed
  removals therefore meets copies that came after the confirmation, as a real one does. A copy comes
  at most `REUPLOAD_WITHIN_DAYS` after its original's day, so every event of it lies within the
  simulator's LOOKBACK_DAYS of that day.

Rendering costs tens of milliseconds an image, so a cohort only plans its images (`plan_images`,
`plan_reuploads`: what to draw, the perturbations, a seed); `render_media` draws those whose posts land
in the simulated days (a copy from its original's bytes, whatever day the original landed on) and
returns the files, their references for the content rows, and the ground truth. A seed fixes the bytes.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
import polars as pl
from PIL import Image

from ml.images.decode import SUPPORTED_FORMATS, media_path
from ml.images.render import drawable_text, render_benign_image, render_text_image
from ml.images.transforms import EVASIONS, TRANSFORMS, UPLOAD_PERTURBATIONS, apply_transforms, encode_image

# How much more often than an ordinary account each archetype posts images (ARCHETYPES order).
IMAGE_AFFINITY = np.array([1.0, 2.0, 4.0, 4.0])
BENIGN_PICTURE_SHARE = 0.5  # of benign image posts: a picture with no text, the text its caption
CAPTIONS: tuple[str, ...] = ("", "", "lol", "look at this", "read this", "so true", "share if you agree", "wow", "💯")
RING_APPEAL_RATE = 0.7  # a ring appeals this share of the removals of its images
REUPLOAD_WITHOUT_APPEAL = 0.5  # a removal the ring did not appeal (or won) is posted again this often
REUPLOADS = (1, 3)  # copies of a removed image a ring posts, inclusive
REUPLOAD_WITHIN_DAYS = 5  # a copy comes before the end of this many days from its original's day start
_DAY = 86_400
_HOUR = 3_600

PLAN_SCHEMA: dict[str, pl.DataType] = {
    "content_id": pl.Int64,
    "kind": pl.String,  # text (the corpus text drawn) | picture (no text)
    "shown_text": pl.String,  # the corpus text the image shows ("" for a picture)
    "text_hash": pl.String,  # of the corpus text the post carries (ml.text.text_hash)
    "perturbations": pl.String,  # upload perturbations, "+"-joined
    "seed": pl.Int64,
    "original_content_id": pl.Int64,  # a ring's copy: the removed post it copies (null for an original)
    "evasion": pl.String,  # a ring's copy: the EVASIONS transform applied (null for an original)
}


@dataclass(frozen=True)
class ImagePlan:
    """Which of a cohort's posts are images, as parallel arrays over the posts."""

    is_image: np.ndarray  # bool
    kind: np.ndarray  # "text" | "picture" | "" (not an image)
    caption: np.ndarray  # the post's text for image posts (object)
    perturbations: np.ndarray  # "+"-joined names (object)
    seed: np.ndarray  # int64


def plan_images(
    rng: np.random.Generator,
    archetype: np.ndarray,
    policy: np.ndarray,
    campaign: np.ndarray,
    texts: np.ndarray,
    share: float,
) -> ImagePlan:
    """Which posts are images (ring campaign bursts stay text) and how each is drawn and uploaded."""
    n = len(policy)
    chance = np.clip(share * IMAGE_AFFINITY[archetype], 0.0, 1.0)
    is_image = (campaign < 0) & (rng.random(n) < chance)
    picture = is_image & (policy == 0) & (rng.random(n) < BENIGN_PICTURE_SHARE)
    for i in np.flatnonzero(is_image & ~picture):
        if not drawable_text(str(texts[i]))[0]:  # nothing a font here can draw (emoji only): stays text
            is_image[i] = False
    kind = np.where(picture, "picture", np.where(is_image, "text", ""))
    caption = np.array([CAPTIONS[i] for i in rng.integers(0, len(CAPTIONS), size=n)], dtype=object)
    caption = np.where(picture, texts, caption)
    return ImagePlan(is_image, kind, caption, _perturbations(rng, n), rng.integers(1, 2**62, size=n, dtype=np.int64))


def _perturbations(rng: np.random.Generator, n: int) -> np.ndarray:
    count = rng.integers(1, 3, size=n)
    order = rng.permuted(np.tile(np.arange(len(UPLOAD_PERTURBATIONS)), (n, 1)), axis=1)
    return np.array(["+".join(UPLOAD_PERTURBATIONS[j] for j in order[i, : count[i]]) for i in range(n)], dtype=object)


@dataclass(frozen=True)
class Reuploads:
    """A ring's copies of removed images: parallel arrays over the copies."""

    original: np.ndarray  # index of the copied post in the cohort's posts
    author: np.ndarray  # index into the world's users
    created: np.ndarray  # epoch seconds
    evasion: np.ndarray  # EVASIONS names (object)
    caption: np.ndarray  # object
    seed: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.original)


def plan_reuploads(
    rng: np.random.Generator,
    day_start: int,
    removed: np.ndarray,
    lost_appeal_at: np.ndarray,
    decided_at: np.ndarray,
    ring_of_post: np.ndarray,
    members: dict[int, np.ndarray],
) -> Reuploads:
    """Copies of removed image posts by their rings. `removed` indexes the cohort's removed ring image
    posts; `lost_appeal_at` is when their appeal was upheld (-1: not appealed, or won), `decided_at` when
    they were removed; `members` holds each ring's accounts able to post."""
    after_appeal = lost_appeal_at[removed] >= 0
    again = after_appeal | (rng.random(len(removed)) < REUPLOAD_WITHOUT_APPEAL)
    start = np.where(after_appeal, lost_appeal_at[removed], decided_at[removed])
    copies = np.where(again, rng.integers(REUPLOADS[0], REUPLOADS[1] + 1, size=len(removed)), 0)
    original = np.repeat(removed, copies)
    # Each copy a few hours after the one before it, the first within a day of the loss.
    gaps = rng.integers(30 * 60, 12 * _HOUR, size=len(original))
    offsets = np.concatenate([np.cumsum(g) for g in np.split(gaps, np.cumsum(copies)[:-1])]) if len(original) else gaps
    created = np.repeat(start, copies) + offsets
    first_evasion = rng.integers(0, len(EVASIONS), size=len(removed))
    within = np.concatenate([np.arange(c) for c in copies]) if len(original) else np.zeros(0, dtype=np.int64)
    evasion = np.array([EVASIONS[(f + w) % len(EVASIONS)] for f, w in zip(np.repeat(first_evasion, copies), within)])
    author = np.array(
        [members[r][rng.integers(len(members[r]))] for r in ring_of_post[original]], dtype=np.int64
    ).reshape(-1)
    caption = np.array([CAPTIONS[i] for i in rng.integers(0, len(CAPTIONS), size=len(original))], dtype=object)
    seed = rng.integers(1, 2**62, size=len(original), dtype=np.int64)
    keep = created < day_start + REUPLOAD_WITHIN_DAYS * _DAY
    return Reuploads(
        original[keep], author[keep], created[keep], evasion[keep].astype(object), caption[keep], seed[keep]
    )


@dataclass(frozen=True)
class RenderedMedia:
    """What `render_media` drew: the files (one row per distinct file: media_path, media_sha256, data),
    the content rows' references (content_id, media_sha256, media_path) and the ground truth per post."""

    files: pl.DataFrame
    references: pl.DataFrame
    truth: pl.DataFrame


FILES_SCHEMA = {"media_path": pl.String, "media_sha256": pl.String, "data": pl.Binary}
TRUTH_SCHEMA: dict[str, pl.DataType] = {
    "content_id": pl.Int64,
    "media_sha256": pl.String,
    "kind": pl.String,
    "layout": pl.String,  # meme | screenshot | flyer | benign (a picture)
    "drawn_text": pl.String,  # the text as drawn, in reading order: OCR's reference
    "text_hash": pl.String,  # of the corpus text the post carries
    "perturbations": pl.String,
    "original_content_id": pl.Int64,
    "original_sha256": pl.String,
    "evasion": pl.String,
}


def draw_upload(kind: str, text: str, perturbations: str, seed: int) -> tuple[bytes, str, str]:
    """An original image post's file as uploaded (kind "text": `text` drawn; "picture": no text), its
    layout and the text drawn."""
    rng = np.random.default_rng(seed)
    rendered = render_benign_image(rng) if kind == "picture" else render_text_image(text, rng)
    image = apply_transforms(rendered.image, perturbations.split("+") if perturbations else [], rng)
    fmt = "PNG" if rendered.layout == "screenshot" and rng.random() < 0.5 else "JPEG"
    return encode_image(image, fmt, int(rng.integers(80, 96))), rendered.layout, rendered.text


def draw_copy(original: bytes, evasion: str, seed: int) -> bytes:
    """A ring's copy: the original as uploaded, changed by `evasion`, saved as JPEG again."""
    rng = np.random.default_rng(seed)
    image = TRANSFORMS[evasion].apply(Image.open(io.BytesIO(original)).convert("RGB"), rng)
    return encode_image(image, "JPEG", int(rng.integers(80, 96)))


def _extension(data: bytes) -> str:
    return SUPPORTED_FORMATS["PNG" if data.startswith(b"\x89PNG") else "JPEG"]


def render_media(plans: pl.DataFrame, content_ids: pl.Series) -> RenderedMedia:
    """Draw the planned images of the posts in `content_ids` (`plans`: every plan of the cohorts they came
    from, PLAN_SCHEMA, so a copy finds its original even when the original landed on another day)."""
    by_id = {row["content_id"]: row for row in plans.iter_rows(named=True)}
    wanted = plans.filter(pl.col("content_id").is_in(content_ids.implode()))
    originals: dict[int, tuple[bytes, str, str]] = {}

    def original(content_id: int) -> tuple[bytes, str, str]:
        if content_id not in originals:
            plan = by_id[content_id]
            originals[content_id] = draw_upload(plan["kind"], plan["shown_text"], plan["perturbations"], plan["seed"])
        return originals[content_id]

    files: dict[str, tuple[str, bytes]] = {}
    refs, truth = [], []
    for plan in wanted.iter_rows(named=True):
        source = plan["original_content_id"]
        if source is None:
            data, layout, drawn = original(plan["content_id"])
            source_sha = None
        else:
            first, layout, drawn = original(source)
            data, source_sha = draw_copy(first, plan["evasion"], plan["seed"]), hashlib.sha256(first).hexdigest()
        sha = hashlib.sha256(data).hexdigest()
        path = media_path(sha, _extension(data))
        files.setdefault(path, (sha, data))
        refs.append({"content_id": plan["content_id"], "media_sha256": sha, "media_path": path})
        truth.append(
            {
                "content_id": plan["content_id"],
                "media_sha256": sha,
                "kind": plan["kind"],
                "layout": layout,
                "drawn_text": drawn,
                "text_hash": plan["text_hash"],
                "perturbations": plan["perturbations"],
                "original_content_id": source,
                "original_sha256": source_sha,
                "evasion": plan["evasion"],
            }
        )
    return RenderedMedia(
        pl.DataFrame(
            [{"media_path": p, "media_sha256": s, "data": d} for p, (s, d) in files.items()], schema=FILES_SCHEMA
        ),
        pl.DataFrame(refs, schema={"content_id": pl.Int64, "media_sha256": pl.String, "media_path": pl.String}),
        pl.DataFrame(truth, schema=TRUTH_SCHEMA),
    )


__all__ = [
    "CAPTIONS",
    "FILES_SCHEMA",
    "IMAGE_AFFINITY",
    "PLAN_SCHEMA",
    "REUPLOAD_WITHIN_DAYS",
    "RING_APPEAL_RATE",
    "ImagePlan",
    "draw_copy",
    "draw_upload",
    "RenderedMedia",
    "Reuploads",
    "plan_images",
    "plan_reuploads",
    "render_media",
]
