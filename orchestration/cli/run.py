"""`trustlake run`: launch ingest_job, retrain_job and score_job over the simulated window, then print
what the run built and how the models did; `launch_jobs` is also how `trustlake land` launches."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import click

from orchestration.cli.group import _prepare, cli, described, say, with_settings
from orchestration.settings import Settings

if TYPE_CHECKING:  # launch.py imports Dagster: `trustlake --help` must not pay for it
    from orchestration.launch import Launcher, RunOutcome


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
    window = [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    # Days named on the command line are rebuilt; otherwise only what is stale is (orchestration/freshness.py).
    rebuild = first_day is not None or days is not None
    started = time.perf_counter()
    started_at = datetime.now(UTC).replace(tzinfo=None)  # naive UTC, as image_text's read_at
    evaluations: dict = {}

    def jobs(launcher: Launcher) -> int:
        ingest = window if rebuild else stale_days(launcher, "ingest_job", window, settings)
        if not ingest:
            say(f"trustlake: ingest_job: all {len(window)} days ({first} .. {last}) landed and modelled: nothing to do")
        for a, b in day_ranges(ingest, window):
            n = window.index(b) - window.index(a) + 1
            say(f"trustlake: ingest_job: simulating and landing {n} day(s) ({a} .. {b}), building the warehouse")
            if not _succeeded(launcher.run("ingest_job", partition_range=(a, b))):
                return 1
        if skip_training:
            return 0
        stale = stale_assets(launcher, "retrain_job", settings=settings)
        if not stale:
            say("trustlake: retrain_job: every model is up to date (no input or code changed since it was built)")
        else:
            say(
                f"trustlake: retrain_job ({len(stale)} stale asset(s); first: {next(iter(stale.values()))}): features, "
                "label issues, the content classifier, the risk model (Ray) and the baseline, judged on text and "
                "sources they never saw; promotion if every gate passes"
            )
            outcome = launcher.run(
                "retrain_job", asset_selection=sorted(stale), tags={"trustlake/stale": str(len(stale))}
            )
            if not _succeeded(outcome):
                return 1
        evaluations.update(load_evaluations(launcher.instance, settings))
        if Registry(lake.models).champion() is None:
            # Candidates failing their gates is an outcome, not a crash: say so and stop here.
            say("trustlake: no champion (no candidate passed its quality gates): skipping scoring")
            return 0
        score = stale_days(launcher, "score_job", window, settings)
        if not score:
            say(f"trustlake: score_job: all {len(window)} days scored by the champion and monitored: nothing to do")
        for a, b in day_ranges(score, window):
            n = window.index(b) - window.index(a) + 1
            say(f"trustlake: score_job: scoring {n} day(s) ({a} .. {b}) with the champion, building the review queue")
            if not _succeeded(launcher.run("score_job", partition_range=(a, b))):
                return 1
        return 0

    code = launch_jobs("run", settings, verbose=verbose, jobs=jobs)
    if code == 0:
        print_summary(settings, time.perf_counter() - started, evaluations, started_at)
    return code


def stale_assets(launcher: Launcher, job: str, days: list[str] | None = None, settings: Settings | None = None) -> dict:
    """Stale (asset, partition) cells of `job` and why (orchestration/freshness.py)."""
    from ml.lake import Lake
    from orchestration.freshness import Freshness
    from orchestration.jobs import JOB_GROUPS

    graph = launcher.asset_graph
    keys = {k for k in graph.materializable_asset_keys if graph.get(k).group_name in JOB_GROUPS[job]}
    external = external_versions(Lake(settings.home), settings) if settings is not None else {}
    reasons = Freshness(launcher.instance, graph, external).stale(keys, days)
    return {cell: why for cell, why in reasons.items()} if days else {key: why for (key, _), why in reasons.items()}


def external_versions(lake, settings: Settings) -> dict:
    """The current version of what assets read from outside the runs: the corpora and imported label sets
    (reference_labels), the banks `trustlake bank import` kept (hash_banks), the registry's champion and
    shadow as `trustlake models` may have changed them (deployed_model), and the audit log those commands
    append to (model_launch_log)."""
    import dagster as dg

    from ml.deployment import deployed_version
    from ml.matching.bank_sources import imports_version
    from ml.reference import reference_inputs_version
    from ml.registry import Registry

    registry = Registry(lake.models)
    champion, shadow = registry.champion(), registry.shadow()
    return {
        dg.AssetKey("reference_labels"): reference_inputs_version(settings.corpora, lake),
        dg.AssetKey("hash_banks"): imports_version(lake),
        dg.AssetKey("deployed_model"): deployed_version(
            champion.version if champion else None, shadow.version if shadow else None
        ),
        dg.AssetKey("model_launch_log"): registry.audit.fingerprint(),
    }


def stale_days(launcher: Launcher, job: str, window: list[str], settings: Settings) -> list[str]:
    from orchestration.freshness import stale_partitions

    return stale_partitions(stale_assets(launcher, job, window, settings), window)


def day_ranges(days: list[str], window: list[str]) -> list[tuple[str, str]]:
    from orchestration.freshness import ranges

    return ranges(days, window)


def _succeeded(outcome: RunOutcome) -> bool:
    """Print a run's failed checks (gates are outcomes, not failures) and, if it failed, why."""
    for check in outcome.failed_checks:
        say(f"  {check.describe()}")
    for line in outcome.failure_lines():
        print(f"trustlake: {line}", file=sys.stderr, flush=True)
    return outcome.success


