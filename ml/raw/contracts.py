"""The raw platform tables' contracts: each table's columns, types and rules, stated once.

Everything else about a raw table is derived from these contracts, never typed again:
- the landing validation engine (`ml.raw.validation`, `ml.raw.landing_check`) checks files
  against them rule by rule;
- the simulator writes its frames through `TableContract.conform`, so it writes exactly the
  contract's columns and types (a missing or mistyped column fails there, not in dbt);
- dbt's raw sources YAML (`dbt_project/models/staging/platform/_platform__sources.yml`) is
  rendered from them by `trustlake prepare` (assets/dbt_inputs.py) before `dbt parse`,
  with each column's `data_type`; the staging models select and cast the source's columns
  through the `raw_columns` macro, which reads them from dbt's graph;
- enum values are the vocabularies of `ml.taxonomy`, which dbt reads as vars.

Why the Python contract is the one source (and not dbt's YAML, read back by Python): most of
the rules have no dbt test (a text hash equal to the hash of its text, text lengths, minimum
values, time order on a row, references checked against the lake before a row lands), and the
validation engine needs typed columns to coerce CSV text row by row. Rendering the subset dbt
re-tests from these dataclasses is a few lines; parsing dbt test syntax and a custom `meta`
schema back into Python would be a second rules language to keep right.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import polars as pl

from ml.taxonomy import (
    APPEAL_OUTCOMES,
    DECISION_ACTIONS,
    ENFORCEMENTS,
    MEDIA_TYPES,
    POLICIES,
    REVIEW_REASONS,
    SURFACES,
    VIOLATING,
)

# Event times may run ahead of the lake's clock by this much (clock skew, time zones); beyond
# it a row is a future timestamp. dbt's `not_in_future` source tests get the same tolerance.
FUTURE_TOLERANCE = timedelta(hours=24)
MAX_TEXT_CHARS = 10_000  # a post or message body
MAX_STRING_CHARS = 256  # identifiers, codes, fingerprints, enum values
TIMESTAMP = pl.Datetime("us")  # naive UTC


@dataclass(frozen=True)
class Reference:
    """`column` holds the key of a row of `table`, which must be in the lake; the referring row's
    event time is never before that row's; `allowed` limits the referenced rows' values."""

    column: str
    table: str
    allowed: tuple[str, tuple[str, ...]] | None = None  # (column of `table`, values it may have)


@dataclass(frozen=True)
class TableContract:
    """The shape and rules of one raw table."""

    table: str
    columns: dict[str, pl.DataType]  # every column, in order, with its type; the first is the key
    event_time: str  # the timestamp that puts a row in its daily partition
    required: tuple[str, ...]  # never null (the key and event time included)
    enums: dict[str, tuple[str, ...]] = field(default_factory=dict)  # values: ml.taxonomy vocabularies
    max_chars: dict[str, int] = field(default_factory=dict)  # String columns not named: MAX_STRING_CHARS
    min_values: dict[str, int] = field(default_factory=dict)
    ordered: tuple[tuple[str, str], ...] = ()  # (later, earlier): on one row, `later` never precedes `earlier`
    text_hash: tuple[str, str] | None = None  # (text, hash): hash == ml.text.text_hash(normalise(text))
    unique: tuple[str, ...] = ()  # columns besides the key that are unique across the table
    references: tuple[Reference, ...] = ()  # checked against the lake when a file lands

    @property
    def key(self) -> str:
        """Never null, unique within a file (and, for landed files, across the lake)."""
        return next(iter(self.columns))

    def conform(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`frame` as this table is written: exactly the contract's columns, in order, in their types.
        A missing column or a value that does not cast raises: the writer has a bug."""
        return frame.select(pl.col(name).cast(dtype) for name, dtype in self.columns.items())

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=self.columns)


CONTRACTS: dict[str, TableContract] = {
    c.table: c
    for c in (
        TableContract(
            "users",
            {
                "user_id": pl.Int64,
                "signup_at": TIMESTAMP,
                "country": pl.String,
                "language": pl.String,
                "device_fingerprint": pl.String,
                "ip_fingerprint": pl.String,
                "verified": pl.Boolean,
                "follower_count": pl.Int64,
            },
            event_time="signup_at",
            required=("user_id", "signup_at"),
            min_values={"follower_count": 0},
        ),
        TableContract(
            "content",
            {
                "content_id": pl.Int64,
                "author_id": pl.Int64,
                "created_at": TIMESTAMP,
                "surface": pl.String,
                "language": pl.String,
                "text": pl.String,
                "text_hash": pl.String,
                "has_link": pl.Boolean,
                "has_phone": pl.Boolean,
                # An image post: its caption is `text`; the file is stored once per distinct image at
                # lake/<media_path> = media/<2 hex>/<media_sha256>.<ext> (ml.images.decode.media_path).
                "media_type": pl.String,
                "media_sha256": pl.String,
                "media_path": pl.String,
            },
            event_time="created_at",
            required=("content_id", "author_id", "created_at", "text", "text_hash", "media_type"),
            enums={"surface": SURFACES, "media_type": MEDIA_TYPES},
            max_chars={"text": MAX_TEXT_CHARS},
            text_hash=("text", "text_hash"),
            references=(Reference("author_id", "users"),),
        ),
        TableContract(
            "reports",
            {
                "report_id": pl.Int64,
                "content_id": pl.Int64,
                "reporter_id": pl.Int64,
                "reason": pl.String,
                "reported_at": TIMESTAMP,
            },
            event_time="reported_at",
            required=("report_id", "content_id", "reported_at"),
            enums={"reason": VIOLATING},
            references=(Reference("content_id", "content"),),
        ),
        TableContract(
            "decisions",
            {
                "decision_id": pl.Int64,
                "content_id": pl.Int64,
                "moderator_id": pl.Int64,
                "review_reason": pl.String,
                "policy": pl.String,
                "action": pl.String,
                "decided_at": TIMESTAMP,
            },
            event_time="decided_at",
            required=("decision_id", "content_id", "moderator_id", "decided_at"),
            enums={"review_reason": REVIEW_REASONS, "policy": POLICIES, "action": DECISION_ACTIONS},
            unique=("content_id",),
            references=(Reference("content_id", "content"),),
        ),
        TableContract(
            "appeals",
            {
                "appeal_id": pl.Int64,
                "decision_id": pl.Int64,
                "content_id": pl.Int64,
                "appellant_id": pl.Int64,
                "appealed_at": TIMESTAMP,
                "resolved_at": TIMESTAMP,
                "outcome": pl.String,
            },
            event_time="resolved_at",
            required=("appeal_id", "decision_id", "resolved_at"),
            enums={"outcome": APPEAL_OUTCOMES},
            ordered=(("resolved_at", "appealed_at"),),
            references=(Reference("decision_id", "decisions", allowed=("action", ENFORCEMENTS)),),
        ),
        TableContract(
            "qa_audits",
            {
                "audit_id": pl.Int64,
                "content_id": pl.Int64,
                "auditor_id": pl.Int64,
                "gold_policy": pl.String,
                "audited_at": TIMESTAMP,
            },
            event_time="audited_at",
            required=("audit_id", "content_id", "audited_at"),
            enums={"gold_policy": POLICIES},
            references=(Reference("content_id", "content"),),
        ),
    )
}
# In landing order: a table's references point only at tables before it.
RAW_TABLES: tuple[str, ...] = tuple(CONTRACTS)
