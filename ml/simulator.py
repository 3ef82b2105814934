"""A seeded, vectorised simulator of a moderation platform, posting real corpus texts.

The world (users, rings, moderators) is fixed by the seed. Each day's *cohort* is the
content created that day plus everything that later happens to it (reports, decisions,
appeals, QA audits). A raw-lake partition for day D holds the events whose own timestamp
falls on D, so it is rebuilt from the cohorts of D-LOOKBACK_DAYS..D: any day can be
regenerated alone, and always yields the same rows. docs/simulator.md explains the model.
The world itself (accounts, rings, moderators) and the knobs are ml/world.py's.
Raw tables come out through their contracts (ml/raw/contracts.py): exactly the contract's
columns, in order and in their types; the world shifts' texts are ml/shift_texts.py's, its image
posts ml/image_posts.py's (drawn only for the posts that land, stored by the raw asset under lake/media).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import polars as pl

from ml.image_posts import (
    PLAN_SCHEMA,
    REUPLOAD_WITHIN_DAYS,
    RING_APPEAL_RATE,
    plan_images,
    plan_reuploads,
    render_media,
)
from ml.raw.contracts import CONTRACTS
from ml.ring_campaigns import SPREAD, campaign_texts
from ml.shift_texts import SLANG, bait_texts, pick, text_hashes
from ml.taxonomy import ARCHETYPES, POLICIES, VIOLATING
from ml.world import (
    BOTS_POST_AFTER,
    DAY,
    HOUR,
    POLICY_MIX,
    SimConfig,
    World,
    build_world,
    day_epoch,
    diurnal_times,
    random_ids,
    ring_styles,
    stream_rng,
    timestamps,
)

GROUND_TRUTH_TABLES: tuple[str, ...] = ("content_truth", "user_truth", "image_truth")

# Longest chain of lags: report 2 d + decision 3 d + appeal 2 d + resolution 2 d; audit 3 d; and a ring's
# copy of a removed image, posted within REUPLOAD_WITHIN_DAYS (5) of its original's day, has the same chain.
LOOKBACK_DAYS = REUPLOAD_WITHIN_DAYS + 9


# ---------------------------------------------------------------------------------------
# A day's cohort: content created that day and everything that happens to it.
# ---------------------------------------------------------------------------------------


def _pool_index(pool: pl.DataFrame) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    policy = pool["policy"].to_numpy()
    by_policy = [np.flatnonzero(policy == p) for p in POLICIES]
    return by_policy, {
        "text": pool["text"].to_numpy(),
        "text_hash": pool["text_hash"].to_numpy(),
        "style": pool["style"].to_numpy(),
        "policy": pl.Series(policy).replace_strict({p: i for i, p in enumerate(POLICIES)}).to_numpy(),
    }


def _pick_texts(rng, by_policy, policies: np.ndarray) -> np.ndarray:
    out = np.empty(len(policies), dtype=np.int64)
    for p, idx in enumerate(by_policy):
        mask = policies == p
        if mask.any():
            if len(idx) == 0:  # tiny fallback pools may lack a policy: post benign instead
                idx = by_policy[0]
            out[mask] = idx[rng.integers(0, len(idx), size=mask.sum())]
    return out


def simulate_cohort(config: SimConfig, pool: pl.DataFrame, day: date) -> dict[str, pl.DataFrame]:
    """Content created on `day` and all its later events (timestamps may pass the day), plus the plan of
    its image posts (`image_plan`: drawn by `simulate_days` for the posts that land)."""
    world = build_world(config)
    rng = stream_rng(config, 2, config.day_index(day) + 100_000)
    day_start = day_epoch(day)
    users = world.users
    signup = users["_signup_s"].to_numpy()
    arche = users["_archetype"].to_numpy()
    ring = users["ring_id"].to_numpy()
    bot = users["_campaign_bot"].to_numpy()
    # The shift's bots post only the shift's campaign; everyone else lives as before.
    eligible = np.flatnonzero((signup < day_start) & ~bot)
    by_policy, texts = _pool_index(pool)

    # Regular posts: authors weighted by activity, policy by archetype, text by policy.
    n_total = int(rng.poisson(config.content_per_day))
    n_campaign_target = int(n_total * config.campaign_share)
    n_regular = n_total - n_campaign_target
    w = users["_activity"].to_numpy()[eligible]
    author = eligible[rng.choice(len(eligible), size=n_regular, p=w / w.sum())]
    styles = ring_styles(ring)
    # A sleeper ring's accounts post as ordinary accounts do outside its campaigns.
    cum = POLICY_MIX[np.where(styles[author] == "sleeper", 0, arche[author])].cumsum(axis=1)
    policy = (rng.random((n_regular, 1)) > cum).sum(axis=1)
    text_idx = _pick_texts(rng, by_policy, policy)
    created = diurnal_times(rng, n_regular, day_start)
    campaign = np.full(n_regular, -1, dtype=np.int64)  # campaign number within the day, -1 = none

    # Campaigns: a ring posts one spam/scam text from many accounts, each in its ring's style.
    campaign_text: list[str] = []
    ring_eligible = eligible[ring[eligible] >= 0]
    if len(ring_eligible) and n_campaign_target > 0:
        rings = np.unique(ring[ring_eligible])
        n_campaigns = max(1, n_campaign_target // config.ring_size)
        chosen = rings[rng.integers(0, len(rings), size=n_campaigns)]
        member_sets = [ring_eligible[ring[ring_eligible] == r] for r in chosen]
        sizes = np.array([len(m) for m in member_sets])
        c_author = np.concatenate(member_sets)
        c_policy_per = np.where(arche[[m[0] for m in member_sets]] == 3, 4, 3)
        c_policy = np.repeat(c_policy_per, sizes)
        c_text_per = _pick_texts(rng, by_policy, c_policy_per)
        # Spread over 30 minutes (copy), 2 hours (varied) or 8 hours (sleeper), starting so it ends that day.
        spread = np.array([SPREAD[str(st)] for st in ring_styles(chosen)])
        c_start = diurnal_times(rng, n_campaigns, day_start)
        c_start = day_start + (c_start - day_start) * (DAY - 30 * 60 * spread) // DAY
        c_offset = rng.integers(0, 30 * 60, size=sizes.sum()) * np.repeat(spread, sizes)
        c_created = np.minimum(np.repeat(c_start, sizes) + c_offset, day_start + DAY - 1)
        vary_rng = stream_rng(config, 9, config.day_index(day) + 100_000)
        for text_i, st, size in zip(c_text_per, ring_styles(chosen), sizes, strict=True):
            campaign_text += campaign_texts(vary_rng, str(texts["text"][text_i]), str(st), int(size))
        author = np.concatenate([author, c_author])
        policy = np.concatenate([policy, c_policy])
        text_idx = np.concatenate([text_idx, np.repeat(c_text_per, sizes)])
        created = np.concatenate([created, c_created])
        campaign = np.concatenate([campaign, np.repeat(np.arange(n_campaigns), sizes)])

    # The text's own label is the truth (a fallback pool may have remapped a policy).
    true_policy = texts["policy"][text_idx]
    style, post_text, post_hash = texts["style"][text_idx], texts["text"][text_idx], texts["text_hash"][text_idx]
    if campaign_text:  # the campaign posts come last; varied ones carry their own text (and platform hash)
        varied = n_regular + np.flatnonzero(np.array(campaign_text, dtype=object) != post_text[n_regular:])
        post_text = post_text.copy()
        post_text[n_regular:] = campaign_text
        post_hash = post_hash.copy()
        post_hash[varied] = text_hashes(post_text[varied])
    if config.shifted(day):
        author, true_policy, style, post_text, post_hash, created, campaign = _shift_posts(
            config, day, n_total, arche, bot, (author, true_policy, style, post_text, post_hash, created, campaign)
        )

    n = len(author)
    content_id = random_ids(rng, n)
    surface = np.where(
        style == "sms",
        "direct_message",
        np.where(style == "youtube", "video_comment", np.where(rng.random(n) < 0.6, "post", "comment")),
    )
    # Image posts (ml/image_posts.py), from their own stream: the rest of the day is drawn as without them.
    images = plan_images(
        stream_rng(config, 6, config.day_index(day) + 100_000),
        arche[author],
        true_policy,
        campaign,
        post_text,
        config.image_share,
    )
    shown = np.where(images.is_image, images.caption, post_text)
    shown_hash = post_hash.copy()
    shown_hash[images.is_image] = text_hashes(shown[images.is_image])
    content = _content_frame(content_id, world, author, created, surface, shown, shown_hash, images.is_image)
    truth = _truth_frame(config, day, content_id, created, true_policy, arche[author], post_hash, campaign)
    ring_image = images.is_image & (ring[author] >= 0)
    events = _events(config, world, rng, eligible, content_id, author, true_policy, created, ring_image)
    plans = [
        pl.DataFrame(
            {
                "content_id": content_id[images.is_image],
                "kind": images.kind[images.is_image],
                "shown_text": np.where(images.kind == "text", post_text, "")[images.is_image],
                "text_hash": post_hash[images.is_image],
                "perturbations": images.perturbations[images.is_image],
                "seed": images.seed[images.is_image],
            },
            schema_overrides={"shown_text": pl.String, "text_hash": pl.String, "perturbations": pl.String},
        ).with_columns(original_content_id=pl.lit(None, pl.Int64), evasion=pl.lit(None, pl.String))
    ]
    tables = {"content": content, **events.tables, "content_truth": truth}

    # Rings post their removed images again, changed (ml/image_posts.py); the copies' own events follow.
    removed = events.removed(ring_image)
    if len(removed):
        day_index = config.day_index(day) + 100_000
        members = {int(r): eligible[ring[eligible] == r] for r in np.unique(ring[author[removed]])}
        copies = plan_reuploads(
            stream_rng(config, 7, day_index),
            day_start,
            removed,
            events.lost_appeal_at(n),
            events.decided_at(n),
            ring[author],
            members,
        )
        if len(copies):
            c_rng = stream_rng(config, 8, day_index)
            c_id = random_ids(c_rng, len(copies))
            o = copies.original
            c_content = _content_frame(
                c_id,
                world,
                copies.author,
                copies.created,
                surface[o],
                copies.caption,
                text_hashes(copies.caption),
                True,
            )
            c_truth = _truth_frame(
                config, day, c_id, copies.created, true_policy[o], arche[copies.author], post_hash[o], -1
            )
            c_events = _events(
                config, world, c_rng, eligible, c_id, copies.author, true_policy[o], copies.created, True
            )
            tables = {
                name: pl.concat([frame, {"content": c_content, "content_truth": c_truth, **c_events.tables}[name]])
                for name, frame in tables.items()
            }
            plans.append(
                pl.DataFrame(
                    {
                        "content_id": c_id,
                        "kind": images.kind[o],
                        "shown_text": np.where(images.kind == "text", post_text, "")[o],
                        "text_hash": post_hash[o],
                        "perturbations": np.full(len(copies), "", dtype=object),
                        "seed": copies.seed,
                        "original_content_id": content_id[o],
                        "evasion": copies.evasion,
                    },
                    schema=PLAN_SCHEMA,
                )
            )
    return {**tables, "image_plan": pl.concat(plans).cast(PLAN_SCHEMA)}


def _content_frame(
    content_id: np.ndarray,
    world: World,
    author: np.ndarray,
    created: np.ndarray,
    surface: np.ndarray,
    text: np.ndarray,
    text_hash: np.ndarray,
    is_image: np.ndarray | bool,
) -> pl.DataFrame:
    """The content rows; an image's file reference is filled in when it is drawn (`simulate_days`)."""
    n = len(content_id)
    image = np.broadcast_to(np.asarray(is_image, dtype=bool), (n,))
    return pl.DataFrame(
        {
            "content_id": content_id,
            "author_id": world.users["user_id"].to_numpy()[author],
            "created_at": timestamps(created),
            "surface": surface,
            "language": world.users["language"].to_numpy()[author],
            "text": pl.Series("text", text, dtype=pl.String),
            # Platforms fingerprint text for dedup and hash-matching; ml.text.text_hash.
            "text_hash": pl.Series("text_hash", text_hash, dtype=pl.String),
            "media_type": np.where(image, "image", "text"),
        }
    ).with_columns(
        has_link=pl.col("text").str.contains(r"(?i)https?://|www\.|\b[a-z0-9-]+\.(com|net|org|co|info|ly|uk)\b"),
        has_phone=pl.col("text").str.contains(r"\+?\d[\d\s\-]{7,}\d"),
        media_sha256=pl.lit(None, pl.String),
        media_path=pl.lit(None, pl.String),
    )


