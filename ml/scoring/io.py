"""Offline scoring of a CSV or Parquet file of texts with the champion (`trustlake score`).

The file is streamed: read in batches (Parquet row groups through `pyarrow.parquet.ParquetFile`,
CSV blocks through `pyarrow.csv.open_csv`), each batch scored by `ml.scoring.score_frame` (with
one bounded `NgramCache` for the whole file) and appended to a hidden temporary file beside the
output, which is renamed over the output only once every row is written. Peak memory is one
batch plus the cache whatever the file size, and an error at any point leaves no partial output
(the temporary file is removed, an older output stays as it was).

Invariants: one output row per input row, in input order; input columns pass through unchanged
(CSV columns are read as text, as written); every problem with the input or output is a
`ScoringInputError` whose message names the file and what to fix. Bytes that are not UTF-8 in a
CSV (or in a binary Parquet text column) do not stop the run: they are replaced by U+FFFD, the
rows are counted and named through `warn`, and a text that had them is flagged
`text_flag=invalid_utf8`. Refusing the whole file for one bad byte would lose every good row;
replacing silently would hide it; flagging keeps both the rows and the evidence.

With an image column (`image_column`: a path per row, relative to the input's folder), each row is scored
on its text followed by the text OCR read in its image, and gets `image_text` and `image_flag` columns
(ml/scoring/image_column.py): a bad image is scored on its text alone and flagged with the reason.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from tqdm import tqdm

from ml.features.images import caption_and_image_text
from ml.lake import atomic_write
from ml.scoring import (
    EMPTY_TEXT,
    INVALID_UTF8,
    OUTPUT_COLUMNS,
    OUTPUT_SCHEMA,
    NgramCache,
    load_champion,
    score_frame,
)
from ml.scoring.image_column import ANIMATED, IMAGE_COLUMNS_SCHEMA, read_image_column

SUFFIXES = (".csv", ".parquet")
BATCH_ROWS = 20_000  # rows per Parquet batch and per featurisation batch: ~100-300 MB of n-grams at most
CSV_BLOCK_BYTES = 2 << 20  # a CSV batch is one block of this many bytes (~15k rows of tweet-sized text)
PROGRESS_MIN_ROWS = 20_000  # a progress bar for inputs this big (CSV: this many bytes x 200), on a terminal only
ROWS_SHOWN = 5  # how many row numbers a warning lists


class ScoringInputError(ValueError):
    """The input or output file cannot be used; the message says what to fix."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{exc.__class__.__name__}: {text.splitlines()[0]}" if text else exc.__class__.__name__


def _rows_text(rows: list[int], total: int) -> str:
    shown = ", ".join(str(r) for r in rows[:ROWS_SHOWN])
    return f"row {shown}" if total == 1 else f"rows {shown}{', ...' if total > ROWS_SHOWN else ''}"


@dataclass
class _Utf8Problems:
    """Rows (1-based) whose bytes were not UTF-8: how many, the first few, and in which columns."""

    count: int = 0
    rows: list[int] = field(default_factory=list)
    columns: set[str] = field(default_factory=set)

    def add(self, columns: set[str], rows: set[int]) -> None:
        self.columns |= columns
        self.count += len(rows)
        self.rows.extend(sorted(rows)[: ROWS_SHOWN - len(self.rows)])


def _decode_utf8(array: pa.Array) -> tuple[pa.Array, list[int]]:
    """Binary -> string; invalid bytes become U+FFFD. Returns the array and the offsets of bad values."""
    try:
        return pc.cast(array, pa.string()), []
    except pa.ArrowInvalid:
        pass  # rare: find the values in Python, only for this batch
    values, bad = [], []
    for i, raw in enumerate(array.to_pylist()):
        if raw is None:
            values.append(None)
            continue
        try:
            values.append(raw.decode("utf-8"))
        except UnicodeDecodeError:
            values.append(raw.decode("utf-8", errors="replace"))
            bad.append(i)
    return pa.array(values, type=pa.string()), bad


