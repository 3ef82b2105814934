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

# What a moderator decides (the `decisions` table): an enforcement, which an appeal can contest,
# or none. The enforcement policy's own actions are ml.enforcement.ENFORCEMENT_ACTIONS.
ENFORCEMENTS: tuple[str, ...] = ("remove", "restrict")
DECISION_ACTIONS: tuple[str, ...] = (*ENFORCEMENTS, "no_action")
REVIEW_REASONS: tuple[str, ...] = ("user_report", "proactive")  # why a moderator saw the content
APPEAL_OUTCOMES: tuple[str, ...] = ("upheld", "overturned")
SURFACES: tuple[str, ...] = ("post", "comment", "video_comment", "direct_message")
ARCHETYPES: tuple[str, ...] = ("ordinary", "troll", "spammer", "scam_ring")
# What the models' audit log records (ml/launch/audit.py): each change to what is deployed, and who decided it.
AUDIT_ACTIONS: tuple[str, ...] = (
    "promote",
    "rollback",
    "approval_requested",
    "approve",
    "reject",
    "shadow_start",
    "shadow_stop",
)
# What a content item is: text, or an image (its file in the lake by content hash, any caption in `text`).
MEDIA_TYPES: tuple[str, ...] = ("text", "image")

# The vocabularies the warehouse tests and groups by, under the dbt var names they are passed as
# on every dbt invocation (assets/dbt_inputs.py): dbt never restates a list.
VOCABULARIES: dict[str, tuple[str, ...]] = {
    "policies": POLICIES,
    "violating": VIOLATING,
    "surfaces": SURFACES,
    "review_reasons": REVIEW_REASONS,
    "decision_actions": DECISION_ACTIONS,
    "enforcements": ENFORCEMENTS,
    "appeal_outcomes": APPEAL_OUTCOMES,
    "audit_actions": AUDIT_ACTIONS,
    "media_types": MEDIA_TYPES,
}
