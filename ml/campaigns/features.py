"""What a post's links showed before it was posted: point-in-time campaign features.

For a post created at t, its links are the posts that share a key with it (ml/campaigns/links.py: a
near-duplicate of its text, or one of its links, numbers or addresses) and were created before t;
their confirmed violations are the removals and restrictions decided before t, minus those
overturned on appeal before t (the author features' rule). Each feature counts only events strictly
before t, so nothing a post could not have known when it was posted leaks into its row:

- copies_before / copy_accounts_before / copies_removed_before: earlier posts of its text or a
  near-duplicate of it, the other accounts that posted them, and how many of them were removed;
- artifact_posts_before / artifact_accounts_before / artifact_removed_before: the same through its
  links, phone numbers and e-mail addresses;
- linked_removal_rate: removed over linked posts before t (both kinds; 0 with none), the violations
  carried one hop along the post-artifact graph: label propagation from confirmed removals, one step.

One row per content item of `content` (the posts scored); `history` is every post the links may
reach (the posts scored included), `decisions` and `appeals` all of them.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from ml.features.author import _seconds
from ml.features.pointintime import count_before

FEATURES = (
    "copies_before",
    "copy_accounts_before",
    "copies_removed_before",
    "artifact_posts_before",
    "artifact_accounts_before",
    "artifact_removed_before",
    "linked_removal_rate",
)
ENFORCEMENTS = ("remove", "restrict")


def confirmed_removals(decisions: pl.DataFrame, appeals: pl.DataFrame) -> pl.DataFrame:
    """content_id, removed_at: the first removal or restriction of each post, unless an appeal overturned
    it (an overturned one counts until the appeal resolved, so the time is kept and the end too)."""
    first = (
        decisions.filter(pl.col("action").is_in(ENFORCEMENTS))
        .group_by("content_id")
        .agg(pl.col("decided_at").min().alias("removed_at"))
    )
    overturned = (
        appeals.filter(pl.col("outcome") == "overturned")
        .group_by("content_id")
        .agg(pl.col("resolved_at").min().alias("overturned_at"))
    )
    return first.join(overturned, on="content_id", how="left")


def _dense_codes(*columns: pl.Series) -> list[np.ndarray]:
    """One small integer per distinct value across `columns` (a value has the same code in each), vectorised:
    a ring's variants give millions of (post, neighbour text) rows at 10x the default world."""
    lengths = [len(c) for c in columns]
    joined = pl.concat([c.cast(pl.String) for c in columns])
    codes = joined.rank("dense").cast(pl.Int64).to_numpy() - 1 if len(joined) else np.zeros(0, np.int64)
    return np.split(codes, np.cumsum(lengths)[:-1])