def _truth_frame(
    config: SimConfig,
    day: date,
    content_id: np.ndarray,
    created: np.ndarray,
    true_policy: np.ndarray,
    archetype: np.ndarray,
    text_hash: np.ndarray,
    campaign: np.ndarray | int,
) -> pl.DataFrame:
    campaign = np.broadcast_to(np.asarray(campaign, dtype=np.int64), (len(content_id),))
    return pl.DataFrame(
        {
            "content_id": content_id,
            "created_at": timestamps(created),
            "true_policy": np.array(POLICIES)[true_policy],
            "author_archetype": np.array(ARCHETYPES)[archetype],
            # The text the post carries (a corpus text, or a ring's variant of one): as its text, or in its image.
            "text_hash": pl.Series("text_hash", text_hash, dtype=pl.String),
            "campaign_id": np.where(campaign >= 0, config.day_index(day) * 100_000 + campaign, -1),
        }
    )


@dataclass(frozen=True)
class _Events:
    """A batch of posts' reports, decisions, appeals and QA audits, and what the rings react to."""

    tables: dict[str, pl.DataFrame]
    reviewed: np.ndarray  # post index of each decision
    decided: np.ndarray  # epoch seconds of each decision
    action: np.ndarray
    appealed: np.ndarray  # decision index of each appeal
    resolved_at: np.ndarray
    overturned: np.ndarray

    def removed(self, among: np.ndarray) -> np.ndarray:
        """Indexes of the posts in `among` (a mask over the posts) that a moderator removed."""
        posts = self.reviewed[self.action == "remove"]
        return np.sort(posts[among[posts]])

    def decided_at(self, n: int) -> np.ndarray:
        out = np.full(n, -1, dtype=np.int64)
        out[self.reviewed] = self.decided
        return out

    def lost_appeal_at(self, n: int) -> np.ndarray:
        """When each post's appeal was upheld (-1: none, or it was overturned)."""
        out = np.full(n, -1, dtype=np.int64)
        lost = ~self.overturned
        out[self.reviewed[self.appealed[lost]]] = self.resolved_at[lost]
        return out


