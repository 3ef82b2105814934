"""A day's content matched against every hash bank: the `bank_matches` table, and the closest match of
each item as the enforcement policy reads it (ml.enforcement.BANK_MATCH_COLUMNS).

Each item is looked up once: an image post by its PDQ codes (as is and mirrored, reference and robust,
from `image_text`) against every PDQ bank within `radius`, and by the text OCR read in it against every
text bank; a text post by its text. An item never matches an entry built from itself: the removed
original is in the bank because of what it is, and calling it its own re-upload would count every
confirmed removal as a catch.

The risk model reads an item's matches as two features (`bank_match_features`, BANK_FEATURES), point in
time: only entries the item could have met when it was posted count.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ml.enforcement import BANK_MATCH_COLUMNS
from ml.matching.banks import BankIndex, ConfirmedRemoval, describe_provenance, entries_from_frame
from ml.matching.text import TextMatchParams

BANK_MATCHES = "bank_matches"  # the table, under lake/scores/bank_matches/date=D/ (the items' day)
MATCH_SCHEMA: dict[str, pl.DataType] = {
    "content_id": pl.Int64,
    "kind": pl.String,  # pdq | text: how the item matched
    "bank": pl.String,
    "policy": pl.String,  # the bank entry's
    "distance": pl.Int32,  # PDQ Hamming distance (null for a text match)
    "jaccard": pl.Float64,  # estimated Jaccard of the texts (null for a PDQ match)
    "source": pl.String,  # confirmed_removal | import
    "decision_id": pl.String,  # a confirmed removal's decision
    "entry_content_id": pl.String,  # the removed content the entry was built from
    "file_name": pl.String,  # an imported entry's file and line
    "row_number": pl.Int64,
    "entry_confirmed_at": pl.Datetime("us", "UTC"),  # when a confirmed removal's entry joined its bank (null: import)
    "provenance": pl.String,  # one line a moderator reads (ml.matching.banks.describe_provenance)
    "closest": pl.Boolean,  # the item's closest match: the one its enforcement decision reads
}


def match_items(
    entries: pl.DataFrame,
    content_ids: np.ndarray,
    codes: np.ndarray,
    quality: np.ndarray,
    texts: list[str],
    radius: int,
    text_params: TextMatchParams = TextMatchParams(),
) -> pl.DataFrame:
    """Every (item, bank entry) match of the items `content_ids`: `codes` (n, k, 32) and `quality` (n,)
    their PDQ codes (quality 0 for an item without an image, which then never matches by PDQ), `texts`
    what is matched as text ("" for nothing). `entries` is in the `entries_frame` shape."""
    content_ids = np.asarray(content_ids, dtype=np.int64)
    if entries.is_empty() or not len(content_ids):
        return pl.DataFrame(schema=MATCH_SCHEMA)
    bank = entries_from_frame(entries)
    index = BankIndex(bank, text_params)
    own = np.array(
        [int(e.provenance.content_id) if isinstance(e.provenance, ConfirmedRemoval) else -1 for e in bank],
        dtype=np.int64,
    )

    def not_own(found: pl.DataFrame) -> pl.DataFrame:
        keep = own[found["entry"].to_numpy()] != content_ids[found["query"].to_numpy()]
        return found.filter(pl.Series(keep, dtype=pl.Boolean))

    images = not_own(index.match_images(codes, quality, radius))
    words = not_own(index.match_texts(texts))
    found = pl.concat(
        [
            images.select(
                "query", "entry", pl.lit("pdq").alias("kind"), "distance", pl.lit(None, pl.Float64).alias("jaccard")
            ),
            words.select(
                "query", "entry", pl.lit("text").alias("kind"), pl.lit(None, pl.Int32).alias("distance"), "jaccard"
            ),
        ]
    )
    if found.is_empty():
        return pl.DataFrame(schema=MATCH_SCHEMA)
    closest = index.closest(images, words).select("query", "entry", pl.lit(True).alias("closest"))
    ranked = (
        found.join(closest, on=["query", "entry"], how="left")
        .with_columns(pl.col("closest").fill_null(False))
        .sort("query", "kind", "entry")
    )
    chosen = [bank[i] for i in ranked["entry"].to_list()]
    provenance_columns = entries.select(
        "bank",
        "policy",
        "source",
        "decision_id",
        pl.col("content_id").alias("entry_content_id"),
        "file_name",
        "row_number",
        pl.col("confirmed_at").alias("entry_confirmed_at"),
    )[ranked["entry"].to_list()]
    return (
        pl.concat(
            [
                pl.DataFrame({"content_id": content_ids[ranked["query"].to_numpy()]}),
                ranked.select("kind", "distance", "jaccard", "closest"),
                provenance_columns,
                pl.DataFrame({"provenance": [describe_provenance(e.provenance) for e in chosen]}),
            ],
            how="horizontal",
        )
        .select(list(MATCH_SCHEMA))
        .cast(MATCH_SCHEMA)
    )


# What the risk model reads of an item's matches (ml/training/matrix.py): the closest PDQ distance and the
# highest text Jaccard among the entries it could have met when posted; NO_PDQ_MATCH and 0 when none.
BANK_FEATURES: tuple[str, ...] = ("bank_pdq_distance", "bank_text_jaccard")
NO_PDQ_MATCH = 256  # farther than two PDQ codes can be apart: no PDQ entry within the radius


def bank_match_features(items: pl.DataFrame, matches: pl.DataFrame) -> pl.DataFrame:
    """BANK_FEATURES of each row of `items` (content_id, created_at; naive UTC), in order, from its rows in
    `matches` (the bank_matches table). Point in time: a day's matches are against its bank as it stood at
    the end of the day (what a batch acts on), so a confirmed removal's entry counts only when it was
    confirmed before the item was created; an imported entry counts whenever it was imported, as in
    matching. Training and every scoring path read the features through here."""
    posted = items.select("content_id", "created_at")
    known = matches.join(posted, on="content_id").filter(
        pl.col("entry_confirmed_at").is_null()
        | (pl.col("entry_confirmed_at").dt.replace_time_zone(None) < pl.col("created_at"))
    )
    best = known.group_by("content_id").agg(
        pl.col("distance").min().alias(BANK_FEATURES[0]), pl.col("jaccard").max().alias(BANK_FEATURES[1])
    )
    return (
        posted.select("content_id")
        .join(best, on="content_id", how="left", maintain_order="left")
        .with_columns(
            pl.col(BANK_FEATURES[0]).fill_null(NO_PDQ_MATCH).cast(pl.Int32),
            pl.col(BANK_FEATURES[1]).fill_null(0.0).cast(pl.Float32),
        )
    )


def bank_features_of(matches: list[dict]) -> tuple[int, float]:
    """BANK_FEATURES of one item from its matches (dicts with kind pdq and a distance, or text and a
    jaccard), as `bank_match_features` computes them for a batch: what the online service reads."""
    distances = [m["distance"] for m in matches if m["kind"] == "pdq"]
    jaccards = [m["jaccard"] for m in matches if m["kind"] == "text"]
    return min(distances, default=NO_PDQ_MATCH), max(jaccards, default=0.0)


def with_bank_matches(frame: pl.DataFrame, matches: pl.DataFrame) -> pl.DataFrame:
    """`frame` (rows with content_id and created_at, in order) with BANK_MATCH_COLUMNS from each item's
    closest match in `matches` (null when it matched nothing), what the enforcement policy's `bank_match`
    rule reads, and the risk model's BANK_FEATURES (`bank_match_features`)."""
    bank, policy, provenance = BANK_MATCH_COLUMNS
    closest = matches.filter("closest").select(
        "content_id", pl.col("bank").alias(bank), pl.col("policy").alias(policy), pl.col("provenance").alias(provenance)
    )
    return frame.join(closest, on="content_id", how="left", maintain_order="left").join(
        bank_match_features(frame, matches), on="content_id", how="left", maintain_order="left"
    )


__all__ = [
    "BANK_FEATURES",
    "BANK_MATCHES",
    "MATCH_SCHEMA",
    "NO_PDQ_MATCH",
    "bank_features_of",
    "bank_match_features",
    "match_items",
    "with_bank_matches",
]
