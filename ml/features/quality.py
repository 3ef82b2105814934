"""Data-quality checks for feature tables: schema, nulls, ranges, coverage and drift (PSI)."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    message: str
    metadata: dict


def check_schema(frame: pl.DataFrame, expected: dict[str, type]) -> CheckOutcome:
    problems = []
    for name, dtype in expected.items():
        if name not in frame.columns:
            problems.append(f"missing column {name}")
        elif frame.schema[name] != dtype:
            problems.append(f"{name} is {frame.schema[name]}, expected {dtype}")
    extra = sorted(set(frame.columns) - set(expected))
    if extra:
        problems.append(f"unexpected columns {extra}")
    return CheckOutcome(not problems, "; ".join(problems) or "schema as expected", {"columns": len(frame.columns)})


def check_nulls(frame: pl.DataFrame, max_null_rate: dict[str, float]) -> CheckOutcome:
    rates = {c: float(frame[c].null_count() / max(frame.height, 1)) for c in frame.columns}
    bad = {c: r for c, r in rates.items() if r > max_null_rate.get(c, 0.0)}
    msg = ", ".join(f"{c} null rate {r:.3f} > {max_null_rate.get(c, 0.0)}" for c, r in bad.items())
    return CheckOutcome(
        not bad, msg or "null rates within bounds", {"worst_null_rate": max(rates.values(), default=0.0)}
    )


def check_ranges(frame: pl.DataFrame, ranges: dict[str, tuple[float | None, float | None]]) -> CheckOutcome:
    bad = []
    for col, (lo, hi) in ranges.items():
        s = frame[col].drop_nulls().cast(pl.Float64)
        if lo is not None and (s < lo).any():
            bad.append(f"{col} has {(s < lo).sum()} values below {lo}")
        if hi is not None and (s > hi).any():
            bad.append(f"{col} has {(s > hi).sum()} values above {hi}")
    return CheckOutcome(not bad, "; ".join(bad) or "values within ranges", {"columns_checked": len(ranges)})


def check_coverage(frame: pl.DataFrame, content_count: int, labelled_ids: pl.Series | None) -> CheckOutcome:
    """One row per content item, and a row for every labelled content item."""
    msgs, meta = [], {"rows": frame.height, "content_items": content_count}
    if frame.height != content_count:
        msgs.append(f"{frame.height} rows for {content_count} content items")
    if frame["content_id"].n_unique() != frame.height:
        msgs.append("duplicate content_id rows")
    if labelled_ids is not None:
        missing = int((~labelled_ids.is_in(frame["content_id"].implode())).sum())
        meta.update(labelled_content=len(labelled_ids), labelled_missing=missing)
        if missing:
            msgs.append(f"{missing} of {len(labelled_ids)} labelled content items have no feature row")
    return CheckOutcome(not msgs, "; ".join(msgs) or "one row per content item, every labelled item covered", meta)
