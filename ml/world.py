"""The simulated platform's world, fixed by the seed: its knobs (SimConfig), its accounts with their
archetypes, the rings that share devices and IPs, and its moderators; and the clock and id helpers the
simulator draws every day's posts and events with (ml/simulator.py; docs/simulator.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache

import numpy as np
import polars as pl

from ml.taxonomy import ARCHETYPES

DAY = 86_400
HOUR = 3_600
_EPOCH = datetime(1970, 1, 1)

# Probability of each policy for a post, by author archetype (rows follow ARCHETYPES,
# columns follow POLICIES: benign, hate_speech, harassment, spam, scam).
POLICY_MIX = np.array(
    [
        [0.90, 0.01, 0.06, 0.02, 0.01],  # ordinary
        [0.25, 0.25, 0.50, 0.00, 0.00],  # troll
        [0.15, 0.00, 0.00, 0.85, 0.00],  # spammer
        [0.10, 0.00, 0.00, 0.30, 0.60],  # scam_ring
    ]
)
ACTIVITY = np.array([1.0, 2.0, 3.0, 3.0])  # relative posting rate by archetype
# How a ring runs its campaigns (ml/ring_campaigns.py): ring r runs RING_STYLES[r % 3]. A "sleeper" ring's
# accounts post as ordinary accounts do (their policy mix and rate) outside its campaigns.
RING_STYLES = ("copy", "varied", "sleeper")
COUNTRIES = ("US", "GB", "IN", "BR", "DE", "NG", "PH", "MX", "FR", "ID")
COUNTRY_P = (0.30, 0.10, 0.15, 0.09, 0.06, 0.07, 0.07, 0.06, 0.05, 0.05)
LANGUAGE_OF = {
    "US": "en",
    "GB": "en",
    "IN": "en",
    "BR": "pt",
    "DE": "de",
    "NG": "en",
    "PH": "en",
    "MX": "es",
    "FR": "fr",
    "ID": "id",
}
# Ways the world can change from a given day on (SimConfig.world_shift; docs/simulator.md, "World shifts").
WORLD_SHIFTS: tuple[str, ...] = ("spam_campaign", "slang")


@dataclass(frozen=True)
class SimConfig:
    """Knobs of the generative model (docs/simulator.md)."""

    seed: int = 42
    start_date: date = date(2026, 10, 1)
    users: int = 4_000
    content_per_day: int = 2_000
    moderators: int = 40
    auditors: int = 6
    archetype_mix: tuple[float, ...] = (0.86, 0.07, 0.04, 0.03)
    ring_size: int = 8
    campaign_share: float = 0.15  # share of a day's posts that are ring campaign bursts
    # P(at least one organic report) by true policy, in POLICIES order.
    report_rate: tuple[float, ...] = (0.012, 0.55, 0.35, 0.30, 0.35)
    brigade_rate: float = 0.004  # share of benign posts hit by a troll brigade
    proactive_review_rate: float = 0.03
    qa_audit_rate: float = 0.03
    appeal_rate_wrong: float = 0.45
    appeal_rate_right: float = 0.08
    overturn_rate_wrong: float = 0.75
    overturn_rate_right: float = 0.05
    history_days: int = 730  # how far before start_date the oldest accounts signed up
    horizon_days: int = 365  # accounts keep signing up this long after start_date
    # A change in the world from `world_shift_from` on; "" = none. "spam_campaign": a new ring of
    # bot accounts, created the day before, posts engagement-bait spam no corpus holds, adding
    # `world_shift_share` of a day's posts. "slang": that share of ordinary accounts' benign posts
    # use profanity as praise ("this slaps", "so fucking good"), still benign. Days before
    # `world_shift_from` are generated exactly as without the shift.
    world_shift: str = ""
    world_shift_from: date | None = None
    world_shift_share: float = 0.25
    # Share of an ordinary account's regular posts that are images showing their text (ml/image_posts.py:
    # trolls post twice as many, spam and scam rings four times; rings post removed images again).
    image_share: float = 0.002
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.world_shift and self.world_shift not in WORLD_SHIFTS:
            raise ValueError(f"unknown world shift {self.world_shift!r} (expected one of {', '.join(WORLD_SHIFTS)})")
        if self.world_shift and self.world_shift_from is None:
            raise ValueError(f"world shift {self.world_shift!r} needs the day it starts (world_shift_from)")
        if not 0.0 < self.world_shift_share <= 1.0:
            raise ValueError(f"world_shift_share {self.world_shift_share} must be in (0, 1]")
        if not 0.0 <= self.image_share <= 0.25:
            raise ValueError(f"image_share {self.image_share} must be in [0, 0.25] (rings post up to 4x as many)")

    def day_index(self, day: date) -> int:
        return (day - self.start_date).days

    def shifted(self, day: date) -> bool:
        """Whether `day` lies in the shifted world."""
        return bool(self.world_shift) and day >= self.world_shift_from


def stream_rng(config: SimConfig, *stream: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, *stream])


def random_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    # Random 62-bit identifiers: opaque like hashed platform ids, unique in practice.
    return rng.integers(1, 2**62, size=n, dtype=np.int64)


def _hex(values: np.ndarray) -> list[str]:
    return [f"{v:016x}" for v in values.tolist()]


def timestamps(seconds: np.ndarray) -> pl.Series:
    return pl.Series(seconds.astype(np.int64) * 1_000_000).cast(pl.Datetime("us"))


def day_epoch(day: date) -> int:
    return int((datetime(day.year, day.month, day.day) - _EPOCH).total_seconds())


def ring_styles(ring_id: np.ndarray) -> np.ndarray:
    """The style of each ring id ("" for -1, no ring)."""
    ring_id = np.asarray(ring_id)
    return np.where(ring_id >= 0, np.array(RING_STYLES)[np.maximum(ring_id, 0) % len(RING_STYLES)], "")


# ---------------------------------------------------------------------------------------
# The world: users with archetypes, rings that share fingerprints, moderators.
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class World:
    users: pl.DataFrame  # platform columns plus hidden archetype and ring_id
    moderator_ids: np.ndarray
    moderator_accuracy: np.ndarray
    moderator_speed: np.ndarray
    auditor_ids: np.ndarray


@lru_cache(maxsize=8)
def build_world(config: SimConfig) -> World:
    rng = stream_rng(config, 0)
    n = config.users
    archetype = rng.choice(len(ARCHETYPES), size=n, p=np.array(config.archetype_mix))
    start = day_epoch(config.start_date)
    user_id = random_ids(rng, n)

    # Rings: spammers and scam members are grouped; each ring shares a couple of devices
    # and one or two IPs, and its accounts were created together in a burst.
    ring_id = np.full(n, -1, dtype=np.int64)
    is_ring = archetype >= 2
    ring_members = np.flatnonzero(is_ring)
    ring_members = ring_members[np.argsort(archetype[ring_members], kind="stable")]
    # Split spammer and scam members separately so a ring has one archetype.
    ring_of_member = np.empty(len(ring_members), dtype=np.int64)
    offset = 0
    for a in (2, 3):
        members = np.flatnonzero(archetype[ring_members] == a)
        k = max(1, len(members) // config.ring_size)
        ring_of_member[members] = offset + rng.integers(0, k, size=len(members))
        offset += k
    n_rings = offset
    ring_id[ring_members] = ring_of_member
    # Most rings already operate when the window opens; a few are founded during it.
    ring_created = start + rng.integers(-120, 45, size=n_rings) * DAY

    signup = start + rng.integers(-config.history_days * DAY, config.horizon_days * DAY, size=n)
    signup[is_ring] = ring_created[ring_id[is_ring]] + rng.integers(0, 6 * HOUR, size=is_ring.sum())
    troll = archetype == 1
    signup[troll] = start + rng.integers(-120 * DAY, config.horizon_days * DAY, size=troll.sum())

    device = rng.integers(0, 2**62, size=n, dtype=np.int64)
    ip = rng.integers(0, 2**62, size=n, dtype=np.int64)
    ring_devices = rng.integers(0, 2**62, size=(n_rings, 2), dtype=np.int64)
    ring_ips = rng.integers(0, 2**62, size=(n_rings, 2), dtype=np.int64)
    device[is_ring] = ring_devices[ring_id[is_ring], rng.integers(0, 2, size=is_ring.sum())]
    ip[is_ring] = ring_ips[ring_id[is_ring], rng.integers(0, 2, size=is_ring.sum())]
    # Households: a few ordinary accounts share an IP with another ordinary account.
    ordinary = np.flatnonzero(archetype == 0)
    share = rng.random(len(ordinary)) < 0.05
    ip[ordinary[share]] = ip[rng.choice(ordinary, size=share.sum())]

    country = rng.choice(len(COUNTRIES), size=n, p=np.array(COUNTRY_P))
    countries = np.array(COUNTRIES)[country]
    followers = np.floor(rng.lognormal(4.0, 1.6, size=n)).astype(np.int64)
    followers[is_ring] = rng.integers(0, 30, size=is_ring.sum())
    verified = (rng.random(n) < 0.04) & (archetype == 0)
    sleeper = ring_styles(ring_id) == "sleeper"
    activity = np.where(sleeper, ACTIVITY[0], ACTIVITY[archetype]) * rng.lognormal(0.0, 0.5, size=n)
    bot = np.zeros(n, dtype=bool)
    if config.world_shift == "spam_campaign":
        extra = _campaign_bots(config, n_rings)
        user_id, signup, device, ip, ring_id, countries, followers, verified, activity, archetype, bot = (
            np.concatenate([a, extra[k]])
            for a, k in (
                (user_id, "user_id"),
                (signup, "signup"),
                (device, "device"),
                (ip, "ip"),
                (ring_id, "ring_id"),
                (countries, "country"),
                (followers, "followers"),
                (verified, "verified"),
                (activity, "activity"),
                (archetype, "archetype"),
                (bot, "bot"),
            )
        )

    users = pl.DataFrame(
        {
            "user_id": user_id,
            "signup_at": timestamps(signup),
            "country": countries,
            "language": pl.Series(countries).replace_strict(LANGUAGE_OF).to_numpy(),
            "device_fingerprint": _hex(device),
            "ip_fingerprint": _hex(ip),
            "verified": verified,
            "follower_count": followers,
            "archetype": np.array(ARCHETYPES)[archetype],
            "ring_id": ring_id,
            "_signup_s": signup,
            "_archetype": archetype,
            "_activity": activity,
            "_campaign_bot": bot,
        }
    )
    m = config.moderators
    mrng = stream_rng(config, 1)
    return World(
        users=users,
        moderator_ids=random_ids(mrng, m),
        moderator_accuracy=mrng.uniform(0.72, 0.97, size=m),
        moderator_speed=mrng.lognormal(0.0, 0.4, size=m),
        auditor_ids=random_ids(mrng, config.auditors),
    )


def _campaign_bots(config: SimConfig, ring: int) -> dict[str, np.ndarray]:
    """The accounts of the "spam_campaign" shift: one new ring created in a burst in the first hours of
    the day the shift starts (so they land with that day), sharing two devices and two IPs. Drawn from
    their own stream, so the rest of the world is the same with or without them."""
    rng = stream_rng(config, 4)
    n = max(3 * config.ring_size, config.users // 100)
    created = day_epoch(config.world_shift_from) + rng.integers(0, BOTS_POST_AFTER, size=n)
    devices, ips = rng.integers(0, 2**62, size=2, dtype=np.int64), rng.integers(0, 2**62, size=2, dtype=np.int64)
    return {
        "user_id": random_ids(rng, n),
        "signup": created,
        "device": devices[rng.integers(0, 2, size=n)],
        "ip": ips[rng.integers(0, 2, size=n)],
        "ring_id": np.full(n, ring, dtype=np.int64),
        "country": np.array(COUNTRIES)[rng.choice(len(COUNTRIES), size=n, p=np.array(COUNTRY_P))],
        "followers": rng.integers(0, 30, size=n),
        "verified": np.zeros(n, dtype=bool),
        "activity": np.zeros(n),
        "archetype": np.full(n, ARCHETYPES.index("spammer")),
        "bot": np.ones(n, dtype=bool),
    }


BOTS_POST_AFTER = 3 * HOUR  # the bots sign up within this long after the first day starts, and post after it

_HOUR_WEIGHTS = 1.0 + 0.8 * np.sin((np.arange(24) - 14) / 24 * 2 * np.pi)  # evening peak UTC
_HOUR_P = _HOUR_WEIGHTS / _HOUR_WEIGHTS.sum()


def diurnal_times(rng: np.random.Generator, n: int, day_start: int) -> np.ndarray:
    return day_start + rng.choice(24, size=n, p=_HOUR_P) * HOUR + rng.integers(0, HOUR, size=n)
