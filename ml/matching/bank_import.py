"""Importing a bank from a CSV file of PDQ hashes or texts: every row is either an entry or a
quarantined row with the reason, never silently dropped.

The file needs a header naming the column that holds the values (`PDQ_COLUMNS` or `TEXT_COLUMNS`,
case-insensitive; other columns are allowed and ignored, except an optional `quality` beside PDQ
hashes, which is checked against PDQ's floor). A problem with the file as a whole (unreadable,
not UTF-8, no header we understand, an unknown policy) raises `BankImportError` before any row is
taken, so the caller quarantines the file itself; a problem with a row quarantines that row:
wrong number of fields, an empty value, a hash that is not 64 hex characters, a degenerate hash
(all bits equal: what featureless images hash to), a low quality, a text too long or too short to
match as a near-duplicate, a duplicate of an earlier row or of an entry the bank already holds.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import polars as pl

from ml.matching.banks import BankEntry, BankKind, Imported
from ml.matching.pdq import HEX_LENGTH, MIN_QUALITY, hex_problem
from ml.matching.text import TextMatchParams, matching_form
from ml.taxonomy import VIOLATING

PDQ_COLUMNS: tuple[str, ...] = ("pdq", "pdq_hash", "hash", "signal", "value")
TEXT_COLUMNS: tuple[str, ...] = ("text", "content", "value")
MAX_TEXT_CHARS = 5000
BANK_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


class BankImportError(ValueError):
    """The file cannot be imported at all; the message says what to fix."""


@dataclass(frozen=True)
class QuarantinedRow:
    """A row that was not imported: its line in the file (header = line 1), the row as CSV, and why."""

    line: int
    row: str
    reason: str


@dataclass(frozen=True)
class BankImport:
    """The outcome of one import: entries and quarantined rows together account for every data row."""

    file_name: str
    file_sha256: str
    bank: str
    policy: str
    kind: BankKind
    rows: int
    entries: tuple[BankEntry, ...]
    quarantined: tuple[QuarantinedRow, ...]

    def quarantine_frame(self) -> pl.DataFrame:
        """Quarantined rows (line, row, reason), the file the integrator writes beside the reason file."""
        return pl.DataFrame(
            {
                "line": [q.line for q in self.quarantined],
                "row": [q.row for q in self.quarantined],
                "reason": [q.reason for q in self.quarantined],
            },
            schema={"line": pl.Int64, "row": pl.String, "reason": pl.String},
        )

    def summary(self) -> str:
        """A reason file's text: what was imported and, per reason, how many rows were not."""
        lines = [
            f"{self.file_name} (sha256 {self.file_sha256}) into bank {self.bank!r}, policy {self.policy}, kind {self.kind}:",
            f"{self.rows} data rows, {len(self.entries)} imported, {len(self.quarantined)} quarantined",
        ]
        counts = self.quarantine_frame().group_by("reason").len().sort("len", descending=True)
        lines += [f"  {n} x {reason}" for reason, n in counts.iter_rows()]
        return "\n".join(lines) + "\n"


