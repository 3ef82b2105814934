"""Assemble the feature tables from raw platform tables (one row per content item each)."""

from __future__ import annotations

import polars as pl

from ml.campaigns import features as campaign
from ml.campaigns.links import post_artifacts, text_neighbours, text_signatures
from ml.features.author import author_features
from ml.features.images import image_features, image_post_text
from ml.features.network import network_features
from ml.features.text import text_signals
from ml.matching.text import TextMatchParams


def content_features(content: pl.DataFrame, image_text: pl.DataFrame | None = None) -> pl.DataFrame:
    """Text signals of the text as the classifier reads it (an image post: its caption, then the text in its
    image), the content's own platform context (surface, link and phone flags) and the image features
    (ml/features/images.py): `image_text` is the image_text table."""
    base = content.select(
        "content_id",
        "created_at",
        "surface",
        "language",
        "text_hash",
        pl.col("has_link").cast(pl.Int8),
        pl.col("has_phone").cast(pl.Int8),
    )
    return (
        base.join(text_signals(image_post_text(content, image_text)), on="content_id", how="left")
        .with_columns(pl.col("promo_words").cast(pl.Int8))
        .join(image_features(content, image_text), on="content_id", how="left")
    )


def campaign_features(
    content: pl.DataFrame,
    decisions: pl.DataFrame,
    appeals: pl.DataFrame,
    history: pl.DataFrame | None = None,
    signatures: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The campaign features (ml/campaigns/features.py FEATURES) of every post of `content`, point in time:
    what its near-duplicate copies and shared links, numbers and addresses among the posts of `history`
    (None: `content` itself) showed before it was posted. Texts already in `signatures` (the table the
    campaigns asset keeps, ml.campaigns.links SIGNATURES) are not signed again; the others are."""
    history = content if history is None else history
    params = TextMatchParams()
    signed = text_signatures(history.select("text_hash", "text"), signatures, params)
    neighbours = text_neighbours(signed, params)
    links = post_artifacts(history)
    removals = campaign.confirmed_removals(decisions, appeals)
    return campaign.campaign_features(content, history, neighbours, links, removals)


def scoring_frame(
    content: pl.DataFrame,
    users: pl.DataFrame,
    reports: pl.DataFrame,
    decisions: pl.DataFrame,
    appeals: pl.DataFrame,
    image_text: pl.DataFrame | None = None,
    history: pl.DataFrame | None = None,
    signatures: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """`content` with its text and every feature a model reads, point in time, one row per item.

    `content` may be any subset (one day's posts, say). The author and network features look back
    over `history` (every post, `content`'s included; None: `content` is the whole history) and the
    full `users`, `reports`, `decisions` and `appeals`: an author's earlier posts, the reports on
    them and their removals count whichever subset is scored, so a day scored alone gets the
    features that day gets inside a backfill, in the backtest and in training. An image post's text
    is its caption and then the text read in its image (`image_text`). `signatures`: the stored MinHash
    signatures of texts seen before (`campaign_features`), so a scoring path does not sign the history again.
    """
    history = content if history is None else history
    ids = content.select("content_id")
    return (
        image_post_text(content, image_text)
        .select("content_id", "text")
        .join(content_features(content, image_text), on="content_id")
        .join(author_features(history, users, reports, decisions, appeals).join(ids, on="content_id"), on="content_id")
        .join(
            network_features(history, users, decisions).drop("component_id").join(ids, on="content_id"), on="content_id"
        )
        .join(campaign_features(content, decisions, appeals, history, signatures), on="content_id")
    )


__all__ = ["author_features", "campaign_features", "content_features", "network_features", "scoring_frame"]

_I32 = {
    c: pl.Int32
    for c in (
        "text_chars",
        "text_words",
        "url_count",
        "phone_count",
        "email_count",
        "mention_count",
        "hashtag_count",
        "exclaim_count",
        "repeated_char_runs",
        "emoji_count",
        "leetspeak_tokens",
        "spaced_letter_runs",
    )
}

# The declared schema of each feature table: what the schema check holds a build to.
SCHEMAS: dict[str, dict] = {
    "content_features": {
        "content_id": pl.Int64,
        "created_at": pl.Datetime("us"),
        "surface": pl.String,
        "language": pl.String,
        "text_hash": pl.String,
        "has_link": pl.Int8,
        "has_phone": pl.Int8,
        **_I32,
        "upper_ratio": pl.Float32,
        "digit_ratio": pl.Float32,
        "promo_words": pl.Int8,
        "has_image": pl.Int8,
        "ocr_confidence": pl.Float32,
        "image_text_share": pl.Float32,
    },
    "author_features": {
        "content_id": pl.Int64,
        "account_age_days": pl.Float32,
        "follower_count": pl.Int64,
        "verified": pl.Boolean,
        "prior_posts": pl.Int64,
        "posts_last_24h": pl.Int64,
        "prior_reports_received": pl.Int64,
        "prior_enforcements": pl.Int64,
    },
    "network_features": {
        "content_id": pl.Int64,
        "component_id": pl.Int64,
        "component_size": pl.Int64,
        "component_enforced_share": pl.Float32,
        "shares_fingerprints": pl.Boolean,
    },
    "campaign_features": {
        "content_id": pl.Int64,
        **{c: pl.Int32 for c in campaign.FEATURES if c != "linked_removal_rate"},
        "linked_removal_rate": pl.Float32,
    },
}

RANGES: dict[str, dict[str, tuple]] = {
    "content_features": {
        **{c: (0, None) for c in _I32},
        "upper_ratio": (0, 1),
        "digit_ratio": (0, 1),
        "has_image": (0, 1),
        "ocr_confidence": (0, 1),
        "image_text_share": (0, 1),
    },
    "author_features": {
        "account_age_days": (0, None),
        "follower_count": (0, None),
        "prior_posts": (0, None),
        "posts_last_24h": (0, None),
        "prior_reports_received": (0, None),
        "prior_enforcements": (0, None),
    },
    "network_features": {"component_size": (1, None), "component_enforced_share": (0, 1)},
    "campaign_features": {
        **{c: (0, None) for c in campaign.FEATURES if c != "linked_removal_rate"},
        "linked_removal_rate": (0, 1),
    },
}
