"""Account networks: accounts linked by shared device or IP fingerprints.

Connected components of the user-fingerprint graph are how rings are caught: a ring's
accounts share a handful of devices and IPs. Component size and the share of the component
already enforced against are counted as of each content item's creation time.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from ml.features.author import _seconds
from ml.features.pointintime import count_before


def account_components(users: pl.DataFrame) -> pl.DataFrame:
    """user_id -> component id over shared device or IP fingerprints."""
    n = users.height
    fps = pl.concat([("d" + users["device_fingerprint"]), ("i" + users["ip_fingerprint"])])
    fp_codes = fps.cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    rows = np.concatenate([np.arange(n), np.arange(n)])
    n_fp = int(fp_codes.max()) + 1 if len(fp_codes) else 0
    graph = sp.coo_matrix((np.ones(len(rows)), (rows, n + fp_codes)), shape=(n + n_fp, n + n_fp))
    _, labels = connected_components(graph, directed=False)
    return pl.DataFrame({"user_id": users["user_id"], "component_id": labels[:n].astype(np.int64)})


def network_features(content: pl.DataFrame, users: pl.DataFrame, decisions: pl.DataFrame) -> pl.DataFrame:
    """One row per content item: the author's component and its state before `created_at`.

    - component_size: accounts in the component that existed before t
    - component_enforced_share: of those, the share with an enforcement decided before t
    - shares_fingerprints: the author shares a device or IP with another existing account
    """
    comp = account_components(users).join(users.select("user_id", "signup_at"), on="user_id")
    c = content.select("content_id", "author_id", "created_at").join(
        comp, left_on="author_id", right_on="user_id", how="left"
    )
    q_comp = c["component_id"].fill_null(-1).to_numpy()
    q_t = _seconds(c["created_at"])
    missing = q_comp < 0
    q_comp = np.where(missing, 0, q_comp)

    size = count_before(comp["component_id"].to_numpy(), _seconds(comp["signup_at"]), q_comp, q_t)
    first_enforced = (
        decisions.filter(pl.col("action").is_in(["remove", "restrict"]))
        .join(content.select("content_id", "author_id"), on="content_id")
        .group_by("author_id")
        .agg(pl.col("decided_at").min())
        .join(comp, left_on="author_id", right_on="user_id")
    )
    enforced = count_before(
        first_enforced["component_id"].to_numpy(), _seconds(first_enforced["decided_at"]), q_comp, q_t
    )
    size = np.where(missing, 1, np.maximum(size, 1))
    enforced = np.where(missing, 0, enforced)
    return pl.DataFrame(
        {
            "content_id": c["content_id"],
            "component_id": c["component_id"].fill_null(-1),
            "component_size": size,
            "component_enforced_share": (enforced / size).astype(np.float32),
            "shares_fingerprints": size > 1,
        }
    )
