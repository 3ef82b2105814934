"""Simulator throughput: 1,000,000 content items with all their tables (goal: under 30 s on 2 cores).

    .venv/bin/python bench/simulate.py [--content 1000000] [--days 30]

Prints wall time, rows per second over every table, and content items per second.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

from report import write_report  # bench/report.py, beside this script

from ml.corpora import load_text_pool
from ml.raw.contracts import RAW_TABLES
from ml.simulator import simulate_days
from ml.world import SimConfig, build_world
from orchestration.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--content", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--users", type=int, default=100_000)
    args = parser.parse_args()

    settings = Settings.from_env()
    pool, source = load_text_pool(settings.corpora)
    config = SimConfig(users=args.users, content_per_day=args.content // args.days)
    t0 = time.perf_counter()
    build_world(config)
    t_world = time.perf_counter() - t0
    tables = simulate_days(config, pool, config.start_date, config.start_date + timedelta(days=args.days - 1))
    total = time.perf_counter() - t0
    rows = {t: tables[t].height for t in RAW_TABLES}
    all_rows = sum(rows.values())
    report = {
        "text_source": source,
        "content_items": rows["content"],
        "rows_by_table": rows,
        "seconds": round(total, 2),
        "world_seconds": round(t_world, 2),
        "rows_per_second": round(all_rows / total),
        "content_per_second": round(rows["content"] / total),
        "goal_seconds": 30,
        "goal_met": total < 30,
    }
    write_report("simulate", report)


if __name__ == "__main__":
    main()
