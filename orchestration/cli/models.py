"""`trustlake models`: list, show, promote and roll back versions in the model registry; deploy one as the
shadow; approve or reject a launch that waits for a person; read the audit log of all of it."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable

import click

from orchestration.cli.group import InOrder, cli, described, with_settings
from orchestration.cli.sql import format_table
from orchestration.settings import Settings


@cli.group(
    "models",
    cls=InOrder,
    **described(
        "the model registry: list | show VERSION | promote VERSION | rollback | shadow VERSION | approve VERSION | "
        "reject VERSION | audit"
    ),
)
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
    shadow = registry.shadow()
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
            "yes" if shadow is not None and shadow.version == e.version else "",
            f"{e.launch.risk_tier}, {e.launch.approval.replace('_', ' ')}" if e.launch else "",
        )
        for e in registry.list()
    ]
    print(
        format_table(
            [
                "version",
                "kind",
                "status",
                "created_at",
                "dataset",
                "code",
                "test_macro_pr_auc",
                "gates_passed",
                "shadow",
                "launch",
            ],
            rows,
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


@models.command(
    "shadow",
    **described(
        "deploy VERSION as the shadow: scored every day beside the champion, never acting (--stop: end the shadow)"
    ),
)
@click.argument("version", required=False)
@click.option("--stop", is_flag=True, help="stop the shadow that is deployed")
@REASON
@registry_command
def models_shadow(registry, version: str | None, stop: bool, reason: str) -> None:
    if stop == (version is not None):
        raise click.UsageError("give either a VERSION to deploy as the shadow or --stop, not both or neither")
    records = registry.stop_shadow(cli_actor(), reason) if stop else registry.start_shadow(version, cli_actor(), reason)
    for record in records:
        print(f"{record.action.replace('_', ' ')}: {record.version}")
    if not stop:
        print(
            "its scores land in shadow_scores and mart_shadow_comparison from the next scoring run "
            "(trustlake run; or trustlake run --first YYYY-MM-DD --days N to score past days with it)"
        )


BY = click.option("--by", "by", required=True, help="who decides (a name the audit log keeps)")
WHY = click.option("--reason", required=True, help="why, kept in the audit log")


def _read_report(registry, version: str) -> str | None:
    """The launch report a person is deciding on (relative to the models directory), if it was rendered."""
    report = f"{version}/launch/report.md"
    if (registry.dir / report).exists():
        return report
    print(
        f"trustlake models: no launch report of {version} has been rendered yet (materialize launch_report); the "
        "decision rests on its launch impact alone",
        file=sys.stderr,
    )
    return None


@models.command("approve", **described("approve VERSION's high-risk launch: it is promoted at once"))
@click.argument("version")
@BY
@WHY
@registry_command
def models_approve(registry, version: str, by: str, reason: str) -> None:
    records = registry.approve(version, by, reason, report=_read_report(registry, version))
    promoted = next(r for r in records if r.action == "promote")
    print(f"approved by {by}; champion is now {promoted.version} (was {promoted.previous or 'none'})")
    print("batch scoring follows on the next trustlake run; the HTTP service on its next request")


@models.command("reject", **described("reject VERSION's high-risk launch: it stops shadowing and is not promoted"))
@click.argument("version")
@BY
@WHY
@registry_command
def models_reject(registry, version: str, by: str, reason: str) -> None:
    registry.reject(version, by, reason, report=_read_report(registry, version))
    print(f"rejected by {by}: {version} will not be promoted by the pipeline")


@models.command("audit", **described("the audit log: every promotion, approval, rejection, rollback, shadow change"))
@click.option("--limit", type=int, default=50, show_default=True, help="the newest N lines (0: all)")
@registry_command
def models_audit(registry, limit: int) -> None:
    trail = registry.audit.read()
    rows = [
        (n, r.at, r.action, r.version, r.actor, r.risk_tier or "", r.reason) for n, r in zip(trail.lines, trail.records)
    ]
    rows += [(d.line, "", "DAMAGED", "", "", "", d.problem) for d in trail.damaged]
    rows.sort(key=lambda row: row[0])
    print(
        format_table(["line", "at", "action", "version", "actor", "risk", "reason"], rows[-limit:] if limit else rows)
    )
    for damaged in trail.damaged:
        print(f"trustlake models: warning: {damaged.describe(registry.audit.path)}", file=sys.stderr)