EVALUATIONS = ("content_classifier_evaluation", "text_evaluation", "risk_model_evaluation")


def load_evaluations(instance, settings: Settings) -> dict:
    """The latest materialization of each evaluation, read back through the code location's IO manager,
    when it belongs to the retraining that produced the current pair (an evaluation that failed in that
    run is left out, never an older one)."""
    import logging

    import dagster as dg

    from orchestration.definitions import io_manager

    manager = io_manager(settings).create_io_manager(dg.build_init_resource_context(instance=instance))
    out = {}
    logging.disable(logging.INFO)  # the IO manager's "Loading file from ..." lines
    try:
        pair = instance.get_latest_materialization_event(dg.AssetKey("risk_model_evaluation"))
        for key in EVALUATIONS:
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            if event is not None and pair is not None and event.run_id == pair.run_id:
                out[key] = manager.load_input(dg.build_input_context(asset_key=dg.AssetKey(key), instance=instance))
    finally:
        logging.disable(logging.NOTSET)
    return out


def print_summary(settings: Settings, seconds: float, models: dict, started_at: datetime | None = None) -> None:
    from ml.lake import Lake
    from ml.raw.contracts import RAW_TABLES
    from ml.warehouse import query

    lake = Lake(settings.home)
    print(f"\n== trustlake run finished in {seconds:.0f} s")
    print(f"raw lake   {lake.raw}")
    for table in RAW_TABLES:
        cols, rows = query_lake_count(lake, table)
        print(f"  {table:<12} {rows:>10,} rows in {cols} daily partitions")
    print_images(lake, started_at)
    print(f"warehouse  {lake.warehouse_db}")
    print(f"marts      {lake.marts_db}  (read-only copy for analysts)")
    _, rows = query(lake.marts_db, "select table_name from information_schema.tables order by 1")
    for (name,) in rows:
        n = query(lake.marts_db, f'select count(*) from "{name}"')[1][0][0]
        print(f"  {name:<24} {n:>10,} rows")
    if models:
        print_model_report(models)
        print_champion(lake)
        if "risk_model_evaluation" in models:
            print_launch(lake, models["risk_model_evaluation"].version)
    print('\nnext: make ui  (Dagster UI)   |   trustlake sql "select * from mart_appeals"')


def print_images(lake, started_at: datetime | None) -> None:
    """How many distinct image files OCR has read, and how many of them this run read: an image is read
    once ever (image_text), so a run over days already landed reads none."""
    from ml.features.images import image_text_table

    table = image_text_table(lake)
    now = int((table["read_at"] >= started_at).sum()) if started_at is not None else 0
    print(
        f"images     {table.height:,} distinct image files read (OCR and PDQ); {now:,} read by this run, "
        f"{table.height - now:,} already read before it"
    )


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
        name = f"classifier alone {pair.version} (in place of {pair.instead_of})" if pair.instead_of else pair.version
        print(
            f"  {name}: simulated test macro PR-AUC {f(pair.test.macro_pr_auc).strip()} "
            f"on {pair.test.rows} items (classifier alone {f(pair.classifier_alone_test.macro_pr_auc).strip()}), "
            f"QA gold {qa}, gates " + ("passed" if pair.gates_passed else "FAILED: " + ", ".join(pair.failed_gates))
        )
        if pair.gain is not None and pair.campaign_gain is not None:
            print(
                f"  pair minus classifier alone: {pair.gain.describe('test items')}; "
                f"{pair.campaign_gain.describe('campaign items')}"
                + (": not significant, so the classifier is deployed alone" if pair.instead_of else "")
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


def print_launch(lake, version: str) -> None:
    """The evaluated pair's launch: its risk tier, where the decision stands, the report, and the impact per policy."""
    from ml.launch.impact import read_impact
    from ml.registry import Registry, RegistryError

    try:
        registry = Registry(lake.models)
        entry, shadow = registry.get(version), registry.shadow()
    except RegistryError as exc:
        print(f"launch     unknown: {exc}")
        return
    impact = read_impact(lake.models, version)
    if impact is None:
        return
    launch = entry.launch
    state = (
        "champion"
        if entry.status == "champion"
        else f"approval {launch.approval.replace('_', ' ')}"
        if launch is not None
        else "not deployed (gates)"
    )
    print(f"launch     {version}: {impact.risk_tier} risk, {state}" + (f"; shadow {shadow.version}" if shadow else ""))
    for reason in impact.reasons:
        print(f"  beyond the bounds: {reason}")
    report = lake.models / version / "launch" / "report.md"
    print(f"  report {report}" + ("" if report.exists() else " (rendered by launch_report in score_job)"))
    print(f"  backtest {impact.first_day} .. {impact.last_day}, items a day (champion -> candidate):")
    for r in impact.by_policy().iter_rows(named=True):
        print(
            f"  {r['policy']:<12} removals {r['champion_remove']:6.1f} -> {r['candidate_remove']:6.1f}   "
            f"reviews {r['champion_review']:6.1f} -> {r['candidate_review']:6.1f}"
        )


def query_lake_count(lake, table: str) -> tuple[int, int]:
    import duckdb

    parts = lake.partitions(table)
    with duckdb.connect() as con:
        n = con.execute(f"select count(*) from read_parquet('{lake.table_glob(table)}')").fetchall()[0][0]
    return len(parts), int(n)
