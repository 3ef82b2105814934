"""The `trustlake` click group and what every command shares: the settings it is handed, how it
reports, and the preparation every command that loads the definitions does first."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

import click

from orchestration.settings import Settings


def say(line: str) -> None:
    print(line, flush=True)


def described(text: str) -> dict[str, str]:
    """A command's help and its line in the command list alike (click would cut a long line short)."""
    return {"help": text, "short_help": text}


class InOrder(click.Group):
    """Lists its commands in the order they are defined (most used first), not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(
    name="trustlake",
    cls=InOrder,
    help="The `trustlake` command line: run the pipeline, open the UI, query the marts.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
def cli() -> None:
    pass


def with_settings(command: Callable[..., int]) -> Callable[..., int]:
    """Hand `command` the Settings read from the environment (after the command line parsed, so
    --help and usage errors never depend on them); a bad variable or a damaged platform.json is
    one line naming it and exit code 2."""

    @functools.wraps(command)
    def wrapper(**options) -> int:
        try:
            settings = Settings.from_env()
        except ValueError as exc:
            print(f"trustlake: {exc}", file=sys.stderr)
            return 2
        return command(settings, **options)

    return wrapper


def _prepare(settings: Settings) -> Settings:
    """Everything loading the definitions relies on, done before anything loads them: the home and
    its pinned first day, the Dagster instance's dagster.yaml, the dbt manifest. Then point this
    process, and the Dagster processes it starts, at that instance."""
    from assets.warehouse_project import prepare_manifest
    from ml.lake import Lake
    from orchestration.settings import prepare_home, process_environment

    settings = prepare_home(settings)
    os.environ.update(process_environment(settings))
    prepare_manifest(Lake(settings.home))
    return settings
