"""Where the `hash_banks` table's entries come from: confirmed removals in the raw lake, and the files
`trustlake bank import` took; and which entries a day's batch may match.

- **Confirmed removals** (bank `REMOVALS_BANK`): a post's first removal or restriction
  (ml.campaigns.features.confirmed_removals, the rule campaign features use) that an appeal upheld or a
  QA audit found violating, and that no appeal overturned. It is confirmed when the earlier of the two
  came, never before the removal itself. An image post becomes a PDQ entry (reference and robust code
  of the image, from `image_text`; not when PDQ's quality is below its floor) and, when OCR read enough
  text in it, a text entry; a text post becomes a text entry. The entry's policy is the decision's.
- **Imports**: each imported file's good rows as one Parquet file under
  `<lake.banks>/imported/<bank>/<file sha256>.parquet` (`save_import`), so importing the same file again
  replaces it rather than adding copies; `imports_version` fingerprints them all, which is how a run
  learns that an import happened since `hash_banks` was last built.

Entries carry the time they became known (`confirmed_at`, `imported_at`); `applicable` keeps those a
day's batch could have used: every imported entry (an import is knowledge about content, whenever it
was posted) and the removals confirmed before the day ended. So a later day never changes what an
earlier day matched, and a rebuilt day matches what it matched the first time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import polars as pl

from ml.lake import Lake, write_parquet_atomic
from ml.matching.bank_import import BankImport
from ml.matching.banks import ENTRY_SCHEMA, BankEntry, BankKind, ConfirmedRemoval, entries_frame
from ml.matching.pdq import MIN_QUALITY
from ml.matching.text import TextMatchParams, matching_form
from ml.taxonomy import VIOLATING

REMOVALS_BANK = "confirmed_removals"
IMPORTED = "imported"
HASH_BANKS = "hash_banks"
UPHELD_SCHEMA = {
    "decision_id": pl.Int64,
    "content_id": pl.Int64,
    "policy": pl.String,
    "confirmed_at": pl.Datetime("us"),
}


def upheld_removals(
    removals: pl.DataFrame, decisions: pl.DataFrame, appeals: pl.DataFrame, qa_audits: pl.DataFrame
) -> pl.DataFrame:
    """decision_id, content_id, policy, confirmed_at of the removals in `removals` (content_id,
    removed_at, overturned_at: ml.campaigns.features.confirmed_removals) that an appeal upheld or a QA
    audit found violating, unless an appeal overturned them."""
    by_appeal = (
        appeals.filter(pl.col("outcome") == "upheld")
        .group_by("content_id")
        .agg(pl.col("resolved_at").min().alias("_appeal_at"))
    )
    by_qa = (
        qa_audits.filter(pl.col("gold_policy").is_in(VIOLATING))
        .group_by("content_id")
        .agg(pl.col("audited_at").min().alias("_qa_at"))
    )
    upheld = (
        removals.filter(pl.col("overturned_at").is_null())
        .join(decisions.select("content_id", "decision_id", "policy"), on="content_id")
        .filter(pl.col("policy").is_in(VIOLATING))
        .join(by_appeal, on="content_id", how="left")
        .join(by_qa, on="content_id", how="left")
        .with_columns(_upheld_at=pl.min_horizontal("_appeal_at", "_qa_at"))
        .filter(pl.col("_upheld_at").is_not_null())
        # A QA audit before the removal confirms it the moment it is made.
        .with_columns(confirmed_at=pl.max_horizontal("removed_at", "_upheld_at"))
    )
    return upheld.select(list(UPHELD_SCHEMA)).cast(UPHELD_SCHEMA).sort("confirmed_at", "content_id")


def removal_entries(
    upheld: pl.DataFrame,
    content: pl.DataFrame,
    images: pl.DataFrame,
    text_params: TextMatchParams = TextMatchParams(),
) -> tuple[list[BankEntry], dict[str, int]]:
    """Bank entries of `upheld` removals (`upheld_removals`), and counts of what was not banked and why.

    `content`: content_id, media_type, media_sha256, text; `images`: media_sha256, ocr_text, pdq,
    robust (hex codes of the image as it is) and pdq_quality, one row per distinct image read."""
    rows = (
        upheld.join(content.select("content_id", "media_type", "media_sha256", "text"), on="content_id")
        .join(images, on="media_sha256", how="left")
        .sort("confirmed_at", "content_id")
    )
    entries: list[BankEntry] = []
    skipped = {"low_pdq_quality": 0, "image_not_read": 0, "text_too_short": 0}
    for r in rows.iter_rows(named=True):
        provenance = ConfirmedRemoval(str(r["decision_id"]), str(r["content_id"]), r["confirmed_at"])
        text = r["text"] or ""
        if r["media_type"] == "image":
            if not r["pdq"]:
                skipped["image_not_read"] += 1
                continue
            if (r["pdq_quality"] or 0) >= MIN_QUALITY:
                entries.append(BankEntry(REMOVALS_BANK, r["policy"], BankKind.PDQ, r["pdq"], provenance, r["robust"]))
            else:
                skipped["low_pdq_quality"] += 1
            text = r["ocr_text"] or ""  # a caption says little ("lol"); the words in the image are the content
        if len(matching_form(text)) >= text_params.min_chars:
            entries.append(BankEntry(REMOVALS_BANK, r["policy"], BankKind.TEXT, text, provenance))
        elif r["media_type"] != "image" or text.strip():
            skipped["text_too_short"] += 1
    return entries, skipped


def import_path(lake: Lake, bank: str, file_sha256: str) -> Path:
    return lake.banks / IMPORTED / bank / f"{file_sha256}.parquet"


def save_import(lake: Lake, result: BankImport) -> Path:
    """Keep an import's entries (atomically, one file per bank and imported file)."""
    return write_parquet_atomic(entries_frame(result.entries), import_path(lake, result.bank, result.file_sha256))


