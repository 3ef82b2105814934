"""Offline scoring of a CSV or Parquet file of texts with the champion (`trustlake score`)."""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl
from tqdm import tqdm

from ml.lake import write_parquet_atomic
from ml.scoring import OUTPUT_COLUMNS, load_champion, score_frame

SUFFIXES = (".csv", ".parquet")


class ScoringInputError(ValueError):
    """The input or output file cannot be used; the message says what to fix."""


def read_input(path: Path, text_column: str) -> pl.DataFrame:
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ScoringInputError(f"{path}: unsupported file type {path.suffix!r}; use .csv or .parquet")
    if not path.is_file():
        raise ScoringInputError(f"{path}: no such file")
    try:
        if path.suffix == ".csv":
            frame = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
        else:
            frame = pl.read_parquet(path)
    except Exception as exc:  # polars raises several types for unreadable files
        raise ScoringInputError(f"{path}: cannot read it as {path.suffix[1:]} ({exc.__class__.__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc
    if text_column not in frame.columns:
        raise ScoringInputError(f"{path}: no column {text_column!r}; columns are {', '.join(frame.columns)}")
    clash = [c for c in OUTPUT_COLUMNS if c in frame.columns]
    if clash:
        raise ScoringInputError(f"{path}: already has output column(s) {', '.join(clash)}; rename them first")
    return frame


def score_file(models_dir: Path, input_path: Path, text_column: str, output_path: Path | None = None) -> Path:
    """Write one scored row per input row, in order: input columns, p_<policy>, action, model_version."""
    input_path = Path(input_path)
    frame = read_input(input_path, text_column)
    output = Path(output_path) if output_path else input_path.with_name(
        f"{input_path.stem}.scored{input_path.suffix}")
    if output.suffix not in SUFFIXES:
        raise ScoringInputError(f"{output}: unsupported output type {output.suffix!r}; use .csv or .parquet")
    champion = load_champion(models_dir)
    model_input = frame.select(pl.col(text_column).cast(pl.String).alias("text"))
    with tqdm(total=frame.height, unit="texts", disable=frame.height < 20_000, file=sys.stderr) as bar:
        scores = score_frame(champion, model_input, batch_size=20_000, progress=bar.update)
    result = pl.concat([frame, scores], how="horizontal")
    if output.suffix == ".parquet":
        write_parquet_atomic(result, output)
    else:
        tmp = output.with_name(f".{output.name}.tmp")
        result.write_csv(tmp)
        tmp.replace(output)
    return output
