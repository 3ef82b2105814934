"""The `trustlake` command line: run the pipeline, open the UI, query the marts.

Each command lives in its own module of this package, registered on the `trustlake` group
(orchestration/cli/group.py) in the order `trustlake --help` lists them (most used first). A command module
imports Dagster, dbt, Ray or PyTorch only inside the command, so `trustlake --help` starts at once.
"""

from __future__ import annotations

import sys

import click

from orchestration.cli.group import cli

# Importing a command module registers its commands on `cli`: this order is the order of `--help`.
# isort: off
from orchestration.cli import run, ui, sql, models, scoring, labels, banks, land, prepare  # noqa: F401
# isort: on


def main(argv: list[str] | None = None) -> int:
    """`trustlake ARGS`: the command's exit code. A usage error is one line on stderr and exit code 2."""
    try:
        code = cli.main(args=argv, prog_name="trustlake", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `trustlake` or `trustlake models`: the help
        exc.show()
        return exc.exit_code
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "trustlake"
        print(f"{where}: {exc.format_message().rstrip('.')} (see `{where} --help`)", file=sys.stderr)
        return exc.exit_code
    except click.ClickException as exc:
        print(f"trustlake: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except click.Abort:  # Ctrl-C where a command does not handle it itself
        return 130
    return 0 if code is None else code


if __name__ == "__main__":
    sys.exit(main())
