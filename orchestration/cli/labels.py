"""`trustlake labels import`: validate a labelled set and land it as a reference source."""

from __future__ import annotations

import sys
from datetime import UTC

import click

from orchestration.cli.group import cli, described, with_settings
from orchestration.settings import Settings


@cli.group("labels", **described("bring a labelled set: labels import FILE --text-column C --label-column L"))
def labels() -> None:
    pass


@labels.command(
    "import",
    **described(
        "validate the CSV or Parquet FILE of labelled texts and land it as a "
        "reference source; unusable rows are quarantined with their reason"
    ),
)
@click.argument("file")
@click.option("--text-column", required=True)
@click.option("--label-column", required=True)
@click.option("--mapping", default=None, help="YAML of `original label: policy` lines")
@click.option("--source", required=True, help="name of the labelled set (lower-case letters, digits, _)")
@with_settings
def cmd_labels_import(
    settings: Settings, file: str, text_column: str, label_column: str, mapping: str | None, source: str
) -> int:
    """`trustlake labels import FILE ...`: validate a labelled set and land it as a reference source."""
    from datetime import datetime
    from pathlib import Path

    from ml.lake import Lake, write_parquet_atomic
    from ml.reference import LabelImportError, import_labels, read_mapping

    lake = Lake(settings.home)
    try:
        policies = read_mapping(Path(mapping)) if mapping else None
        result = import_labels(Path(file), text_column, label_column, source, policies)
    except LabelImportError as exc:
        print(f"trustlake labels import: {exc}", file=sys.stderr)
        return 2
    for label, n in sorted(result.unmapped_labels.items()):
        print(
            f"trustlake labels import: label {label!r} has no policy in the mapping ({n} rows quarantined)",
            file=sys.stderr,
        )
    if result.rejected.height:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        out = lake.quarantine_dir / "labels" / f"{source}-{stamp}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        result.rejected.write_csv(out)
        reasons = result.rejected.group_by("reason").len().sort("len", descending=True)
        print(f"trustlake labels import: {result.rejected.height} rows quarantined in {out}:", file=sys.stderr)
        for reason, n in reasons.iter_rows():
            print(f"  {n:>7,}  {reason}", file=sys.stderr)
    if result.good.height == 0:
        print("trustlake labels import: no usable rows; nothing landed", file=sys.stderr)
        return 2
    target = write_parquet_atomic(result.good, lake.reference / source / "part-0.parquet")
    print(
        f"trustlake labels import: {result.good.height:,} labelled texts landed as source {source!r} "
        f"in {target}; the next training run uses them (trustlake run)"
    )
    return 0
