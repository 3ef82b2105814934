"""`trustlake models`: list, show, promote and roll back versions in the model registry."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

import click

from orchestration.cli.group import InOrder, cli, described, with_settings
from orchestration.cli.sql import format_table
from orchestration.settings import Settings


@cli.group("models", cls=InOrder, **described("the model registry: list | show VERSION | promote VERSION | rollback"))
def models() -> None:
    pass


def registry_command(command: Callable[..., None]) -> Callable[..., int]:
    """Run `command` on the home's model registry; a registry error is one line and exit code 2."""

    @functools.wraps(command)
    def wrapper(settings: Settings, **options) -> int:
        from ml.lake import Lake
        from ml.registry import Registry, RegistryError

        try:
            command(Registry(Lake(settings.home).models), **options)
        except RegistryError as exc:
            print(f"trustlake models: {exc}", file=sys.stderr)
            return 2
        return 0

    return with_settings(wrapper)


def cli_actor() -> str:
    return f"cli:{os.environ.get('USER', 'unknown')}"


@models.command("list", **described("every registered model version, oldest first"))
@registry_command
def models_list(registry) -> None:
    rows = [
        (
            e.version,
            e.kind,
            e.status,
            e.created_at,
            e.dataset_version,
            e.code_version[:12],
            e.metrics.test_macro_pr_auc,
            e.metrics.gates_passed,
        )
        for e in registry.list()
    ]
    print(
        format_table(
            ["version", "kind", "status", "created_at", "dataset", "code", "test_macro_pr_auc", "gates_passed"], rows
        )
    )


@models.command("show", **described("one version's registry entry as JSON (VERSION from `trustlake models list`)"))
@click.argument("version")
@registry_command
def models_show(registry, version: str) -> None:
    import json

    print(json.dumps(registry.get(version).to_dict(), indent=2, sort_keys=True))


REASON = click.option(
    "--reason", default="manual change from the CLI", show_default=True, help="why, kept in the promotion history"
)


@models.command("promote", **described("make VERSION the champion"))
@click.argument("version")
@REASON
@registry_command
def models_promote(registry, version: str, reason: str) -> None:
    event = registry.promote(version, reason=reason, actor=cli_actor())
    print(f"champion is now {event['version']} (was {event['previous'] or 'none'})")


@models.command("rollback", **described("make the previous champion the champion again"))
@REASON
@registry_command
def models_rollback(registry, reason: str) -> None:
    event = registry.rollback(actor=cli_actor(), reason=reason)
    print(f"champion is now {event['version']} (rolled back {event['rolled_back']})")