def _events(
    config: SimConfig,
    world: World,
    rng: np.random.Generator,
    eligible: np.ndarray,
    content_id: np.ndarray,
    author: np.ndarray,
    true_policy: np.ndarray,
    created: np.ndarray,
    ring_image: np.ndarray | bool,
) -> _Events:
    """What happens to posts after they are made: reports, decisions, appeals and QA audits."""
    n = len(content_id)
    uid = world.users["user_id"].to_numpy()
    arche = world.users["_archetype"].to_numpy()
    ring_image = np.broadcast_to(np.asarray(ring_image, dtype=bool), (n,))
    # Reports: violations draw organic reports, benign content a few false ones, and a
    # small share of benign posts is brigaded by trolls with many reports in an hour.
    lam = -np.log1p(-np.array(config.report_rate))[true_policy]
    n_org = rng.poisson(lam * 1.3)
    brigaded = (true_policy == 0) & (rng.random(n) < config.brigade_rate)
    n_brig = np.where(brigaded, rng.poisson(6, size=n) + 3, 0)
    r_content = np.concatenate([np.repeat(np.arange(n), n_org), np.repeat(np.arange(n), n_brig)])
    n_r_org, n_r_brig = int(n_org.sum()), int(n_brig.sum())
    reporters_any = eligible
    trolls = eligible[arche[eligible] == 1]
    if len(trolls) == 0:
        trolls = eligible
    r_reporter = np.concatenate(
        [
            reporters_any[rng.integers(0, len(reporters_any), size=n_r_org)],
            trolls[rng.integers(0, len(trolls), size=n_r_brig)],
        ]
    )
    tp = true_policy[r_content[:n_r_org]]
    says_true = (tp > 0) & (rng.random(n_r_org) < 0.75)
    org_reason = np.where(says_true, tp, rng.integers(1, len(POLICIES), size=n_r_org))
    brig_reason = np.where(rng.random(n_r_brig) < 0.7, 2, 1)
    r_reason = np.concatenate([org_reason, brig_reason])
    org_delay = np.minimum(rng.exponential(6 * HOUR, size=n_r_org), 2 * DAY - 1)
    brig_delay = rng.integers(5 * 60, HOUR, size=n_r_brig)
    r_time = created[r_content] + np.concatenate([org_delay, brig_delay]).astype(np.int64)
    reports = pl.DataFrame(
        {
            "report_id": random_ids(rng, len(r_content)),
            "content_id": content_id[r_content],
            "reporter_id": uid[r_reporter],
            "reason": np.array(POLICIES)[r_reason],
            "reported_at": timestamps(r_time),
        }
    )

    # Decisions: reported content (queued at its first report) and a proactive sample.
    first_report = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first_report, r_content, r_time)
    top_reason = np.zeros(n, dtype=np.int64)
    top_reason[r_content] = r_reason  # any report's reason; ties are noise anyway
    proactive = (rng.random(n) < config.proactive_review_rate) & (first_report == np.iinfo(np.int64).max)
    reviewed = np.flatnonzero((first_report < np.iinfo(np.int64).max) | proactive)
    queued = np.where(
        proactive[reviewed],
        created[reviewed] + rng.integers(600, 4 * HOUR, size=len(reviewed)),
        first_report[reviewed],
    )
    mod = rng.integers(0, len(world.moderator_ids), size=len(reviewed))
    acc = world.moderator_accuracy[mod] - np.where(true_policy[reviewed] == 2, 0.08, 0.0)
    correct = rng.random(len(reviewed)) < acc
    tp_r = true_policy[reviewed]
    # A wrong call on a violation: missed (benign) 60% of the time, else another policy.
    other_violation = 1 + (tp_r - 1 + rng.integers(1, len(VIOLATING), size=len(reviewed))) % len(VIOLATING)
    wrong_violation = np.where(rng.random(len(reviewed)) < 0.6, 0, other_violation)
    wrong_benign = np.where(top_reason[reviewed] > 0, top_reason[reviewed], 2)
    d_policy = np.where(correct, tp_r, np.where(tp_r == 0, wrong_benign, wrong_violation))
    restrict = rng.random(len(reviewed)) < np.where(d_policy == 2, 0.4, 0.1)
    action = np.where(d_policy == 0, "no_action", np.where(restrict, "restrict", "remove"))
    sla = np.array([8, 2, 6, 4, 3])[tp_r] * HOUR  # queues have different staffing
    latency = np.minimum(rng.lognormal(np.log(sla * world.moderator_speed[mod]), 0.7), 3 * DAY - 1)
    decided = queued + latency.astype(np.int64)
    decision_id = random_ids(rng, len(reviewed))
    decisions = pl.DataFrame(
        {
            "decision_id": decision_id,
            "content_id": content_id[reviewed],
            "moderator_id": world.moderator_ids[mod],
            "review_reason": np.where(proactive[reviewed], "proactive", "user_report"),
            "policy": np.array(POLICIES)[d_policy],
            "action": action,
            "decided_at": timestamps(decided),
        }
    )

    # Appeals: the author appeals some enforcements; wrong removals are overturned more.
    enforced = np.flatnonzero(action != "no_action")
    wrong = d_policy[enforced] != tp_r[enforced]
    # Rings appeal the removal of their images far more often (ml/image_posts.py); a lost appeal confirms it.
    ring_removal = ring_image[reviewed[enforced]] & (action[enforced] == "remove")
    right_rate = np.where(ring_removal, RING_APPEAL_RATE, config.appeal_rate_right)
    p_appeal = np.where(wrong, config.appeal_rate_wrong, right_rate)
    appealed = enforced[rng.random(len(enforced)) < p_appeal]
    wrong_a = d_policy[appealed] != tp_r[appealed]
    p_over = np.where(wrong_a, config.overturn_rate_wrong, config.overturn_rate_right)
    overturned = rng.random(len(appealed)) < p_over
    appealed_at = decided[appealed] + np.minimum(rng.exponential(12 * HOUR, len(appealed)), 2 * DAY - 1).astype(
        np.int64
    )
    resolved_at = appealed_at + np.minimum(rng.exponential(18 * HOUR, len(appealed)), 2 * DAY - 1).astype(np.int64)
    appeals = pl.DataFrame(
        {
            "appeal_id": random_ids(rng, len(appealed)),
            "decision_id": decision_id[appealed],
            "content_id": content_id[reviewed][appealed],
            "appellant_id": uid[author[reviewed][appealed]],
            "appealed_at": timestamps(appealed_at),
            "resolved_at": timestamps(resolved_at),
            "outcome": np.where(overturned, "overturned", "upheld"),
        }
    )

    # QA audits: a uniform sample of all content, labelled with the gold (true) policy.
    audited = np.flatnonzero(rng.random(n) < config.qa_audit_rate)
    qa_audits = pl.DataFrame(
        {
            "audit_id": random_ids(rng, len(audited)),
            "content_id": content_id[audited],
            "auditor_id": world.auditor_ids[rng.integers(0, len(world.auditor_ids), size=len(audited))],
            "gold_policy": np.array(POLICIES)[true_policy[audited]],
            "audited_at": timestamps(created[audited] + rng.integers(HOUR, 3 * DAY, size=len(audited))),
        }
    )
    return _Events(
        {"reports": reports, "decisions": decisions, "appeals": appeals, "qa_audits": qa_audits},
        reviewed,
        decided,
        action,
        appealed,
        resolved_at,
        overturned,
    )


