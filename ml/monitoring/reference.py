"""The champion's reference: the content of the days it trained on, scored once by the champion through
the batch-scoring code path, as PSI bins, with its operating points and its own prevalence gap. Written
once per champion and dataset version; `reference.json` last, so a directory that has it is complete."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime
from pathlib import Path

import polars as pl

from ml.evaluation.results import OperatingPoint
from ml.lake import write_parquet_atomic, write_text_atomic
from ml.monitoring.measures import paired_gap
from ml.monitoring.psi import BINNING, Bins, reference_bins, with_risk
from ml.taxonomy import VIOLATING


@dataclass(frozen=True)
class Reference:
    """What a day is compared with: the champion's training window, scored once, as bins."""

    champion: str
    dataset_version: str
    window_start: date
    window_end: date
    rows: int
    # The newest label the champion's training set holds, and how many platform labels it has:
    # labels stamped later are new evidence for the retraining sensor.
    labels_until: datetime | None
    label_rows: int
    bins: dict[str, Bins]
    # Per violating policy: the champion's operating thresholds and the precision its auto-action
    # threshold reached on validation (its promise).
    thresholds: dict[str, dict[str, float]]
    promised_precision: dict[str, float]
    # Per violating policy: mean calibrated score minus QA-estimated prevalence over the training window. A
    # champion calibrated on report-biased labels over- or under-states prevalence by a steady amount; the
    # daily check is held to that amount, not to zero. `qa_audited`: the QA audits behind it.
    prevalence_offset: dict[str, float]
    qa_audited: int
    binning: str = BINNING
    created_at: str = field(default="", compare=False)

    def to_json(self) -> str:
        data = asdict(self)
        data["window_start"], data["window_end"] = self.window_start.isoformat(), self.window_end.isoformat()
        data["labels_until"] = self.labels_until.isoformat() if self.labels_until else None
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Reference:
        data = json.loads(text)
        data["bins"] = {
            k: Bins(**{**b, "shares": tuple(b["shares"]), "edges": tuple(b["edges"]), "values": tuple(b["values"])})
            for k, b in data["bins"].items()
        }
        data["window_start"] = date.fromisoformat(data["window_start"])
        data["window_end"] = date.fromisoformat(data["window_end"])
        data["labels_until"] = datetime.fromisoformat(data["labels_until"]) if data["labels_until"] else None
        data.setdefault("binning", "")  # written before the rules had an identity: bin it again
        return cls(**data)


def reference_dir(monitoring_root: Path, champion: str, dataset_version: str) -> Path:
    """Where the reference of one champion trained on one dataset version lives; written once."""
    return Path(monitoring_root) / "reference" / f"{champion}--{dataset_version}"


REFERENCE_FILE = "reference.json"


def write_reference(reference: Reference, scored: pl.DataFrame, directory: Path) -> None:
    """The scored reference rows, then the reference itself: reference.json is written last, through a
    temporary file and a rename, so a directory that has it is complete."""
    directory = Path(directory)
    write_parquet_atomic(scored, directory / "scored.parquet")
    write_text_atomic(directory / REFERENCE_FILE, reference.to_json())


def reference_complete(directory: Path) -> bool:
    return (Path(directory) / REFERENCE_FILE).is_file()


def read_reference(directory: Path) -> Reference:
    return Reference.from_json((Path(directory) / REFERENCE_FILE).read_text())


def read_scored_reference(directory: Path) -> pl.DataFrame:
    return pl.read_parquet(Path(directory) / "scored.parquet")


def training_window(training_set: pl.DataFrame) -> tuple[date, date, datetime | None, int]:
    """The days of the platform content the champion trained on (train split), the newest label time of
    its training set and how many platform labels it holds."""
    platform = training_set.filter(pl.col("content_id").is_not_null())
    train = platform.filter(pl.col("split") == "train")
    if train.is_empty():
        raise ValueError(
            "the training set has no platform content in its train split: there is no "
            "training window to monitor against (land and label some days, then retrain)"
        )
    labels_until = platform["label_at"].max() if "label_at" in platform.columns else None
    return train["created_date"].min(), train["created_date"].max(), labels_until, platform.height


def rebinned(reference: Reference, scored: pl.DataFrame) -> Reference:
    """`reference` with its bins fitted again from its scored rows when the binning rules changed."""
    if reference.binning == BINNING:
        return reference
    return replace(reference, bins=reference_bins(scored), binning=BINNING)


def qa_labels(training_set: pl.DataFrame) -> pl.DataFrame:
    """content_id and gold label of the QA-audited platform content in a training set."""
    return training_set.filter(pl.col("label_source") == "qa_audit").select("content_id", "label")


def build_reference(
    champion: str,
    dataset_version: str,
    window: tuple[date, date, datetime | None, int],
    monitored: pl.DataFrame,
    operating_points: Mapping[str, OperatingPoint],
    audits: pl.DataFrame,
    created_at: str = "",
) -> Reference:
    """The reference from `monitored` (the window's content with its champion scores and features) and `audits`
    (content_id, label of QA-audited content; those of the window are used)."""
    start, end, labels_until, label_rows = window
    frame = with_risk(monitored)
    audited = frame.join(audits, on="content_id", how="inner")
    # The champion's usual gap, measured as the daily check measures it (ml/monitoring/prevalence.py).
    offset = {p: paired_gap(audited[f"p_{p}"], audited["label"] == p)[0] if audited.height else 0.0 for p in VIOLATING}
    return Reference(
        champion=champion,
        dataset_version=dataset_version,
        window_start=start,
        window_end=end,
        rows=frame.height,
        labels_until=labels_until,
        label_rows=label_rows,
        bins=reference_bins(frame),
        thresholds={
            p: {"auto_action": float(op.auto_action_threshold), "review": float(op.review_threshold)}
            for p, op in operating_points.items()
        },
        promised_precision={
            p: float(op.auto_action_precision)
            for p, op in operating_points.items()
            if op.reachable and _finite(op.auto_action_precision)
        },
        prevalence_offset=offset,
        qa_audited=audited.height,
        created_at=created_at,
    )


def _finite(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)