def _linked(
    queries: pl.DataFrame, posts_by_key: pl.DataFrame, removals: pl.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each query (content_id, author_id, t, key), the posts, other accounts and removals with the
    same key strictly before t; then summed per content_id in `queries`' first-appearance order.

    `posts_by_key`: (key, content_id, author_id, created_at) for every post of the history."""
    q_t = _seconds(queries["created_at"])
    # Accounts: the first post of each (key, account), counted before t, less the asker's own.
    firsts = posts_by_key.group_by("key", "author_id").agg(pl.col("created_at").min())
    # Removals: counted from the time they were decided; an overturned one leaves the count when its appeal resolved.
    removed = posts_by_key.join(removals, on="content_id")
    back = removed.filter(pl.col("overturned_at").is_not_null())
    post_key, q_key, first_key, removed_key, back_key = _dense_codes(
        posts_by_key["key"], queries["key"], firsts["key"], removed["key"], back["key"]
    )
    authors = _dense_codes(firsts["author_id"], queries["author_id"])
    width = int(max((a.max() for a in authors if len(a)), default=0)) + 1
    first_pair, q_pair = np.split(
        np.unique(np.concatenate([first_key * width + authors[0], q_key * width + authors[1]]), return_inverse=True)[1],
        [len(first_key)],
    )
    posts = count_before(post_key, _seconds(posts_by_key["created_at"]), q_key, q_t)
    accounts = count_before(first_key, _seconds(firsts["created_at"]), q_key, q_t)
    own = count_before(first_pair, _seconds(firsts["created_at"]), q_pair, q_t)
    added = count_before(removed_key, _seconds(removed["removed_at"]), q_key, q_t)
    taken = count_before(back_key, _seconds(back["overturned_at"]), q_key, q_t) if back.height else 0
    per = queries.select("content_id").with_columns(
        posts=pl.Series(posts), accounts=pl.Series(accounts - own), removed=pl.Series(added - taken)
    )
    summed = per.group_by("content_id", maintain_order=True).sum()
    return summed["posts"].to_numpy(), summed["accounts"].to_numpy(), summed["removed"].to_numpy()


def campaign_features(
    content: pl.DataFrame,
    history: pl.DataFrame,
    neighbours: pl.DataFrame,
    artifacts: pl.DataFrame,
    removals: pl.DataFrame,
) -> pl.DataFrame:
    """FEATURES for each post of `content` (content_id, author_id, created_at, text_hash), as of its creation.

    `history`: every post the links may reach (same columns); `neighbours`: text_hash -> neighbour
    (ml.campaigns.links.text_neighbours, each text its own neighbour); `artifacts`: content_id -> artifact
    of the history's posts; `removals`: `confirmed_removals` of the history.
    """
    base = content.select("content_id", "author_id", "created_at", "text_hash").unique("content_id", keep="first")
    columns = {name: np.zeros(base.height) for name in FEATURES}
    if base.height == 0:
        return pl.DataFrame({"content_id": base["content_id"], **columns})
    order = base.select("content_id").with_row_index("_row")
    hist = history.select("content_id", "author_id", "created_at", "text_hash")

    # Copies: posts whose text is a neighbour of this post's text (its own text included).
    text_posts = hist.rename({"text_hash": "key"})
    text_queries = base.join(neighbours, on="text_hash").select(
        "content_id", "author_id", "created_at", pl.col("neighbour").alias("key")
    )
    copies = _summed(text_queries, text_posts, removals, order)
    # Artifacts: posts sharing one of this post's links, numbers or addresses.
    art_posts = hist.join(artifacts, on="content_id").rename({"artifact": "key"}).drop("text_hash")
    art_queries = base.join(artifacts, on="content_id").select(
        "content_id", "author_id", "created_at", pl.col("artifact").alias("key")
    )
    arts = _summed(art_queries, art_posts.select("key", "content_id", "author_id", "created_at"), removals, order)

    columns["copies_before"], columns["copy_accounts_before"], columns["copies_removed_before"] = copies
    columns["artifact_posts_before"], columns["artifact_accounts_before"], columns["artifact_removed_before"] = arts
    linked = copies[0] + arts[0]
    columns["linked_removal_rate"] = np.divide(copies[2] + arts[2], linked, out=np.zeros(base.height), where=linked > 0)
    frame = pl.DataFrame({"content_id": base["content_id"], **columns})
    return frame.with_columns(
        [pl.col(c).cast(pl.Int32) for c in FEATURES if c != "linked_removal_rate"]
        + [pl.col("linked_removal_rate").cast(pl.Float32)]
    )


def _summed(queries: pl.DataFrame, posts_by_key: pl.DataFrame, removals: pl.DataFrame, order: pl.DataFrame):
    """(posts, accounts, removed) per post of `order` (0 for a post with no query row)."""
    n = order.height
    if queries.height == 0:
        return np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64)
    posts_by_key = posts_by_key.select("key", "content_id", "author_id", "created_at")
    posts, accounts, removed = _linked(queries, posts_by_key, removals)
    got = (
        queries.select("content_id")
        .unique(maintain_order=True)
        .with_columns(p=pl.Series(posts), a=pl.Series(accounts), r=pl.Series(removed))
    )
    aligned = order.join(got, on="content_id", how="left").sort("_row").fill_null(0)
    return aligned["p"].to_numpy(), aligned["a"].to_numpy(), aligned["r"].to_numpy()
