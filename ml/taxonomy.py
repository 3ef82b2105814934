"""The platform's policy taxonomy and how each corpus label maps onto it."""

from __future__ import annotations

POLICIES: tuple[str, ...] = ("benign", "hate_speech", "harassment", "spam", "scam")
VIOLATING: tuple[str, ...] = POLICIES[1:]

# When copies of one normalised text carry different labels, the highest rank wins:
# a more specific or more severe label is more informative than a generic one
# (smishing is a kind of spam; hate is a kind of offensive language), and any
# violating label beats benign because a human saw a reason to flag it.
CONFLICT_PRECEDENCE: dict[str, int] = {
    "benign": 0,
    "harassment": 1,
    "spam": 2,
    "hate_speech": 3,
    "scam": 4,
}

# What a moderator decides (the `decisions` table); the enforcement policy's own actions are
# ml.enforcement.ENFORCEMENT_ACTIONS.
DECISION_ACTIONS: tuple[str, ...] = ("remove", "restrict", "no_action")
SURFACES: tuple[str, ...] = ("post", "comment", "video_comment", "direct_message")
ARCHETYPES: tuple[str, ...] = ("ordinary", "troll", "spammer", "scam_ring")