def _shift_posts(
    config: SimConfig, day: date, n_total: int, arche: np.ndarray, bot: np.ndarray, posts: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, ...]:
    """The day's posts (author, true policy, style, text, text hash, created, campaign) in the shifted
    world, drawn from the shift's own stream so the same seed gives the same shifted days."""
    author, true_policy, style, text, hashes, created, campaign = posts
    rng = stream_rng(config, 5, config.day_index(day) + 100_000)
    day_start = day_epoch(day)
    if config.world_shift == "slang":
        ordinary_benign = (true_policy == 0) & (arche[author] == ARCHETYPES.index("ordinary"))
        hit = np.flatnonzero(ordinary_benign & (rng.random(len(author)) < config.world_shift_share))
        text = text.copy()
        text[hit] = (pl.Series(text[hit], dtype=pl.String) + " " + pick(rng, SLANG, len(hit))).to_numpy()
        hashes = hashes.copy()
        hashes[hit] = text_hashes(text[hit])
        return author, true_policy, style, text, hashes, created, campaign
    # spam_campaign: the bots post in bursts of about 25 within two hours, through the day (after signing up).
    bots = np.flatnonzero(bot)
    n = int(round(n_total * config.world_shift_share))
    bursts = max(1, n // 25)
    burst = rng.integers(0, bursts, size=n)
    start = np.maximum(diurnal_times(rng, bursts, day_start), day_start + BOTS_POST_AFTER)
    at = np.minimum(start[burst] + rng.integers(0, 2 * HOUR, size=n), day_start + DAY - 1)
    bait = bait_texts(rng, n)
    first_campaign = int(campaign.max()) + 1 if len(campaign) else 0
    return (
        np.concatenate([author, bots[rng.integers(0, len(bots), size=n)]]),
        np.concatenate([true_policy, np.full(n, POLICIES.index("spam"))]),
        np.concatenate([style, np.full(n, "tweet", dtype=object)]),
        np.concatenate([text, bait]),
        np.concatenate([hashes, text_hashes(bait)]),
        np.concatenate([created, at]),
        np.concatenate([campaign, first_campaign + burst]),
    )


# The timestamp that puts a row in its daily partition: the contract's event time for raw tables.
EVENT_TIME: dict[str, str] = {
    **{table: contract.event_time for table, contract in CONTRACTS.items()},
    "content_truth": "created_at",
    "user_truth": "signup_at",
    "image_truth": "created_at",
}


def _users_for_days(config: SimConfig, first: date, last: date) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Accounts that signed up in [first, last]; the start day also carries every older account."""
    users = build_world(config).users
    lo = datetime.min if first <= config.start_date else datetime.combine(first, datetime.min.time())
    hi = datetime.combine(last + timedelta(days=1), datetime.min.time())
    sel = users.filter((pl.col("signup_at") >= lo) & (pl.col("signup_at") < hi))
    return CONTRACTS["users"].conform(sel), sel.select("user_id", "signup_at", "archetype", "ring_id")


def partition_date(table: str, frame: pl.DataFrame, config: SimConfig) -> pl.Series:
    """The lake partition (a date) of each row: its event date; older accounts land on day one."""
    d = frame[EVENT_TIME[table]].dt.date()
    if table in ("users", "user_truth"):
        d = d.clip(lower_bound=config.start_date)
    return d


def simulate_days(config: SimConfig, pool: pl.DataFrame, first: date, last: date) -> dict[str, pl.DataFrame]:
    """Every raw and ground-truth table for partitions first..last (inclusive), and `media`: one row per
    distinct image file the landed image posts reference (media_path relative to the lake, media_sha256,
    data), which the raw asset stores under lake/media."""
    if last < first:
        raise ValueError(f"last day {last} is before first day {first}")
    if first < config.start_date:
        raise ValueError(f"{first} is before the platform's first day {config.start_date}")
    cohort_first = max(config.start_date, first - timedelta(days=LOOKBACK_DAYS))
    days = [cohort_first + timedelta(days=i) for i in range((last - cohort_first).days + 1)]
    cohorts = [simulate_cohort(config, pool, d) for d in days]
    users, user_truth = _users_for_days(config, first, last)
    tables = {"users": users, "user_truth": user_truth}
    for name in cohorts[0]:
        tables[name] = pl.concat([c[name] for c in cohorts])
    plans = tables.pop("image_plan")
    out = {}
    for name, frame in tables.items():
        part = partition_date(name, frame, config)
        out[name] = frame.filter((part >= first) & (part <= last)).sort(EVENT_TIME[name], maintain_order=True)
    # Only the images of posts that land are drawn (ml/image_posts.py: drawing is the slow part).
    content = out["content"]
    media = render_media(plans, content.filter(pl.col("media_type") == "image")["content_id"])
    out["content"] = content.drop("media_sha256", "media_path").join(
        media.references, on="content_id", how="left", maintain_order="left"
    )
    out["image_truth"] = (
        media.truth.join(content.select("content_id", "created_at"), on="content_id")
        .select("content_id", "created_at", pl.exclude("content_id", "created_at"))
        .sort("created_at", maintain_order=True)
    )
    out = {name: CONTRACTS[name].conform(frame) if name in CONTRACTS else frame for name, frame in out.items()}
    return {**out, "media": media.files}