@dataclass
class _Input:
    """An opened input file: its columns, and a generator of (batch, text rows with bad bytes)."""

    path: Path
    text_column: str
    schema: pa.Schema
    rows: int | None
    batches: Callable[[_Utf8Problems], Iterator[tuple[pa.RecordBatch, list[int]]]]
    image_column: str | None = None


def _open_csv(path: Path, text_column: str) -> _Input:
    parse = pa_csv.ParseOptions(newlines_in_values=True)  # texts often hold line breaks inside quotes
    read = pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES)
    # The first open only learns the column names; every column is then read as raw bytes, so
    # values pass through exactly as written and bad UTF-8 can be found by row.
    with pa_csv.open_csv(path, read_options=read, parse_options=parse) as probe:
        names = probe.schema.names
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ScoringInputError(
            f"{path}: column(s) {', '.join(map(repr, repeated))} appear more than once "
            "in the header; give every column its own name"
        )
    convert = pa_csv.ConvertOptions(column_types={n: pa.binary() for n in names})
    schema = pa.schema([(n, pa.string()) for n in names])

    def batches(problems: _Utf8Problems) -> Iterator[tuple[pa.RecordBatch, list[int]]]:
        first_row = 1
        with pa_csv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert) as reader:
            for batch in reader:
                columns, text_bad, bad_columns, bad_rows = [], [], set(), set()
                for name, array in zip(batch.schema.names, batch.columns):
                    decoded, bad = _decode_utf8(array)
                    columns.append(decoded)
                    if bad:
                        bad_columns.add(name)
                        bad_rows.update(first_row + i for i in bad)
                    if name == text_column:
                        text_bad = bad
                problems.add(bad_columns, bad_rows)
                yield pa.RecordBatch.from_arrays(columns, schema=schema), text_bad
                first_row += batch.num_rows

    return _Input(path, text_column, schema, None, batches)


def _open_parquet(path: Path, text_column: str) -> _Input:
    with pq.ParquetFile(path) as parquet:  # the footer only: schema and row count
        schema, rows = parquet.schema_arrow, parquet.metadata.num_rows
    text_type = schema.field(text_column).type if text_column in schema.names else None
    binary_text = text_type is not None and (
        pa.types.is_binary(text_type) or pa.types.is_large_binary(text_type) or pa.types.is_binary_view(text_type)
    )

    def batches(problems: _Utf8Problems) -> Iterator[tuple[pa.RecordBatch, list[int]]]:
        first_row = 1
        with pq.ParquetFile(path) as parquet:
            for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
                text_bad = []
                if binary_text:
                    k = batch.schema.get_field_index(text_column)
                    decoded, text_bad = _decode_utf8(batch.column(k))
                    batch = batch.set_column(k, pa.field(text_column, pa.string()), decoded)
                    if text_bad:
                        problems.add({text_column}, {first_row + i for i in text_bad})
                yield batch, text_bad
                first_row += batch.num_rows

    if binary_text:
        schema = schema.set(schema.get_field_index(text_column), pa.field(text_column, pa.string()))
    return _Input(path, text_column, schema, rows, batches)


def _is_nested(t: pa.DataType) -> bool:
    return pa.types.is_nested(t) or pa.types.is_union(t)


def _is_binary(t: pa.DataType) -> bool:
    return (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t)
    )


