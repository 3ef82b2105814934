"""Labelled reference sets: public corpora and a team's own labelled exports, as lake sources.

A reference set is one Parquet file per source under `<home>/lake/reference/<source>/`, one row
per labelled record: source, record_id, original label, policy, text, text hash and the label's
confidence. `import_labels` validates a team's file (CSV or Parquet) before it may land: rows
that cannot be used are returned with a reason (the CLI writes them to quarantine), good rows
are kept, and a label with no policy is named.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import yaml

from ml.taxonomy import POLICIES
from ml.text import normalise, text_hash

REFERENCE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String,
    "corpus": pl.String,
    "record_id": pl.String,
    "original_label": pl.String,
    "policy": pl.String,
    "text": pl.String,
    "text_hash": pl.String,
    "confidence": pl.Float64,
}
SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
MAX_TEXT_CHARS = 10_000
IMPORT_CONFIDENCE = 0.9  # a team's own labelled export: as trusted as a curated public corpus


class LabelImportError(ValueError):
    """A labelled file or its mapping cannot be imported at all; the message says what to fix."""


def reference_frame(records: pl.DataFrame) -> pl.DataFrame:
    """Corpus records (ml.corpora.RAW_SCHEMA) as reference rows; texts that normalise to nothing are left out."""
    hashes = [text_hash(normalise(t)) if normalise(t) else None for t in records["text"].to_list()]
    frame = records.with_columns(pl.Series("text_hash", hashes, dtype=pl.String)).rename(
        {"source_label": "original_label"}
    )
    return frame.filter(pl.col("text_hash").is_not_null()).select(
        [pl.col(c).cast(t) for c, t in REFERENCE_SCHEMA.items()]
    )


def land_reference(lake, frame: pl.DataFrame) -> list[Path]:
    """Write each source of `frame` (reference_frame rows) as `lake/reference/<source>/part-0.parquet`,
    atomically; imported sets beside them are left alone. Returns the files written."""
    from ml.lake import write_parquet_atomic

    written = []
    for (source,), part in frame.group_by("source"):
        path = lake.reference / source / "part-0.parquet"
        write_parquet_atomic(part.sort("record_id"), path)
        written.append(path)
    return written


def reference_inputs_version(corpora: Path | None, lake) -> str:
    """A fingerprint of everything `reference_labels` reads: the corpora files (name, size, modification
    time) and the content of every set under `lake/reference/` (the corpora's own, rewritten identically
    when nothing changed, and the sets `trustlake labels import` landed). A new or changed corpus file or
    imported set changes it; `trustlake run` compares it with the one the last build recorded."""
    h = hashlib.blake2b(digest_size=12)
    if corpora is not None and Path(corpora).is_dir():
        for f in sorted(p for p in Path(corpora).rglob("*") if p.is_file()):
            st = f.stat()
            h.update(f"{f.relative_to(corpora)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    else:
        h.update(b"builtin\n")
    for f in sorted(lake.reference.glob("*/*.parquet")):
        h.update(f"{f.relative_to(lake.reference)}\0".encode())
        h.update(hashlib.blake2b(f.read_bytes(), digest_size=16).digest())
    return h.hexdigest()


def read_mapping(path: Path) -> dict[str, str]:
    """`original label: policy` pairs from YAML; every policy must be in the taxonomy."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LabelImportError(f"{path}: cannot read the label mapping ({exc})") from exc
    if not isinstance(data, dict) or not data:
        raise LabelImportError(f"{path}: the mapping must be a YAML mapping of `original label: policy` lines")
    bad = {str(k): v for k, v in data.items() if v not in POLICIES}
    if bad:
        raise LabelImportError(
            f"{path}: "
            + "; ".join(f"label {k!r} maps to {v!r}, which is not a policy" for k, v in bad.items())
            + f" (policies: {', '.join(POLICIES)})"
        )
    return {str(k): str(v) for k, v in data.items()}


@dataclass(frozen=True)
class ImportResult:
    good: pl.DataFrame  # REFERENCE_SCHEMA rows ready to land
    rejected: pl.DataFrame  # the file's rows that cannot be used, with `row` (1-based) and `reason`
    unmapped_labels: dict[str, int]  # label -> rows, for labels the mapping has no policy for


def _read(path: Path) -> pl.DataFrame:
    if path.suffix == ".csv":
        return pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    raise LabelImportError(f"{path}: unsupported file type {path.suffix!r}; use .csv or .parquet")


def import_labels(
    path: Path, text_column: str, label_column: str, source: str, mapping: dict[str, str] | None = None
) -> ImportResult:
    """Validate a labelled file; no mapping means the labels must already be policy names."""
    path = Path(path)
    if not SOURCE_NAME.match(source):
        raise LabelImportError(f"source {source!r}: use 2-63 lower-case letters, digits or _, starting with a letter")
    if not path.is_file():
        raise LabelImportError(f"{path}: no such file")
    try:
        frame = _read(path)
    except LabelImportError:
        raise
    except Exception as exc:  # polars raises several types for unreadable files
        raise LabelImportError(
            f"{path}: cannot read it ({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    for col in (text_column, label_column):
        if col not in frame.columns:
            raise LabelImportError(f"{path}: no column {col!r}; columns are {', '.join(frame.columns)}")
    mapping = mapping or {p: p for p in POLICIES}
    rows = frame.select(
        pl.int_range(1, pl.len() + 1).alias("row"),
        pl.col(text_column).cast(pl.String).alias("text"),
        pl.col(label_column).cast(pl.String).str.strip_chars().alias("original_label"),
    )
    text = pl.col("text")
    norm_empty = text.is_null() | (text.str.strip_chars() == "")
    reason = (
        pl.when(norm_empty)
        .then(pl.lit("empty text"))
        .when(text.str.contains("\ufffd", literal=True))
        .then(pl.lit("text is not valid UTF-8"))
        .when(text.str.len_chars() > MAX_TEXT_CHARS)
        .then(pl.lit(f"text longer than {MAX_TEXT_CHARS} characters"))
        .when(pl.col("original_label").is_null() | (pl.col("original_label") == ""))
        .then(pl.lit("missing label"))
        .when(~pl.col("original_label").is_in(list(mapping)))
        .then(pl.lit("label '") + pl.col("original_label") + pl.lit("' has no policy in the mapping"))
        .otherwise(None)
    )
    checked = rows.with_columns(reason.alias("reason"))
    rejected = checked.filter(pl.col("reason").is_not_null())
    good = checked.filter(pl.col("reason").is_null())
    unmapped = dict(
        rejected.filter(pl.col("reason").str.ends_with("has no policy in the mapping"))
        .group_by("original_label")
        .len()
        .iter_rows()
    )
    good = good.with_columns(
        pl.lit(source).alias("source"),
        pl.lit(source).alias("corpus"),
        pl.col("row").cast(pl.String).alias("record_id"),
        pl.col("original_label").replace_strict(mapping).alias("policy"),
        pl.lit(IMPORT_CONFIDENCE).alias("confidence"),
    )
    landed = reference_frame(
        good.rename({"original_label": "source_label"}).select(
            "source", "corpus", "record_id", "source_label", "policy", "text", "confidence"
        )
    )
    return ImportResult(landed, rejected, {str(k): int(v) for k, v in unmapped.items()})
