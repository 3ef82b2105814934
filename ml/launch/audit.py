"""The models' audit log: every promotion, approval, rejection, rollback and shadow start or stop, one
JSON line each, appended and never rewritten (`<home>/models/audit.jsonl`).

A record says who, when, what and why, and names the evidence the change rested on (the launch report
or its backtest, with the file's SHA-256 so the exact bytes can be checked later). The registry appends
a record for every change it commits, under its lock (ml/registry.py), through `ml.lake.append_line`:
fsynced before the command returns. A writer killed mid-append leaves a torn last line; the next append
seals it onto a line of its own, and `read` reports every line it cannot read (where, and why) beside
the records it can: a damaged line is never dropped silently, and never hides the records after it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from ml.lake import append_line
from ml.taxonomy import AUDIT_ACTIONS

AUDIT_FILE = "audit.jsonl"
SHOWN_CHARS = 200  # of a damaged line, in reports


@dataclass(frozen=True)
class AuditRecord:
    """One change to what is deployed. `report`: the evidence it rested on (a path under the models
    directory), `report_sha256` that file's hash when the change was made. `recovered`: appended late,
    from the registry's history, because the process that made the change stopped before appending it."""

    event_id: str
    at: str
    action: str
    version: str
    actor: str
    reason: str
    previous: str | None = None  # the champion before a promotion; what preceded the target of a rollback
    rolled_back: str | None = None
    risk_tier: str | None = None
    report: str | None = None
    report_sha256: str | None = None
    recovered: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AuditRecord:
        known = {f.name for f in fields(cls)}
        missing = [f for f in ("event_id", "at", "action", "version", "actor", "reason") if f not in data]
        if missing:
            raise ValueError(f"lacks {', '.join(missing)}")
        if data["action"] not in AUDIT_ACTIONS:
            raise ValueError(f"unknown action {data['action']!r}")
        return cls(**{k: v for k, v in data.items() if k in known})


def new_record(action: str, version: str, actor: str, reason: str, **details) -> AuditRecord:
    """A record of a change made now, with a fresh event id."""
    at = datetime.now(UTC).isoformat(timespec="seconds")
    return AuditRecord(f"{at}-{secrets.token_hex(4)}", at, action, version, actor, reason, **details)


@dataclass(frozen=True)
class DamagedLine:
    """A line of the log that holds no readable record: where it is, its first characters, and why."""

    line: int  # 1-based
    text: str
    problem: str

    def describe(self, path: Path) -> str:
        return f"{path} line {self.line}: {self.problem}: {self.text!r}"


@dataclass(frozen=True)
class AuditTrail:
    records: tuple[AuditRecord, ...]
    lines: tuple[int, ...]  # the line each record is on (1-based)
    damaged: tuple[DamagedLine, ...]


class AuditLog:
    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, record: AuditRecord) -> None:
        append_line(self.path, json.dumps(record.to_dict(), sort_keys=True).encode())

    def read(self) -> AuditTrail:
        """Every readable record in order, and every damaged line with why (a torn last line included)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return AuditTrail((), (), ())
        lines = data.split(b"\n")
        last = lines.pop()  # b"" when the file ends with an end of line, as every complete append does
        records, numbers, damaged = [], [], []
        for number, raw in enumerate(lines, 1):
            try:
                records.append(AuditRecord.from_dict(json.loads(raw)))
                numbers.append(number)
            except (UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError) as exc:
                problem = (
                    "not a JSON record (a write cut off, sealed when the next record was appended)"
                    if isinstance(exc, UnicodeDecodeError | json.JSONDecodeError)
                    else f"not an audit record ({exc})"
                )
                damaged.append(DamagedLine(number, _shown(raw), problem))
        if last:
            damaged.append(
                DamagedLine(
                    len(lines) + 1,
                    _shown(last),
                    "torn: the last line has no end of line (the process writing it stopped mid-write)",
                )
            )
        return AuditTrail(tuple(records), tuple(numbers), tuple(damaged))

    def event_ids(self) -> set[str]:
        return {r.event_id for r in self.read().records}

    def fingerprint(self) -> str:
        """What the log holds, as one version: its SHA-256 ("empty" before the first record)."""
        return file_sha256(self.path) or "empty"


def _shown(raw: bytes) -> str:
    return raw[:SHOWN_CHARS].decode("utf-8", errors="replace")


def file_sha256(path: Path) -> str | None:
    """The SHA-256 of a file, or None when it does not exist (evidence named before it was written)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return None
