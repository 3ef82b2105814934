"""What links two posts: a near-duplicate text, or a shared link, phone number or e-mail address.

A ring posts variants of one template from many fresh accounts and rotates what it can; what stays is
the template (near-duplicate matching forms, ml/matching/text.py) and, more often than not, where it
sends people (the normalised link, number or address, `find_artifacts`). Both are keys a post carries:
its text's near-duplicate neighbours (itself included) and its artifacts. Two posts sharing a key are
linked. Text links are computed between distinct texts, once, so a text posted a thousand times costs
one signature; signatures of texts seen before come from the caller's cache.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ml.matching.clusters import components_frame
from ml.matching.text import TextMatchParams, near_duplicate_pairs_of_signatures, signatures

SIGNATURE_SCHEMA = {"text_hash": pl.String, "usable": pl.Boolean, "signature": pl.List(pl.UInt64)}


# The table of MinHash signatures the campaigns asset keeps (every distinct text seen, signed once ever), by the
# name the raw inputs of scoring carry it under beside the raw tables.
SIGNATURES = "campaign_text_signatures"


def text_signatures(texts: pl.DataFrame, known: pl.DataFrame | None, params: TextMatchParams) -> pl.DataFrame:
    """MinHash signatures of every distinct text in `texts` (text_hash, text), reusing `known` ones
    (a frame of SIGNATURE_SCHEMA from an earlier run); returns all of them in SIGNATURE_SCHEMA."""
    distinct = texts.select("text_hash", "text").unique("text_hash", keep="first").sort("text_hash")
    known = known if known is not None else pl.DataFrame(schema=SIGNATURE_SCHEMA)
    new = distinct.join(known.select("text_hash"), on="text_hash", how="anti")
    if new.height:
        sigs, usable = signatures(new["text"].to_list(), params)
        computed = pl.DataFrame(
            {
                "text_hash": new["text_hash"],
                "usable": usable,
                "signature": pl.Series(sigs.tolist(), dtype=pl.List(pl.UInt64)),
            }
        )
        known = pl.concat([known.select(list(SIGNATURE_SCHEMA)), computed])
    return known.join(distinct.select("text_hash"), on="text_hash", how="semi").sort("text_hash")


def _pairs(sigs: pl.DataFrame, params: TextMatchParams) -> pl.DataFrame:
    """left, right (text hashes), jaccard: every near-duplicate pair of the usable signatures in `sigs`."""
    usable = sigs.filter(pl.col("usable"))
    matrix = np.array(usable["signature"].to_list(), dtype=np.uint64).reshape(usable.height, params.num_perm)
    return near_duplicate_pairs_of_signatures(usable["text_hash"].to_list(), matrix, params)


def text_neighbours(sigs: pl.DataFrame, params: TextMatchParams) -> pl.DataFrame:
    """text_hash -> neighbour: every near-duplicate pair of distinct texts, both ways, and each text
    with itself (so "posts of my text or a copy of it" is one join)."""
    pairs = _pairs(sigs, params)
    both = pl.concat(
        [
            pairs.select(pl.col("left").alias("text_hash"), pl.col("right").alias("neighbour")),
            pairs.select(pl.col("right").alias("text_hash"), pl.col("left").alias("neighbour")),
            sigs.select("text_hash", pl.col("text_hash").alias("neighbour")),
        ]
    )
    return both.unique().sort("text_hash", "neighbour")


def text_families(sigs: pl.DataFrame, params: TextMatchParams) -> pl.DataFrame:
    """text_hash -> text_family: the smallest text hash of its connected component of near-duplicates (a
    text with none is its own family). What the training set splits by (ml/training/dataset.py)."""
    hashes = sigs["text_hash"].unique().sort()
    position = pl.DataFrame({"text_hash": hashes, "i": np.arange(len(hashes))})
    pairs = _pairs(sigs, params).join(position, left_on="left", right_on="text_hash")
    pairs = pairs.join(position, left_on="right", right_on="text_hash", suffix="_right")
    # Positions in sorted order: a component's first member is its smallest hash.
    families = components_frame(hashes.to_list(), pairs["i"].to_numpy(), pairs["i_right"].to_numpy())
    return families.select(text_hash="id", text_family=pl.col("id").gather(pl.col("cluster")))


def post_artifacts(content: pl.DataFrame) -> pl.DataFrame:
    """content_id -> artifact ("url:<link>", "phone:<digits>", "email:<address>"), one row each."""
    from ml.matching.text import find_artifacts

    rows_id, rows_key = [], []
    for cid, text in content.select("content_id", "text").iter_rows():
        found = find_artifacts(text or "")
        for kind, values in (("url", found.urls), ("phone", found.phones), ("email", found.emails)):
            for value in dict.fromkeys(values):
                rows_id.append(cid)
                rows_key.append(f"{kind}:{value}")
    return pl.DataFrame(
        {"content_id": rows_id, "artifact": rows_key}, schema={"content_id": pl.Int64, "artifact": pl.String}
    )


def account_fingerprints(users: pl.DataFrame) -> pl.DataFrame:
    """author_id -> fingerprint ("device:<fp>", "ip:<fp>"), one row each: what the campaign rule's shared
    fingerprint reads (ml/campaigns/clusters.py)."""
    return pl.concat(
        [
            users.select(
                pl.col("user_id").alias("author_id"),
                pl.concat_str(pl.lit(f"{kind}:"), pl.col(f"{kind}_fingerprint")).alias("fingerprint"),
            ).drop_nulls()
            for kind in ("device", "ip")
        ]
    )
