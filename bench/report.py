"""Where a benchmark's figures go: printed, and written to bench/results/<name>.json with what ran them.

The machine is recorded beside the figures (cores, load average before and after, git commit):
on a shared machine a wall time means little without the load it was measured under, which is why
every goal here is a ratio against a baseline run side by side in the same process.
"""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
_START_LOAD = os.getloadavg()


def write_report(name: str, report, summary=None) -> Path:
    """Print `summary` (default: the whole report) and write the report with its machine facts."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
    ).stdout.strip()
    payload = {
        "benchmark": name,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit or "unknown",
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in _START_LOAD],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "results": report,
    }
    print(json.dumps(report if summary is None else summary, indent=2))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(payload, indent=2))
    print(f"wrote {out}")
    return out