def _import_files(lake: Lake) -> list[Path]:
    folder = lake.banks / IMPORTED
    return sorted(folder.glob("*/*.parquet")) if folder.is_dir() else []


def imported_entries(lake: Lake, bank: str | None = None, except_file: str = "") -> pl.DataFrame:
    """Every imported entry (of `bank`, if given; but those of the imported file whose SHA-256 is
    `except_file`), in the `entries_frame` shape."""
    files = [
        f
        for f in _import_files(lake)
        if (bank is None or f.parent.name == bank) and (not except_file or f.stem != except_file)
    ]
    if not files:
        return pl.DataFrame(schema=ENTRY_SCHEMA)
    return pl.concat([pl.read_parquet(f) for f in files]).cast(ENTRY_SCHEMA)


def imports_version(lake: Lake) -> str:
    """A fingerprint of every imported bank file: it changes when an import adds, replaces or removes one."""
    digest = hashlib.sha256()
    for f in _import_files(lake):
        digest.update(f"{f.relative_to(lake.banks)}\0".encode())
        digest.update(hashlib.sha256(f.read_bytes()).digest())
    return digest.hexdigest()[:16]


def bank_table(removals: Sequence[BankEntry], imported: pl.DataFrame) -> pl.DataFrame:
    """The `hash_banks` table: the removals' entries, then the imported ones."""
    return pl.concat([entries_frame(removals), imported.select(list(ENTRY_SCHEMA)).cast(ENTRY_SCHEMA)])


def read_bank_table(lake: Lake) -> pl.DataFrame | None:
    """The `hash_banks` table as last built, None before the first build."""
    file = lake.hash_banks / "entries.parquet"
    return pl.read_parquet(file) if file.exists() else None


def write_bank_table(lake: Lake, table: pl.DataFrame) -> Path:
    return write_parquet_atomic(table, lake.hash_banks / "entries.parquet")


def applicable(table: pl.DataFrame, until: datetime) -> pl.DataFrame:
    """The entries a batch at `until` (naive UTC: the end of the day it matches) could use: every
    imported one, and the confirmed removals confirmed before it (module docstring)."""
    until_utc = pl.lit(until).dt.replace_time_zone("UTC")
    return table.filter((pl.col("source") != "confirmed_removal") | (pl.col("confirmed_at") < until_utc))


__all__ = [
    "HASH_BANKS",
    "REMOVALS_BANK",
    "applicable",
    "bank_table",
    "import_path",
    "imported_entries",
    "imports_version",
    "read_bank_table",
    "removal_entries",
    "save_import",
    "upheld_removals",
    "write_bank_table",
]
