"""The limits a launch is judged by: `LaunchBounds`, the one place for their defaults
(orchestration/settings.py derives a TRUSTLAKE_LAUNCH_<FIELD> variable from each field)."""

from __future__ import annotations

from dataclasses import dataclass

# first: no champion yet (nothing the platform relies on changes); low: within every bound; high: beyond one,
# so the launch waits for a person's approval and runs as the shadow meanwhile.
RISK_TIERS = ("first", "low", "high")


@dataclass(frozen=True)
class LaunchBounds:
    """How far a candidate may move what the platform does before its launch needs a person's approval, and
    how the launch's prediction is held to account afterwards."""

    backtest_days: int = 7  # the last days of platform content the backtest scores with candidate and champion
    # A policy's daily auto-removals may move this much (relative to the champion's, either way) before the launch
    # is high risk: removals act without a person, so their volume is the first thing a launch must not surprise.
    max_removal_change: float = 0.25
    max_review_change: float = 0.5  # the same for a policy's daily reviews (the moderators' queue)
    # A change of fewer items a day never makes a launch high risk, whatever its relative size (3 -> 5 removals).
    min_daily_change: float = 5.0
    review_seconds: float = 60.0  # a moderator's time per review: the review hours a queue change implies
    # After a promotion, a day's volume per action and policy may part from the launch's prediction by this much
    # (relative) before the post-launch check fails; it also has to lie beyond chance (ml/launch/postlaunch.py).
    volume_tolerance: float = 0.5

    def __post_init__(self) -> None:
        if self.backtest_days < 1:
            raise ValueError(f"backtest_days must be at least 1 (got {self.backtest_days})")
        for name in ("max_removal_change", "max_review_change", "volume_tolerance", "review_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be above 0 (got {getattr(self, name)})")
        if self.min_daily_change < 0:
            raise ValueError(f"min_daily_change must be 0 or more (got {self.min_daily_change})")
