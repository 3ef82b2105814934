"""`trustlake bank import` and `trustlake bank list`: bring a hash bank (a CSV of PDQ hashes or texts) and
see which banks the next run matches against."""

from __future__ import annotations

import sys

import click

from ml.taxonomy import VIOLATING
from orchestration.cli.group import cli, described, with_settings
from orchestration.settings import Settings

KINDS = ("pdq", "text")


@cli.group("bank", **described("hash banks of known-bad content: bank import FILE --bank NAME --policy P | bank list"))
def bank() -> None:
    pass


def bank_name(value: str) -> str:
    from ml.matching.bank_import import BANK_NAME

    if not BANK_NAME.match(value):
        raise click.BadParameter(f"{value!r}: use 1-64 lower-case letters, digits, '_', '-' or '.'")
    return value


def infer_kind(path, given: str | None) -> str:
    """The bank's kind: --kind, else what the header names (a PDQ column or a text column)."""
    import csv

    from ml.matching.bank_import import PDQ_COLUMNS, TEXT_COLUMNS, BankImportError

    if given:
        return given
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            header = [h.strip().lower() for h in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BankImportError(f"cannot read the header of {path}: {exc}") from None
    pdq = [c for c in PDQ_COLUMNS if c in header and c not in TEXT_COLUMNS]
    text = [c for c in TEXT_COLUMNS if c in header and c not in PDQ_COLUMNS]
    if bool(pdq) == bool(text):
        raise BankImportError(
            f"cannot tell whether {path} holds PDQ hashes or texts from its header {header!r}: name the column "
            f"one of {', '.join(c for c in PDQ_COLUMNS if c not in TEXT_COLUMNS)} (hashes) or "
            f"{', '.join(c for c in TEXT_COLUMNS if c not in PDQ_COLUMNS)} (texts), or pass --kind"
        )
    return "pdq" if pdq else "text"


@bank.command(
    "import",
    **described(
        "validate a CSV of PDQ hashes or texts and keep its good rows as bank NAME; bad rows are quarantined "
        "with their reason; the next `trustlake run` matches against it"
    ),
)
@click.argument("file", type=click.Path(dir_okay=False))
@click.option(
    "--bank",
    "bank_name",
    required=True,
    callback=lambda ctx, param, value: bank_name(value),
    help="bank name: lower-case letters, digits, _ - .",
)
@click.option("--policy", required=True, type=click.Choice(VIOLATING), help="the policy its content violates")
@click.option("--kind", type=click.Choice(KINDS), default=None, help="pdq or text (default: from the header)")
@with_settings
def cmd_bank_import(settings: Settings, file: str, bank_name: str, policy: str, kind: str | None) -> int:
    """Exit 0 when rows were imported, 2 when none could be (the reason on stderr)."""
    import getpass
    import hashlib
    import logging
    import tempfile
    from datetime import UTC, datetime
    from pathlib import Path

    import polars as pl

    from ml.lake import Lake
    from ml.matching.bank_import import BankImportError, import_bank_csv
    from ml.matching.bank_sources import imported_entries, save_import

    lake = Lake(settings.home)
    path = Path(file)
    now = datetime.now(UTC)
    logging.getLogger("ml.lake").setLevel(logging.ERROR)  # the quarantine is reported below, once
    try:
        chosen = infer_kind(path, kind)
    except BankImportError as exc:  # a question about the arguments, not a fault of the file: nothing to keep
        print(f"trustlake bank import: {exc}; nothing imported", file=sys.stderr)
        return 2
    try:
        # Entries the bank has from other files: importing this file again replaces its own file.
        sha = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        existing = imported_entries(lake, bank_name, except_file=sha).filter(pl.col("kind") == chosen)
        result = import_bank_csv(path, bank_name, policy, chosen, getpass.getuser(), now, existing["value"].to_list())
    except BankImportError as exc:
        if path.is_file():
            where = lake.quarantine(path, "bank_imports", f"why: {exc}", now=now, copy=True)
            print(f"trustlake bank import: {exc}; nothing imported (a copy of the file is in {where})", file=sys.stderr)
        else:
            print(f"trustlake bank import: {exc}; nothing imported", file=sys.stderr)
        return 2
    if result.quarantined:
        with tempfile.TemporaryDirectory() as tmp:
            rows = Path(tmp) / f"{path.stem}.quarantined-rows.csv"
            result.quarantine_frame().write_csv(rows)
            where = lake.quarantine(rows, "bank_imports", result.summary(), now=now)
        print(
            f"trustlake bank import: {len(result.quarantined):,} of {result.rows:,} rows quarantined in {where} "
            f"(the reason file beside it counts them by reason):",
            file=sys.stderr,
        )
        counts: dict[str, int] = {}
        for q in result.quarantined:
            counts[q.reason] = counts.get(q.reason, 0) + 1
        for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            print(f"  {n:>7,}  {reason}", file=sys.stderr)
    if not result.entries:
        already = any(q.reason == "already in the bank" for q in result.quarantined)
        print(
            f"trustlake bank import: no usable rows in {path.name}"
            + (f" that bank {bank_name!r} does not already hold" if already else "")
            + "; nothing imported",
            file=sys.stderr,
        )
        return 2
    target = save_import(lake, result)
    print(
        f"trustlake bank import: {len(result.entries):,} {result.kind} entries of bank {bank_name!r} (policy "
        f"{policy}) kept in {target}; the next `trustlake run` rebuilds hash_banks with them"
    )
    return 0


@bank.command("list", **described("the hash banks: entries per bank, kind, policy and source"))
@with_settings
def cmd_bank_list(settings: Settings) -> int:
    import polars as pl

    from ml.lake import Lake
    from ml.matching.bank_sources import imported_entries, read_bank_table

    lake = Lake(settings.home)
    table = read_bank_table(lake)
    imported = imported_entries(lake)
    if table is None and imported.is_empty():
        print("trustlake bank list: no banks yet (trustlake run builds them; trustlake bank import adds one)")
        return 0
    built = table if table is not None else imported.head(0)
    pending = imported.join(built, on=["bank", "kind", "value"], how="anti")
    rows = pl.concat([built.with_columns(state=pl.lit("built")), pending.with_columns(state=pl.lit("next run"))])
    summary = rows.group_by("bank", "kind", "policy", "source", "state").len().sort("bank", "kind", "policy")
    print(f"{'bank':<24} {'kind':<5} {'policy':<12} {'source':<18} {'entries':>8}  in hash_banks")
    for r in summary.iter_rows(named=True):
        print(f"{r['bank']:<24} {r['kind']:<5} {r['policy']:<12} {r['source']:<18} {r['len']:>8,}  {r['state']}")
    return 0
