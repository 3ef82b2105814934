"""When a monitoring measure warns, fails, or has too little evidence to judge: `MonitoringThresholds`,
the one place for their defaults, and the statuses every measure's rows carry."""

from __future__ import annotations

from dataclasses import dataclass

STATUSES = ("ok", "warn", "fail", "insufficient")


@dataclass(frozen=True)
class MonitoringThresholds:
    """When a monitoring measure warns, fails, or has too little evidence; the one place for the defaults
    (orchestration/settings.py derives a TRUSTLAKE_<FIELD> variable from each field a deployment may set)."""

    drift_psi_warn: float = 0.1  # PSI 0.1-0.25: a moderate shift worth a look (the usual reading of PSI)
    drift_psi_fail: float = 0.25  # above 0.25: the population the model sees has changed
    # Promised minus live precision. Generous, because the live figure also counts moderators' own misses
    # (a violation a moderator let stand reads as a wrong removal): about 0.03-0.08 of it on this platform.
    precision_drop_warn: float = 0.15
    precision_drop_fail: float = 0.3
    # How far (predicted - QA-estimated prevalence) moved from the champion's own gap on its training window.
    prevalence_gap_warn: float = 0.05
    prevalence_gap_fail: float = 0.1
    retrain_min_new_labels: int = 2000  # about five days of labels at the default platform size
    min_rows: int = 200  # scored items a day needs before its PSI means anything
    min_labelled: int = 20  # labelled auto-actions before live precision is judged
    min_audited: int = 20  # QA audits before prevalence is judged

    def __post_init__(self) -> None:
        for name in ("drift_psi", "precision_drop", "prevalence_gap"):
            warn, fail = getattr(self, f"{name}_warn"), getattr(self, f"{name}_fail")
            if not 0 < warn < fail:
                raise ValueError(f"{name} thresholds must satisfy 0 < warn < fail (got warn {warn}, fail {fail})")


def level(value: float, warn: float, fail: float) -> str:
    """The status of a measure judged against a warn and a fail threshold."""
    return "fail" if value > fail else "warn" if value > warn else "ok"
