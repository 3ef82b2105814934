"""dbt build time of the warehouse for the default data and for 10x the default.

    .venv/bin/python bench/warehouse.py [--scales 1 10] [--days 30]

For each scale it lands the simulated raw lake and the labelled reference sets in a temporary
home (not timed), then times
a full `dbt build` (the warehouse's models and all their tests; the marts scoring, training and
monitoring build are left out) and an incremental one-day rebuild, and reports
raw rows per second. Both scales run side by side in one process, so the 10x figure reads
as a ratio against the default one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import polars as pl
from report import write_report  # bench/report.py, beside this script

from assets.dbt_inputs import with_dbt_vars, write_raw_sources
from assets.warehouse_project import DBT_EXECUTABLE, DBT_PROJECT_DIR, dbt_environment
from ml.corpora import load_records, load_text_pool
from ml.lake import Lake
from ml.raw.contracts import RAW_TABLES
from ml.reference import land_reference, reference_frame
from ml.simulator import partition_date, simulate_days
from ml.world import SimConfig
from orchestration.settings import Settings

# Built by scoring, training and monitoring runs from tables this benchmark does not make.
LATER_MODELS = ("mart_review_queue", "mart_label_issues", "mart_model_monitoring", "ops_alerts")


def dbt_build(lake: Lake, *extra: str) -> float:
    env = {**os.environ, **dbt_environment(lake)}
    t0 = time.perf_counter()
    out = subprocess.run(
        with_dbt_vars(
            [
                DBT_EXECUTABLE,
                "build",
                "--quiet",
                "--project-dir",
                str(DBT_PROJECT_DIR),
                "--profiles-dir",
                str(DBT_PROJECT_DIR),
                "--target-path",
                str(lake.home / "dbt-target"),
                "--exclude",
                *LATER_MODELS,
                *extra,
            ]
        ),
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-3000:] + out.stderr[-3000:])
    return elapsed


def bench_scale(scale: int, days: int, pool, reference: pl.DataFrame) -> dict:
    config = SimConfig(users=4_000 * scale, content_per_day=2_000 * scale)
    with tempfile.TemporaryDirectory(prefix=f"trustlake-bench-{scale}x-") as tmp:
        lake = Lake(Path(tmp))
        lake.warehouse_dir.mkdir(parents=True)
        land_reference(lake, reference)
        all_days = [config.start_date + timedelta(days=i) for i in range(days)]
        tables = simulate_days(config, pool, all_days[0], all_days[-1])
        rows = 0
        for table in RAW_TABLES:
            part = partition_date(table, tables[table], config)
            rows += tables[table].height
            for day in all_days:
                lake.write_partition(table, day, tables[table].filter(part == day))
        full = dbt_build(lake)
        last = all_days[-1].isoformat()
        one_day = dbt_build(lake, "--vars", json.dumps({"min_date": last, "max_date": last}))
    return {
        "scale": f"{scale}x",
        "raw_rows": rows,
        "content_items": tables["content"].height,
        "full_build_seconds": round(full, 2),
        "full_build_rows_per_second": round(rows / full),
        "one_day_rebuild_seconds": round(one_day, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    write_raw_sources()  # what `trustlake prepare` renders before dbt reads the project
    corpora = Settings.from_env().corpora
    pool, _ = load_text_pool(corpora)
    reference = reference_frame(load_records(corpora)[0])
    results = [bench_scale(s, args.days, pool, reference) for s in args.scales]
    if len(results) > 1:
        base = results[0]
        for r in results[1:]:
            r["time_ratio_vs_first"] = round(r["full_build_seconds"] / base["full_build_seconds"], 2)
    write_report("warehouse", results)


if __name__ == "__main__":
    main()
