"""The `trustlake` command line: run the pipeline, open the UI, query the marts."""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, timedelta
from typing import TYPE_CHECKING

import click

from orchestration.settings import PROJECT_ROOT, WORKSPACE_FILE, Settings

if TYPE_CHECKING:  # launch.py imports Dagster: `trustlake --help` must not pay for it
    from orchestration.launch import Launcher, RunOutcome


def say(line: str) -> None:
    print(line, flush=True)


def described(text: str) -> dict[str, str]:
    """A command's help and its line in the command list alike (click would cut a long line short)."""
    return {"help": text, "short_help": text}


class InOrder(click.Group):
    """Lists its commands in the order they are defined (most used first), not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(name="trustlake", cls=InOrder, help=__doc__, context_settings={"help_option_names": ["-h", "--help"]})
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


def run_window(settings: Settings, first_day: str | None, days: int | None) -> tuple[date, date]:
    """The days `trustlake run` builds: --first (default: the first day) for --days days (default:
    through yesterday, the last day the daily partitions have)."""
    first = date.fromisoformat(first_day) if first_day else settings.start_date
    if first < settings.start_date:
        raise ValueError(f"--first {first} is before the platform's first day {settings.start_date}")
    last = first + timedelta(days=days - 1) if days else settings.last_day
    if days is not None and days < 1:
        raise ValueError("--days must be at least 1")
    if last > settings.last_day:
        raise ValueError(
            f"{first} + {days} days ends {last}, past yesterday ({settings.last_day}), the last "
            "day that has ended: ask for fewer days"
        )
    if first > last:
        raise ValueError(f"nothing to build: {first} is after yesterday ({settings.last_day})")
    return first, last


def launch_jobs(
    command: str, settings: Settings, *, verbose: bool, jobs: Callable[[Launcher], int], if_not_launched: str = ""
) -> int:
    """The one place the CLI launches Dagster jobs (`trustlake run`, `trustlake land`).

    Recovers first (dead runs, stuck pool slots, killed writes' temp files), then opens a Launcher
    on the code location and hands it to `jobs`, which launches its runs and returns the exit code.
    SIGTERM is handled as Ctrl-C: the run in progress is canceled and the code server stopped.
    A run that cannot be launched is one line on stderr (with `if_not_launched` added) and exit 1.
    """
    import dagster as dg

    from ml.lake import Lake
    from orchestration.launch import Launcher, LaunchError
    from orchestration.recovery import recover_before_run, watch_run

    def terminated(signum, frame) -> None:
        raise KeyboardInterrupt  # as Ctrl-C: cancel the run in progress and stop the code server

    signal.signal(signal.SIGTERM, terminated)
    lake = Lake(settings.home)
    instance = dg.DagsterInstance.get()
    recover_before_run(instance, lake, say=lambda line: say(f"trustlake: {line}"))
    try:
        with Launcher(instance, say=say, verbose=verbose, on_launch=watch_run, lake=lake) as launcher:
            if launcher.log_file:
                say(f"trustlake: Dagster and dbt output goes to {launcher.log_file} (--verbose shows it here)")
            return jobs(launcher)
    except LaunchError as exc:
        print(f"trustlake {command}: {exc}{if_not_launched}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


@cli.command("run", **described("launch ingest_job, retrain_job and score_job over the simulated window"))
@click.option(
    "--days",
    type=int,
    default=None,
    help="days to build from --first (default: through yesterday, the window's last day)",
)
@click.option(
    "--first",
    "first_day",
    default=None,
    help="first day to (re)build, YYYY-MM-DD (default: the platform's first day, pinned in the home)",
)
@click.option("--skip-training", is_flag=True, help="land and model the data only (ingest_job)")
@click.option(
    "--verbose",
    is_flag=True,
    help="show Dagster's and dbt's own output (the runs keep their full logs in the UI either way)",
)
@with_settings
def cmd_run(settings: Settings, first_day: str | None, days: int | None, skip_training: bool, verbose: bool) -> int:
    settings = _prepare(settings)
    try:
        first, last = run_window(settings, first_day, days)
    except ValueError as exc:
        print(f"trustlake run: {exc}", file=sys.stderr)
        return 2
    from ml.lake import Lake
    from ml.registry import Registry

    lake = Lake(settings.home)
    n_days = (last - first).days + 1
    started = time.perf_counter()
    evaluations: dict = {}

    def jobs(launcher: Launcher) -> int:
        say(f"trustlake: ingest_job: simulating and landing {n_days} days ({first} .. {last}), building the warehouse")
        if not _succeeded(launcher.run("ingest_job", partition_range=(first, last))):
            return 1
        if skip_training:
            return 0
        say(
            "trustlake: retrain_job: features, label issues, the content classifier, the text model and the risk "
            "model (Ray), the baseline, judged on text and sources they never saw; promotion if every gate passes"
        )
        outcome = launcher.run("retrain_job")
        if not _succeeded(outcome):
            return 1
        evaluations.update(load_evaluations(launcher.instance, outcome.run_id, settings))
        if Registry(lake.models).champion() is None:
            # Candidates failing their gates is an outcome, not a crash: say so and stop here.
            say("trustlake: no champion (no candidate passed its quality gates): skipping scoring")
            return 0
        say(f"trustlake: score_job: scoring {n_days} days of content with the champion, building the review queue")
        return 0 if _succeeded(launcher.run("score_job", partition_range=(first, last))) else 1

    code = launch_jobs("run", settings, verbose=verbose, jobs=jobs)
    if code == 0:
        print_summary(settings, time.perf_counter() - started, evaluations)
    return code


def _succeeded(outcome: RunOutcome) -> bool:
    """Print a run's failed checks (gates are outcomes, not failures) and, if it failed, why."""
    for check in outcome.failed_checks:
        say(f"  {check.describe()}")
    for line in outcome.failure_lines():
        print(f"trustlake: {line}", file=sys.stderr, flush=True)
    return outcome.success


EVALUATIONS = ("content_classifier_evaluation", "text_evaluation", "risk_model_evaluation")


def load_evaluations(instance, run_id: str, settings: Settings) -> dict:
    """The evaluations the retraining run `run_id` materialized, read back through the code
    location's IO manager (an evaluation that failed in that run is left out, never an older one)."""
    import logging

    import dagster as dg

    from orchestration.definitions import io_manager

    manager = io_manager(settings).create_io_manager(dg.build_init_resource_context(instance=instance))
    out = {}
    logging.disable(logging.INFO)  # the IO manager's "Loading file from ..." lines
    try:
        for key in EVALUATIONS:
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            if event is not None and event.run_id == run_id:
                out[key] = manager.load_input(dg.build_input_context(asset_key=dg.AssetKey(key), instance=instance))
    finally:
        logging.disable(logging.NOTSET)
    return out


def print_summary(settings: Settings, seconds: float, models: dict) -> None:
    from ml.lake import Lake
    from ml.simulator import RAW_TABLES
    from ml.warehouse import query

    lake = Lake(settings.home)
    print(f"\n== trustlake run finished in {seconds:.0f} s")
    print(f"raw lake   {lake.raw}")
    for table in RAW_TABLES:
        cols, rows = query_lake_count(lake, table)
        print(f"  {table:<12} {rows:>10,} rows in {cols} daily partitions")
    print(f"warehouse  {lake.warehouse_db}")
    print(f"marts      {lake.marts_db}  (read-only copy for analysts)")
    _, rows = query(lake.marts_db, "select table_name from information_schema.tables order by 1")
    for (name,) in rows:
        n = query(lake.marts_db, f'select count(*) from "{name}"')[1][0][0]
        print(f"  {name:<24} {n:>10,} rows")
    if models:
        print_model_report(models)
        print_champion(lake)
    print('\nnext: make ui  (Dagster UI)   |   trustlake sql "select * from mart_appeals"')


def f(v) -> str:
    """A figure for the terminal: three decimals, `n/a` when not measured (None or NaN)."""
    return "   n/a" if v is None or v != v else f"{v:6.3f}"


def print_model_report(evaluations: dict) -> None:
    """Text-only held-out and leave-one-source-out figures (macro PR-AUC over the violating policies)."""
    from ml.taxonomy import VIOLATING

    print("models     text-only held-out PR-AUC (texts never trained on, scored without context)")
    print(f"  {'model':<22} {'macro':>6} " + " ".join(f"{p:>11}" for p in VIOLATING) + "  gates")
    rows = []
    for key in ("content_classifier_evaluation", "text_evaluation"):
        if key in evaluations:
            ev = evaluations[key]
            rows.append(
                (ev.kind, ev.text_only, "passed" if ev.gates_passed else "FAILED: " + ", ".join(ev.failed_gates))
            )
    main = evaluations.get("content_classifier_evaluation")
    if main:
        rows.append(("baseline", main.baseline_text_only, "reference"))
    for name, m, gates in rows:
        print(
            f"  {name:<22} {f(m.macro_pr_auc)} " + " ".join(f"{f(m.pr_auc(p)):>11}" for p in VIOLATING) + f"  {gates}"
        )
    if main and main.held_out_sources:
        print("  leave-one-source-out macro PR-AUC (a model of the same recipe trained without the source):")
        print(f"  {'held-out source':<26} {'classifier':>10} {'baseline':>9} {'delta':>7}  95% interval")
        for s in main.held_out_sources:
            print(
                f"  {s.source:<26} {f(s.candidate.macro_pr_auc):>10} {f(s.baseline.macro_pr_auc):>9} "
                f"{s.delta:+7.3f}  {s.delta_ci_low:+.3f} .. {s.delta_ci_high:+.3f}"
            )
        sources = main.held_out_sources
        ahead = sum(s.delta > 0 for s in sources)
        significant = sum(s.delta_ci_low > 0 for s in sources)
        print(f"  ahead of the baseline on {ahead} of {len(sources)} held-out sources ({significant} significantly)")
    pair = evaluations.get("risk_model_evaluation")
    if pair:
        qa = f"{pair.qa_gold.macro_pr_auc:.3f} on {pair.qa_gold.rows} audited items" if pair.qa_gold else "not measured"
        print(
            f"  pair {pair.version}: simulated test macro PR-AUC {f(pair.test.macro_pr_auc).strip()} "
            f"on {pair.test.rows} items (classifier alone {f(pair.classifier_alone_test.macro_pr_auc).strip()}), "
            f"QA gold {qa}, gates " + ("passed" if pair.gates_passed else "FAILED: " + ", ".join(pair.failed_gates))
        )


def print_champion(lake) -> None:
    from ml.registry import Registry, RegistryError
    from ml.taxonomy import VIOLATING

    try:
        champ = Registry(lake.models).champion()
    except RegistryError as exc:
        print(f"champion   unknown: {exc}")
        return
    if champ is None:
        print("champion   none: no candidate passed its quality gates")
        return
    m = champ.metrics
    qa = m.qa_gold_macro_pr_auc
    print(
        f"champion   {champ.version} with content classifier {champ.content_classifier}: "
        f"text-only macro PR-AUC {f(m.text_only_macro_pr_auc).strip()}, simulated test "
        f"{f(m.test_macro_pr_auc).strip()}" + (f", QA gold {qa:.3f}" if qa is not None else "")
    )
    for p in VIOLATING:
        op = champ.operating_points[p]
        auto = f"{op.auto_action_threshold:.3f}" if op.reachable else "unreachable"
        print(
            f"  {p:<12} text-only PR-AUC {f(m.text_only_pr_auc.get(p)).strip()}  auto-action at {auto}  "
            f"review at {op.review_threshold:.3f}"
        )


def query_lake_count(lake, table: str) -> tuple[int, int]:
    import duckdb

    parts = lake.partitions(table)
    with duckdb.connect() as con:
        n = con.execute(f"select count(*) from read_parquet('{lake.table_glob(table)}')").fetchall()[0][0]
    return len(parts), int(n)


@cli.command("ui", **described("start the Dagster UI (dagster dev -w workspace.yaml)"))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=3000, show_default=True)
@with_settings
def cmd_ui(settings: Settings, host: str, port: int) -> int:
    settings = _prepare(settings)
    os.chdir(PROJECT_ROOT)
    argv = ["dagster", "dev", "-w", str(WORKSPACE_FILE), "-h", host, "-p", str(port)]
    exe = os.path.join(os.path.dirname(sys.executable), "dagster")
    print(f"trustlake: Dagster UI on http://{host}:{port} (DAGSTER_HOME={settings.dagster_home})")
    os.execv(exe, argv)
    return 0  # unreachable


