"""Hash banks: known-bad images (PDQ) and texts (near-duplicates), each entry with where it came from,
and the index that matches new content against every bank.

An entry comes from one of two places, and carries it (`provenance`) into every match so an action
taken on a match can say why:
- `ConfirmedRemoval`: a moderator removed the content and QA or an appeal upheld it. An image
  becomes a PDQ entry (reference and robust codes, see ml.matching.pdq) and, when OCR read enough
  text in it, a text entry too: PDQ does not survive a crop or a big sticker, the words do.
- `Imported`: a row of a CSV file someone imported (ml.matching.bank_import), e.g. a ThreatExchange
  export of PDQ hashes, with the file, row, importer and time.

`BankIndex` holds, per bank, a `HammingIndex` over the PDQ codes and a `NearDuplicateIndex` over the
texts, and answers in batches with Polars frames whose `entry` column points back into the list of
entries the index was built from (`entries_frame` gives their provenance columns to join).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import numpy as np
import polars as pl
from PIL import Image

from ml.matching.index import HammingIndex
from ml.matching.pdq import MIN_QUALITY, codes_to_hex, hex_to_codes, image_codes
from ml.matching.text import NearDuplicateIndex, TextMatchParams, matching_form


class BankKind(StrEnum):
    PDQ = "pdq"
    TEXT = "text"


@dataclass(frozen=True)
class ConfirmedRemoval:
    """A removal upheld by QA or an appeal: the decision and the content it removed."""

    decision_id: str
    content_id: str
    confirmed_at: datetime | None = None
    source: str = "confirmed_removal"


@dataclass(frozen=True)
class Imported:
    """One row of an imported bank file (row_number counts the file's lines from 1, header included)."""

    file_name: str
    row_number: int
    importer: str
    imported_at: datetime
    source: str = "import"


Provenance = ConfirmedRemoval | Imported


def describe_provenance(provenance: Provenance) -> str:
    """One line a moderator or an appeal reads: where a bank entry came from."""
    if isinstance(provenance, ConfirmedRemoval):
        when = f", confirmed {provenance.confirmed_at:%Y-%m-%d %H:%M} UTC" if provenance.confirmed_at else ""
        return f"confirmed removal: decision {provenance.decision_id} of content {provenance.content_id}{when}"
    return (
        f"imported from {provenance.file_name} line {provenance.row_number} by {provenance.importer} "
        f"at {provenance.imported_at:%Y-%m-%d %H:%M} UTC"
    )


@dataclass(frozen=True)
class BankEntry:
    """A known-bad item. PDQ: `value` is the reference hash (64 hex), `robust` the robust hash when
    the bank saw the image itself ("" for imported hashes). Text: `value` is the text as received."""

    bank: str
    policy: str
    kind: BankKind
    value: str
    provenance: Provenance
    robust: str = ""


@dataclass(frozen=True)
class BankedImage:
    """What banking one removed image produced: its entries, and why a part was not banked."""

    entries: tuple[BankEntry, ...]
    skipped: tuple[str, ...]


def bank_removed_image(
    image: Image.Image,
    bank: str,
    policy: str,
    provenance: Provenance,
    ocr_text: str = "",
    text_params: TextMatchParams = TextMatchParams(),
) -> BankedImage:
    """Entries for a removed image: PDQ (unless too featureless to match safely) and its OCR text
    (unless too short to match as a near-duplicate)."""
    codes, quality = image_codes(image)
    entries, skipped = [], []
    if quality >= MIN_QUALITY:
        reference, robust = codes_to_hex(codes)
        entries.append(BankEntry(bank, policy, BankKind.PDQ, reference, provenance, robust))
    else:
        skipped.append(f"PDQ quality {quality} is below {MIN_QUALITY}: the image is too featureless to match safely")
    if len(matching_form(ocr_text)) >= text_params.min_chars:
        entries.append(BankEntry(bank, policy, BankKind.TEXT, ocr_text, provenance))
    elif ocr_text.strip():
        skipped.append(f"image text {ocr_text!r} is too short to match as a near-duplicate")
    return BankedImage(tuple(entries), tuple(skipped))


ENTRY_SCHEMA: dict[str, pl.DataType] = {
    "bank": pl.String,
    "policy": pl.String,
    "kind": pl.String,
    "value": pl.String,
    "robust": pl.String,
    "source": pl.String,
    "decision_id": pl.String,
    "content_id": pl.String,
    "confirmed_at": pl.Datetime("us", "UTC"),
    "file_name": pl.String,
    "row_number": pl.Int64,
    "importer": pl.String,
    "imported_at": pl.Datetime("us", "UTC"),
}


def entries_frame(entries: Sequence[BankEntry]) -> pl.DataFrame:
    """Entries as a flat frame (the `hash_banks` table's shape): one row per entry, in order, with
    the provenance columns of its source and nulls for the other source's."""
    rows = []
    for e in entries:
        p = e.provenance
        removal, imported = isinstance(p, ConfirmedRemoval), isinstance(p, Imported)
        rows.append(
            {
                "bank": e.bank,
                "policy": e.policy,
                "kind": str(e.kind),
                "value": e.value,
                "robust": e.robust,
                "source": p.source,
                "decision_id": p.decision_id if removal else None,
                "content_id": p.content_id if removal else None,
                "confirmed_at": p.confirmed_at if removal else None,
                "file_name": p.file_name if imported else None,
                "row_number": p.row_number if imported else None,
                "importer": p.importer if imported else None,
                "imported_at": p.imported_at if imported else None,
            }
        )
    return pl.DataFrame(rows, schema=ENTRY_SCHEMA)


def entries_from_frame(frame: pl.DataFrame) -> list[BankEntry]:
    """The inverse of `entries_frame`."""
    out = []
    for row in frame.iter_rows(named=True):
        if row["source"] == "confirmed_removal":
            provenance: Provenance = ConfirmedRemoval(row["decision_id"], row["content_id"], row["confirmed_at"])
        elif row["source"] == "import":
            provenance = Imported(row["file_name"], int(row["row_number"]), row["importer"], row["imported_at"])
        else:
            raise ValueError(f"bank entry with unknown source {row['source']!r}; expected confirmed_removal or import")
        out.append(
            BankEntry(row["bank"], row["policy"], BankKind(row["kind"]), row["value"], provenance, row["robust"] or "")
        )
    return out


IMAGE_MATCH_SCHEMA = {
    "query": pl.Int64,
    "bank": pl.String,
    "policy": pl.String,
    "entry": pl.Int64,
    "distance": pl.Int32,
}
TEXT_MATCH_SCHEMA = {
    "query": pl.Int64,
    "bank": pl.String,
    "policy": pl.String,
    "entry": pl.Int64,
    "jaccard": pl.Float64,
}


class BankIndex:
    """Every bank's entries indexed for matching; `entry` in results is the position in `entries`."""

    def __init__(
        self, entries: Sequence[BankEntry], text_params: TextMatchParams = TextMatchParams(), tables: int = 16
    ):
        self.entries = list(entries)
        self.text_params = text_params
        self._pdq: dict[str, tuple[HammingIndex, np.ndarray]] = {}
        self._text: dict[str, NearDuplicateIndex] = {}
        for bank in sorted({e.bank for e in self.entries}):
            rows = [i for i, e in enumerate(self.entries) if e.bank == bank]
            pdq_rows = [i for i in rows if self.entries[i].kind == BankKind.PDQ]
            if pdq_rows:
                # One index row per code; robust codes point at the same entry as the reference code.
                owners = pdq_rows + [i for i in pdq_rows if self.entries[i].robust]
                values = [self.entries[i].value for i in pdq_rows] + [
                    self.entries[i].robust for i in pdq_rows if self.entries[i].robust
                ]
                index = HammingIndex(tables)
                index.add(hex_to_codes([v.lower() for v in values]))
                self._pdq[bank] = (index, np.array(owners, dtype=np.int64))
            text_rows = [i for i in rows if self.entries[i].kind == BankKind.TEXT]
            if text_rows:
                text_index = NearDuplicateIndex(text_params)
                text_index.add(text_rows, [self.entries[i].value for i in text_rows])
                self._text[bank] = text_index

    @property
    def banks(self) -> list[str]:
        return sorted({e.bank for e in self.entries})

    def match_images(self, codes: np.ndarray, quality: np.ndarray, radius: int) -> pl.DataFrame:
        """PDQ matches of uploads: `codes` (m, k, 32) from `image_codes(image, ORIGINAL_AND_MIRROR)`,
        `quality` (m,). One row per (query, entry) within `radius` over all code pairs, closest
        distance kept; queries below PDQ's quality floor are not matched."""
        codes = np.asarray(codes, dtype=np.uint8)
        usable = np.flatnonzero(np.asarray(quality) >= MIN_QUALITY)
        if not len(usable) or not self._pdq:  # a day without images (or none PDQ can vouch for), or no PDQ bank
            return pl.DataFrame(schema=IMAGE_MATCH_SCHEMA)
        k = codes.shape[1]
        flat = np.ascontiguousarray(codes[usable].reshape(len(usable) * k, codes.shape[-1]))
        parts = []
        for bank, (index, owners) in self._pdq.items():
            found = index.search(flat, radius)
            if len(found):
                query = usable[found.query // k]
                parts.append(
                    pl.DataFrame(
                        {"query": query, "entry": owners[found.entry], "distance": found.distance, "bank": bank}
                    )
                )
        if not parts:
            return pl.DataFrame(schema=IMAGE_MATCH_SCHEMA)
        matches = pl.concat(parts).group_by("query", "bank", "entry").agg(pl.col("distance").min())
        policy = pl.Series([self.entries[i].policy for i in matches["entry"].to_list()], dtype=pl.String)
        return (
            matches.with_columns(policy.alias("policy"))
            .select(list(IMAGE_MATCH_SCHEMA))
            .cast(IMAGE_MATCH_SCHEMA)
            .sort("query", "distance", "entry")
        )

    def closest(self, image_matches: pl.DataFrame, text_matches: pl.DataFrame) -> pl.DataFrame:
        """Each query's closest bank `entry`, as the enforcement policy reads it (ml.enforcement
        BANK_MATCH_COLUMNS): an image match (smallest distance) before a text match (highest Jaccard)."""
        ranked = pl.concat(
            [
                image_matches.select("query", "entry", pl.lit(0).alias("_kind"), pl.col("distance").cast(pl.Float64)),
                text_matches.select("query", "entry", pl.lit(1).alias("_kind"), (-pl.col("jaccard")).alias("distance")),
            ]
        )
        best = ranked.sort("query", "_kind", "distance", "entry").unique("query", keep="first", maintain_order=True)
        entries = [self.entries[i] for i in best["entry"].to_list()]
        return pl.DataFrame(
            {
                "query": best["query"],
                "entry": best["entry"],
                "bank_match_bank": [e.bank for e in entries],
                "bank_match_policy": [e.policy for e in entries],
                "bank_match_provenance": [describe_provenance(e.provenance) for e in entries],
            },
            schema={
                "query": pl.Int64,
                "entry": pl.Int64,
                "bank_match_bank": pl.String,
                "bank_match_policy": pl.String,
                "bank_match_provenance": pl.String,
            },
        )

    def match_texts(self, texts: Sequence[str]) -> pl.DataFrame:
        """Near-duplicate matches of texts (captions, posts, image text) against every text bank."""
        parts = []
        for bank, index in self._text.items():
            found = index.query(texts)
            if found.height:
                parts.append(
                    found.rename({"query_row": "query", "key": "entry"}).with_columns(pl.lit(bank).alias("bank"))
                )
        if not parts:
            return pl.DataFrame(schema=TEXT_MATCH_SCHEMA)
        matches = pl.concat(parts)
        policy = pl.Series([self.entries[i].policy for i in matches["entry"].to_list()], dtype=pl.String)
        return (
            matches.with_columns(policy.alias("policy"))
            .select(list(TEXT_MATCH_SCHEMA))
            .cast(TEXT_MATCH_SCHEMA)
            .sort(["query", "jaccard", "entry"], descending=[False, True, False])
        )


__all__ = [
    "ENTRY_SCHEMA",
    "IMAGE_MATCH_SCHEMA",
    "TEXT_MATCH_SCHEMA",
    "BankEntry",
    "BankIndex",
    "BankKind",
    "BankedImage",
    "ConfirmedRemoval",
    "Imported",
    "Provenance",
    "bank_removed_image",
    "describe_provenance",
    "entries_frame",
    "entries_from_frame",
]
