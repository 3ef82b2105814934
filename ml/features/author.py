"""Author history as of each content item's creation time: nothing after it leaks in."""

from __future__ import annotations

import numpy as np
import polars as pl

from ml.features.pointintime import count_before

DAY = 86_400


def _seconds(col: pl.Series) -> np.ndarray:
    return (col.cast(pl.Datetime("us")).cast(pl.Int64) // 1_000_000).to_numpy()


def author_features(
    content: pl.DataFrame,
    users: pl.DataFrame,
    reports: pl.DataFrame,
    decisions: pl.DataFrame,
    appeals: pl.DataFrame,
) -> pl.DataFrame:
    """One row per content item with its author's history strictly before `created_at`.

    - account_age_days, follower_count, verified
    - prior_posts, posts_last_24h: the author's earlier content
    - prior_reports_received: reports on the author's content filed before t
    - prior_enforcements: removals/restrictions of the author's content decided before t,
      minus those overturned on appeal before t
    """
    authors = users.select("user_id").with_row_index("code")
    code = dict(zip(authors["user_id"].to_list(), authors["code"].to_list()))
    unknown = len(code)

    def codes(ids: pl.Series) -> np.ndarray:
        return np.array([code.get(i, unknown) for i in ids.to_list()], dtype=np.int64)

    c = content.select("content_id", "author_id", "created_at")
    q_key, q_t = codes(c["author_id"]), _seconds(c["created_at"])

    prior_posts = count_before(q_key, q_t, q_key, q_t)
    posts_24h = count_before(q_key, q_t, q_key, q_t, window_seconds=DAY)

    author_of = c.select("content_id", "author_id")
    r = reports.join(author_of, on="content_id", how="inner")
    prior_reports = count_before(codes(r["author_id"]), _seconds(r["reported_at"]), q_key, q_t)

    enforced = decisions.filter(pl.col("action").is_in(["remove", "restrict"])).join(author_of, on="content_id")
    prior_enf = count_before(codes(enforced["author_id"]), _seconds(enforced["decided_at"]), q_key, q_t)
    overturned = appeals.filter(pl.col("outcome") == "overturned").join(
        enforced.select("decision_id", "author_id"), on="decision_id"
    )
    prior_over = count_before(codes(overturned["author_id"]), _seconds(overturned["resolved_at"]), q_key, q_t)

    u = users.select("user_id", "signup_at", "follower_count", "verified")
    out = c.join(u, left_on="author_id", right_on="user_id", how="left")
    return pl.DataFrame(
        {
            "content_id": c["content_id"],
            "account_age_days": ((q_t - _seconds(out["signup_at"])) / DAY).astype(np.float32),
            "follower_count": out["follower_count"].fill_null(0).cast(pl.Int64),
            "verified": out["verified"].fill_null(False),
            "prior_posts": prior_posts,
            "posts_last_24h": posts_24h,
            "prior_reports_received": prior_reports,
            "prior_enforcements": prior_enf - prior_over,
        }
    )
