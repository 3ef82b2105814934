"""The daily partitioning shared by raw tables, incremental dbt models and scoring."""

import dagster as dg

from orchestration.settings import Settings

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=Settings.from_env().start_date.isoformat(), end_offset=0
)
