"""`trustlake land`: check a file of a raw table now and land it whole as a land_job run, or not at all."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from orchestration.cli.group import _prepare, cli, described, with_settings
from orchestration.cli.run import _succeeded, launch_jobs
from orchestration.settings import Settings

if TYPE_CHECKING:  # launch.py imports Dagster: `trustlake --help` must not pay for it
    from orchestration.launch import Launcher


@cli.command(
    "land",
    **described("check a Parquet or CSV file of a raw table and land it (land_job), or quarantine it with its reasons"),
)
@click.argument("file")
@click.option(
    "--table",
    required=True,
    help="the raw table its rows belong to: users, content, reports, decisions, appeals or qa_audits",
)
@click.option(
    "--verbose",
    is_flag=True,
    help="show Dagster's and dbt's own output (the run keeps its full log in the UI either way)",
)
@with_settings
def cmd_land(settings: Settings, file: str, table: str, verbose: bool) -> int:
    """`trustlake land FILE --table T`: check FILE now and land it whole as a land_job run, or not at all.

    A file with any problem lands nothing: a copy goes to quarantine with its reason, each problem
    is one line on stderr, and the exit code is 2 (FILE itself is left as it is). Dropping the
    file into lake/landing/<table>/ instead lands its good rows and quarantines only the rest.
    """
    from pathlib import Path

    from assets.raw import partition_bounds
    from ml.lake import Lake
    from ml.raw.contracts import RAW_TABLES
    from ml.raw.landing import claim_file, claims, quarantine_dropped
    from ml.raw.landing_check import check_landing
    from orchestration.partitions import daily_partitions
    from orchestration.sensors.landing import land_run_request

    def complain(line: str) -> None:
        print(f"trustlake land: {line}", file=sys.stderr)

    lake, file = Lake(settings.home), Path(file)
    if table not in RAW_TABLES:
        complain(f"--table {table!r} is not a raw table; use one of {', '.join(RAW_TABLES)}")
        return 2
    if not file.is_file():
        complain(f"{file} is not a file")
        return 2
    _prepare(settings)
    check = check_landing(lake, table, file, partition_bounds(daily_partitions), pending=claims(lake))
    result = check.validation
    if check.waiting_for:
        complain(
            f"rows of {file} refer to rows that {', '.join(check.waiting_for)} is still landing; run this again once "
            "that land_job run has finished (nothing landed)"
        )
        return 2
    if result.problems:
        moved = quarantine_dropped(lake, check, copy=True)
        for problem in result.problems:
            complain(problem.describe(limit=5))
        complain(
            f"nothing landed ({result.rows_read:,} rows read, {result.bad_rows:,} bad); {file} is unchanged, a copy "
            f"and its reason are in {moved.parent}/ ({moved.name}.reason.txt). Fix the rows and run this again."
        )
        return 2
    claim = claim_file(lake, table, file, copy=True)
    print(
        f"trustlake land: {file} passed every rule ({result.rows_read:,} rows, {check.days[0]} .. {check.days[-1]});"
        f" landing it as {claim.name}",
        flush=True,
    )
    waits = f"the file waits in {claim.path.parent}/"

    def jobs(launcher: Launcher) -> int:
        # The run the landing sensor would request for this claim, launched against the code location.
        request = land_run_request(claim, check.days, launcher.asset_graph)
        outcome = launcher.run(
            request.job_name, tags=request.tags, run_config=request.run_config, asset_selection=request.asset_selection
        )
        if not _succeeded(outcome):
            print(
                f"trustlake land: land_job failed (run {outcome.run_id}); {waits}. Open the UI to see why (make ui) "
                "and re-execute the run there.",
                file=sys.stderr,
            )
            return 1
        print(
            f"trustlake land: {result.rows_read:,} {table} rows landed for {check.days[0]} .. {check.days[-1]}; "
            f"warehouse and marts rebuilt (run {outcome.run_id})"
        )
        return 0

    return launch_jobs("land", settings, verbose=verbose, jobs=jobs, if_not_launched=f"; {waits}")