def import_bank_csv(
    path: Path,
    bank: str,
    policy: str,
    kind: BankKind | str,
    importer: str,
    imported_at: datetime,
    existing: Iterable[str] = (),
    text_params: TextMatchParams = TextMatchParams(),
    max_text_chars: int = MAX_TEXT_CHARS,
) -> BankImport:
    """Validate every row of the CSV at `path` as a `kind` entry of `bank` with `policy`; `existing`
    holds the values (PDQ hex, or texts) the bank already has, so re-importing a file adds nothing."""
    kind = BankKind(kind)
    if not BANK_NAME.match(bank):
        raise BankImportError(f"bank name {bank!r}: use 1-64 lower-case letters, digits, '_', '-' or '.'")
    if policy not in VIOLATING:
        raise BankImportError(f"policy {policy!r} is not a violating policy; choose from {', '.join(VIOLATING)}")
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BankImportError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BankImportError(
            f"{path.name} is not UTF-8 text (line {line}, byte {exc.start}); save it as UTF-8 CSV"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise BankImportError(f"{path.name} is empty; expected a header line, then one value per row") from None
    except csv.Error as exc:
        raise BankImportError(f"{path.name}: the header line is not valid CSV ({exc})") from None
    names = [h.strip().lower() for h in header]
    accepted = PDQ_COLUMNS if kind == BankKind.PDQ else TEXT_COLUMNS
    column = next((names.index(c) for c in accepted if c in names), None)
    if column is None:
        raise BankImportError(
            f"{path.name}: no column for {kind} values in the header {header!r}; name it one of {', '.join(accepted)}"
        )
    quality_column = names.index("quality") if kind == BankKind.PDQ and "quality" in names else None

    def normal(value: str) -> str:
        return value.strip().lower() if kind == BankKind.PDQ else matching_form(value)

    seen: dict[str, int] = {}
    for value in existing:
        seen.setdefault(normal(value), 0)
    entries: list[BankEntry] = []
    quarantined: list[QuarantinedRow] = []
    rows = 0
    line = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. an unterminated quote: everything after it is one broken row
            rows += 1
            quarantined.append(QuarantinedRow(line, "", f"not valid CSV from here on ({exc})"))
            break
        rows += 1
        reason = _row_problem(fields, header, column, quality_column, kind, text_params, max_text_chars)
        value = fields[column] if not reason else ""
        if not reason:
            key = normal(value)
            if key in seen:
                reason = "already in the bank" if seen[key] == 0 else f"duplicate of line {seen[key]}"
            else:
                seen[key] = line
        if reason:
            quarantined.append(QuarantinedRow(line, _as_csv(fields), reason))
        else:
            stored = value.strip().lower() if kind == BankKind.PDQ else value
            entries.append(BankEntry(bank, policy, kind, stored, Imported(path.name, line, importer, imported_at)))
        line = reader.line_num + 1
    return BankImport(
        path.name, hashlib.sha256(data).hexdigest(), bank, policy, kind, rows, tuple(entries), tuple(quarantined)
    )


def _row_problem(
    fields: list[str],
    header: list[str],
    column: int,
    quality_column: int | None,
    kind: BankKind,
    text_params: TextMatchParams,
    max_text_chars: int,
) -> str:
    if not fields or all(not f.strip() for f in fields):
        return "empty line"
    if len(fields) != len(header):
        return f"has {len(fields)} fields; the header has {len(header)}"
    value = fields[column]
    if not value.strip():
        return f"empty {kind} value"
    if kind == BankKind.PDQ:
        value = value.strip()
        problem = hex_problem(value)
        if problem:
            return f"not a PDQ hash: {problem}"
        if value.lower() in ("0" * HEX_LENGTH, "f" * HEX_LENGTH):
            return "degenerate PDQ hash (all bits equal): featureless images hash to it, so it would match them all"
        if quality_column is not None:
            raw = fields[quality_column].strip()
            if raw:
                try:
                    quality = int(float(raw))
                except ValueError:
                    return f"quality {raw!r} is not a number"
                if quality < MIN_QUALITY:
                    return f"PDQ quality {quality} is below {MIN_QUALITY}: too featureless to match safely"
        return ""
    if len(value) > max_text_chars:
        return f"text has {len(value)} characters, more than {max_text_chars}"
    form = matching_form(value)
    if len(form) < text_params.min_chars:
        return (
            f"text is too short to match as a near-duplicate ({len(form)} characters after normalisation; "
            f"needs {text_params.min_chars})"
        )
    return ""


def _as_csv(fields: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(fields)
    return buffer.getvalue()


__all__ = [
    "BANK_NAME",
    "MAX_TEXT_CHARS",
    "PDQ_COLUMNS",
    "TEXT_COLUMNS",
    "BankImport",
    "BankImportError",
    "QuarantinedRow",
    "import_bank_csv",
]