class StatementCommand(click.Command):
    """Takes an argument that starts with "-" and holds a space (`trustlake sql "-- why\nselect 1"`) as
    the statement, not as an unknown option, as argparse did: no option name holds a space."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" not in args:
            statements = [a for a in args if a.startswith("-") and any(c.isspace() for c in a)]
            if statements:
                args = [a for a in args if a not in statements] + ["--", *statements]
        return super().parse_args(ctx, args)


@cli.command(
    "sql",
    cls=StatementCommand,
    help="one read-only query on the published marts (marts.duckdb): QUERY is one SELECT "
    "(or EXPLAIN, PRAGMA, CALL) statement",
    short_help="one read-only query on the published marts (marts.duckdb)",
)
@click.argument("query")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    help="table for people (default), csv or json for programs",
)
@click.option("--limit", type=int, default=None, help="rows to print (default: 50 for table, all for csv and json)")
@with_settings
def cmd_sql(settings: Settings, query: str, fmt: str, limit: int | None) -> int:
    """One read-only statement on marts.duckdb; errors are one line on stderr and exit code 2."""
    from ml.lake import Lake
    from ml.warehouse import AnalystQueryError, analyst_query

    try:
        columns, rows = analyst_query(Lake(settings.home).marts_db, query)
    except (FileNotFoundError, AnalystQueryError) as exc:
        print(f"trustlake sql: {exc}", file=sys.stderr)
        return 2
    # A table is for reading on screen, so it stops at 50 rows unless told; csv and json are for
    # other programs, so they get every row unless --limit says otherwise.
    limit = limit if limit is not None else (50 if fmt == "table" else None)
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if fmt == "json" and repeated:
        print(
            f"trustlake sql: column name(s) {', '.join(repeated)} repeat; a JSON object keeps only one: "
            "give each column its own alias",
            file=sys.stderr,
        )
        return 2
    shown = rows if limit is None else rows[:limit]
    try:
        if fmt == "csv":
            format_csv(columns, shown, sys.stdout)
        elif fmt == "json":
            print(format_json(columns, shown))
        else:
            print(format_table(columns, shown))
        sys.stdout.flush()
    except BrokenPipeError:  # `trustlake sql ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if len(rows) > len(shown):
        # stderr for machine formats, so a note never ends up inside the CSV or JSON
        print(f"({len(rows) - len(shown)} more rows; use --limit)", file=sys.stdout if fmt == "table" else sys.stderr)
    return 0


def format_table(columns: list[str], rows: list[tuple]) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    body = [[cell(v) for v in r] for r in rows]
    widths = [max([len(c)] + [len(r[i]) for r in body]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line, rule] + ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in body])


def format_csv(columns: list[str], rows: list[tuple], out) -> None:
    """RFC 4180 CSV with a header; NULL is an empty field, values at full precision."""
    import csv

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(["" if v is None else v for v in r] for r in rows)


def format_json(columns: list[str], rows: list[tuple]) -> str:
    """A JSON array with one object per row; dates as ISO strings, NaN and infinity as null."""
    import json
    import math
    from datetime import date, datetime
    from datetime import time as clock
    from decimal import Decimal

    def value(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, (datetime, date, clock)):
            return v.isoformat()
        if isinstance(v, Decimal):
            return float(v)
        if isinstance(v, (list, tuple)):
            return [value(x) for x in v]
        if isinstance(v, dict):
            return {str(k): value(x) for k, x in v.items()}
        if isinstance(v, bytes):
            return v.hex()
        return v

    return json.dumps([{c: value(v) for c, v in zip(columns, r)} for r in rows], default=str, allow_nan=False)


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


@cli.command("score", **described("score a CSV or Parquet file of texts with the champion"))
@click.option("--input", "input_path", required=True)
@click.option("--text-column", required=True)
@click.option("--output", default=None, help="CSV or Parquet by suffix (default: <input>.scored.<suffix>)")
@with_settings
def cmd_score(settings: Settings, input_path: str, text_column: str, output: str | None) -> int:
    """Every failure is one line on stderr and exit code 2: an analyst fixes the input, not the code."""
    from ml.lake import Lake
    from ml.registry import RegistryError
    from ml.scoring.io import ScoringInputError, score_file

    def warn(message: str) -> None:
        print(f"trustlake score: {message}", file=sys.stderr)

    def terminated(signum, frame) -> None:
        raise KeyboardInterrupt  # unwinds score_file, which then removes its temporary file

    signal.signal(signal.SIGTERM, terminated)
    try:
        out = score_file(Lake(settings.home).models, input_path, text_column, output, warn=warn)
    except (ScoringInputError, RegistryError) as exc:
        warn(str(exc))
        return 2
    except KeyboardInterrupt:
        warn("interrupted; no output written")
        return 130
    except Exception as exc:  # noqa: BLE001  a damaged model or full disk is still one line, not a traceback
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        warn(f"failed: {exc.__class__.__name__}: {detail}; no output written")
        return 2
    print(f"trustlake score: wrote {out}")
    return 0


@cli.command("serve", **described("HTTP scoring service (FastAPI on uvicorn)"))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--max-body-bytes",
    type=int,
    default=None,
    help="larger bodies get 413, chunked ones too (env TRUSTLAKE_SERVE_MAX_BODY_BYTES)",
)
@click.option(
    "--body-timeout",
    type=float,
    default=None,
    help="seconds for a whole body to arrive, else 408 (env TRUSTLAKE_SERVE_BODY_TIMEOUT_S)",
)
@click.option(
    "--max-in-flight",
    type=int,
    default=None,
    help="requests at once; more get 503 + Retry-After (env TRUSTLAKE_SERVE_MAX_IN_FLIGHT)",
)
@click.option(
    "--scoring-threads",
    type=int,
    default=None,
    help="requests scored at once, the rest in flight wait (env TRUSTLAKE_SERVE_SCORING_THREADS)",
)
@click.option(
    "--keep-alive", type=float, default=None, help="idle keep-alive seconds (env TRUSTLAKE_SERVE_KEEP_ALIVE_S)"
)
@with_settings
def cmd_serve(
    settings: Settings,
    host: str,
    port: int,
    max_body_bytes: int | None,
    body_timeout: float | None,
    max_in_flight: int | None,
    scoring_threads: int | None,
    keep_alive: float | None,
) -> int:
    import uvicorn

    from ml.lake import Lake
    from ml.scoring.serving import create_app

    # A flag wins over its TRUSTLAKE_SERVE_* variable (settings.serving); neither set keeps the service's default.
    flags = {
        "max_body_bytes": max_body_bytes,
        "body_timeout_s": body_timeout,
        "max_in_flight": max_in_flight,
        "scoring_threads": scoring_threads,
        "keep_alive_s": keep_alive,
    }
    try:
        limits = replace(settings.serving, **{name: v for name, v in flags.items() if v is not None})
    except ValueError as exc:
        print(f"trustlake serve: {exc}", file=sys.stderr)
        return 2
    app = create_app(Lake(settings.home).models, limits)
    # Above max_in_flight the app answers 503 itself; uvicorn's own limit_concurrency would answer
    # 503 without Retry-After, so it is left unset.
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=limits.keep_alive_s)
    return 0


@cli.group("labels", **described("bring a labelled set: labels import FILE --text-column C --label-column L"))
def labels() -> None:
    pass


@labels.command(
    "import",
    **described(
        "validate the CSV or Parquet FILE of labelled texts and land it as a "
        "reference source; unusable rows are quarantined with their reason"
    ),
)
@click.argument("file")
@click.option("--text-column", required=True)
@click.option("--label-column", required=True)
@click.option("--mapping", default=None, help="YAML of `original label: policy` lines")
@click.option("--source", required=True, help="name of the labelled set (lower-case letters, digits, _)")
@with_settings
def cmd_labels_import(
    settings: Settings, file: str, text_column: str, label_column: str, mapping: str | None, source: str
) -> int:
    """`trustlake labels import FILE ...`: validate a labelled set and land it as a reference source."""
    from datetime import datetime
    from pathlib import Path

    from ml.lake import Lake, write_parquet_atomic
    from ml.reference import LabelImportError, import_labels, read_mapping

    lake = Lake(settings.home)
    try:
        policies = read_mapping(Path(mapping)) if mapping else None
        result = import_labels(Path(file), text_column, label_column, source, policies)
    except LabelImportError as exc:
        print(f"trustlake labels import: {exc}", file=sys.stderr)
        return 2
    for label, n in sorted(result.unmapped_labels.items()):
        print(
            f"trustlake labels import: label {label!r} has no policy in the mapping ({n} rows quarantined)",
            file=sys.stderr,
        )
    if result.rejected.height:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        out = lake.quarantine_dir / "labels" / f"{source}-{stamp}.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        result.rejected.write_csv(out)
        reasons = result.rejected.group_by("reason").len().sort("len", descending=True)
        print(f"trustlake labels import: {result.rejected.height} rows quarantined in {out}:", file=sys.stderr)
        for reason, n in reasons.iter_rows():
            print(f"  {n:>7,}  {reason}", file=sys.stderr)
    if result.good.height == 0:
        print("trustlake labels import: no usable rows; nothing landed", file=sys.stderr)
        return 2
    target = write_parquet_atomic(result.good, lake.reference / source / "part-0.parquet")
    print(
        f"trustlake labels import: {result.good.height:,} labelled texts landed as source {source!r} "
        f"in {target}; the next training run uses them (trustlake run)"
    )
    return 0


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
    from ml.landing import check_landing, claim_file, claims, quarantine_dropped
    from ml.simulator import RAW_TABLES
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
