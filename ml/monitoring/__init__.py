"""Monitoring of the deployed champion: drift, live precision, prevalence, and when to retrain.

Every measure compares one day of scored content with something the champion is accountable to: its
reference (`reference`: the days it trained on, scored once, as PSI bins fixed then, `psi`), the
promise of its operating points (`precision`), the QA estimate of prevalence (`prevalence`). Each is a
long table, one row per (metric, subject), with a status from `MonitoringThresholds` (`thresholds`;
ok, warn, fail, or insufficient when there is too little evidence) that `measures.verdict` sums up for
an asset check; `retraining` turns the evidence into a retraining request, `alerts` logs failed runs.
The names are handed on here, so `from ml import monitoring as mon; mon.drift(...)` reads as one module.
"""

from ml.monitoring.alerts import OPS_ALERT_SCHEMA, first_lines, read_ops_alerts, write_ops_alert
from ml.monitoring.drift import drift, worst_psi
from ml.monitoring.measures import METRIC_SCHEMA, Verdict, metric_rows, verdict, wilson
from ml.monitoring.precision import live_precision, top_policy
from ml.monitoring.prevalence import prevalence
from ml.monitoring.psi import BINNING, FIXED_EDGES, PSI_BINS, SCORE_COLUMNS, Bins, fit_bins, psi
from ml.monitoring.reference import (
    REFERENCE_FILE,
    Reference,
    build_reference,
    qa_labels,
    read_reference,
    read_scored_reference,
    rebinned,
    reference_complete,
    reference_dir,
    training_window,
    write_reference,
)
from ml.monitoring.retraining import RetrainRequest, new_labels_since, retrain_request
from ml.monitoring.thresholds import STATUSES, MonitoringThresholds

__all__ = [
    "OPS_ALERT_SCHEMA",
    "first_lines",
    "read_ops_alerts",
    "write_ops_alert",
    "drift",
    "worst_psi",
    "METRIC_SCHEMA",
    "Verdict",
    "metric_rows",
    "verdict",
    "wilson",
    "live_precision",
    "top_policy",
    "prevalence",
    "BINNING",
    "FIXED_EDGES",
    "PSI_BINS",
    "SCORE_COLUMNS",
    "Bins",
    "fit_bins",
    "psi",
    "Reference",
    "build_reference",
    "qa_labels",
    "read_reference",
    "read_scored_reference",
    "rebinned",
    "reference_complete",
    "reference_dir",
    "training_window",
    "write_reference",
    "RetrainRequest",
    "new_labels_since",
    "retrain_request",
    "STATUSES",
    "MonitoringThresholds",
    "REFERENCE_FILE",
]