def open_input(path: Path, text_column: str, image_column: str | None = None) -> _Input:
    """Open `path` for streaming and check its columns; nothing is read beyond the header/footer."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ScoringInputError(f"{path}: unsupported file type {path.suffix!r}; use .csv or .parquet")
    if not path.is_file():
        raise ScoringInputError(f"{path}: no such file")
    try:
        source = _open_csv(path, text_column) if suffix == ".csv" else _open_parquet(path, text_column)
    except ScoringInputError:
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ScoringInputError(f"{path}: cannot read it as {suffix[1:]} ({_first_line(exc)})") from exc
    names = source.schema.names
    if text_column not in names:
        raise ScoringInputError(f"{path}: no column {text_column!r}; columns are {', '.join(names)}")
    text_type = source.schema.field(text_column).type
    if _is_nested(text_type):
        raise ScoringInputError(
            f"{path}: column {text_column!r} holds {text_type} values, not text; "
            "pass a column of strings with --text-column"
        )
    if image_column is not None:
        if image_column not in names:
            raise ScoringInputError(f"{path}: no column {image_column!r}; columns are {', '.join(names)}")
        kind = source.schema.field(image_column).type
        if image_column == text_column or not (
            pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
        ):
            raise ScoringInputError(
                f"{path}: column {image_column!r} must hold image file paths as text, apart from the text column"
            )
        source.image_column = image_column
    outputs = [*OUTPUT_COLUMNS, *(IMAGE_COLUMNS_SCHEMA if image_column else ())]
    clash = [c for c in outputs if c in names]
    if clash:
        raise ScoringInputError(f"{path}: already has output column(s) {', '.join(clash)}; rename them first")
    return source


def _output_path(input_path: Path, output_path: Path | None) -> Path:
    output = Path(output_path) if output_path else input_path.with_name(f"{input_path.stem}.scored{input_path.suffix}")
    if output.suffix.lower() not in SUFFIXES:
        raise ScoringInputError(f"{output}: unsupported output type {output.suffix!r}; use .csv or .parquet")
    if output.resolve() == input_path.resolve() or (
        output.exists() and input_path.exists() and os.path.samefile(output, input_path)
    ):
        raise ScoringInputError(
            f"{output}: is the input file; scoring would replace the texts being read: choose another --output"
        )
    if not output.parent.is_dir():
        raise ScoringInputError(f"{output.parent}: no such folder for the output; create it first")
    if output.is_dir():
        raise ScoringInputError(f"{output}: is a folder; give a file name ending in .csv or .parquet")
    return output


def _scored_tables(source: _Input, champion, problems: _Utf8Problems, progress) -> Iterator[pa.Table]:
    """Each input batch with its score columns appended; read errors become ScoringInputError."""
    batches = source.batches(problems)
    cache = NgramCache()  # one for the file: a repost is featurised once while it stays cached
    rows = 0
    while True:
        try:
            item = next(batches, None)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise ScoringInputError(
                f"{source.path}: cannot read it as {source.path.suffix[1:].lower()} "
                f"after row {rows} ({_first_line(exc)})"
            ) from exc
        if item is None:
            return
        batch, text_bad = item
        text = pl.from_arrow(batch.column(source.text_column)).cast(pl.String)
        images = None
        if source.image_column:
            paths = pl.from_arrow(batch.column(source.image_column)).cast(pl.String).to_list()
            images = read_image_column(paths, source.path.parent)
            text = pl.DataFrame({"t": text, "i": images["image_text"]}).select(
                caption_and_image_text(pl.col("t"), pl.col("i"))
            )["t"]
        scores = score_frame(
            champion, pl.DataFrame({"text": text}), batch_size=BATCH_ROWS, progress=progress, cache=cache
        )
        if images is not None:
            scores = pl.concat([scores, images], how="horizontal")
        if text_bad:
            bad = pl.Series(range(batch.num_rows)).is_in(text_bad)
            scores = scores.with_columns(
                pl.when(bad).then(pl.lit(INVALID_UTF8)).otherwise(pl.col("text_flag")).alias("text_flag")
            )
        table = pa.Table.from_batches([batch])
        for name, column in zip(scores.columns, scores.to_arrow().columns):
            table = table.append_column(name, column)
        rows += batch.num_rows
        yield table


def _write(tables: Iterator[pa.Table], tmp: Path, schema: pa.Schema, suffix: str) -> dict[str, int]:
    """Stream `tables` into `tmp` as Parquet or CSV (by `suffix`); returns text_flag counts."""
    flags: dict[str, int] = {}

    def counted(table: pa.Table) -> pa.Table:
        for column in ("text_flag", "image_flag"):
            if column in table.column_names:
                for flag, n in pl.from_arrow(table.column(column)).drop_nulls().value_counts().iter_rows():
                    flags[f"{column}={flag}"] = flags.get(f"{column}={flag}", 0) + n
        return table

    if suffix == ".parquet":
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for table in tables:
                writer.write_table(counted(table).cast(schema))
    else:
        with open(tmp, "wb") as fh:
            header = True
            for table in tables:
                pl.from_arrow(counted(table)).write_csv(fh, include_header=header)
                header = False
            if header:  # no rows at all: still write the header
                pl.from_arrow(schema.empty_table()).write_csv(fh)
    return flags


def _output_schema(input_schema: pa.Schema, images: bool = False) -> pa.Schema:
    scores = pl.DataFrame(schema={**OUTPUT_SCHEMA, **(IMAGE_COLUMNS_SCHEMA if images else {})}).to_arrow().schema
    return pa.schema([*input_schema, *scores])


def _file_mode(existing: Path) -> int:
    """The mode the output gets: an existing output keeps its own, a new one follows the umask
    (mkstemp creates 0600, which would hide the scores from the analysts the file is for)."""
    if existing.exists():
        return existing.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def score_file(
    models_dir: Path,
    input_path: Path,
    text_column: str,
    output_path: Path | None = None,
    warn: Callable[[str], None] = _stderr,
    image_column: str | None = None,
) -> Path:
    """Write one scored row per input row, in order: input columns, p_<policy>, action, model_version,
    text_flag (and image_text, image_flag with an `image_column`). Returns the output path; `warn` receives
    one line per notable input problem."""
    input_path = Path(input_path)
    source = open_input(input_path, text_column, image_column)
    output = _output_path(input_path, output_path)
    if output.suffix.lower() == ".csv":
        unwritable = [
            f"{f.name} ({f.type})"
            for f in source.schema
            if f.name != text_column and (_is_nested(f.type) or _is_binary(f.type))
        ]
        if unwritable:
            raise ScoringInputError(
                f"{input_path}: column(s) {', '.join(unwritable)} cannot be written to CSV; "
                "write a .parquet output instead"
            )
    champion = load_champion(models_dir)
    problems = _Utf8Problems()
    big = (source.rows or 0) >= PROGRESS_MIN_ROWS or input_path.stat().st_size >= 200 * PROGRESS_MIN_ROWS
    with ExitStack() as stack:
        try:
            tmp = stack.enter_context(atomic_write(output, mode=_file_mode(output)))
        except OSError as exc:
            raise ScoringInputError(f"{output.parent}: cannot write the output there ({exc.strerror})") from exc
        # disable=None: tqdm shows the bar only when stderr is a terminal, so logs and pipes get
        # nothing but the one-line messages.
        with tqdm(total=source.rows, unit="texts", disable=None if big else True, file=sys.stderr) as bar:
            tables = _scored_tables(source, champion, problems, bar.update)
            try:
                flags = _write(
                    tables, tmp, _output_schema(source.schema, image_column is not None), output.suffix.lower()
                )
            except OSError as exc:
                raise ScoringInputError(f"{output}: cannot write it ({_first_line(exc)})") from exc
    if problems.count:
        flagged = (
            f"; texts that had them are flagged text_flag={INVALID_UTF8}" if text_column in problems.columns else ""
        )
        warn(
            f"{input_path}: {problems.count} row(s) hold bytes that are not UTF-8 "
            f"({_rows_text(problems.rows, problems.count)}; row 1 is the first row of data) in column(s) "
            f"{', '.join(sorted(problems.columns))}: kept, with U+FFFD in place of those bytes{flagged}"
        )
    if flags.get(f"text_flag={EMPTY_TEXT}"):
        warn(
            f"{input_path}: {flags[f'text_flag={EMPTY_TEXT}']} row(s) have empty text: scored, and flagged "
            f"text_flag={EMPTY_TEXT}"
        )
    bad_images = {k: n for k, n in flags.items() if k.startswith("image_flag=") and k != f"image_flag={ANIMATED}"}
    if bad_images:
        warn(
            f"{input_path}: {sum(bad_images.values())} image(s) could not be read ("
            + ", ".join(f"{k.removeprefix('image_flag=')}: {n}" for k, n in sorted(bad_images.items()))
            + "): those rows are scored on their text alone and flagged image_flag=<reason>"
        )
    if flags.get(f"image_flag={ANIMATED}"):
        warn(
            f"{input_path}: {flags[f'image_flag={ANIMATED}']} animated image(s): only the first frame was read "
            f"(flagged image_flag={ANIMATED})"
        )
    return output
