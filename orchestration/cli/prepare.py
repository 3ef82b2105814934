"""`trustlake prepare`: the home, its pinned first day, the Dagster instance and the dbt manifest."""

from __future__ import annotations

from orchestration.cli.group import _prepare, cli, described, with_settings
from orchestration.settings import Settings


@cli.command(
    "prepare", **described("create the home (pinning its first day), the Dagster instance and the dbt manifest")
)
@with_settings
def cmd_prepare(settings: Settings) -> int:
    settings = _prepare(settings)
    print(
        f"trustlake home: {settings.home}; simulated window {settings.start_date} .. {settings.last_day} "
        f"(first day {'from TRUSTLAKE_START_DATE' if settings.start_date_source == 'TRUSTLAKE_START_DATE' else 'pinned in ' + str(settings.platform_file)}); "
        "dbt manifest ready"
    )
    return 0
