"""The daily partitioning shared by raw tables, incremental dbt models, scoring and monitoring.

It starts on the platform's pinned first day (orchestration/settings.py) and, with
`end_offset=0`, ends at the last complete day: after `trustlake run` every partition the UI
shows exists, and the daily schedule's tick just after midnight (UTC) targets the new day.
"""

import dagster as dg

from orchestration.settings import Settings

daily_partitions = dg.DailyPartitionsDefinition(start_date=Settings.from_env().start_date.isoformat(), end_offset=0)
