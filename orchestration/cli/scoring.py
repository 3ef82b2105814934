"""`trustlake score` (a file of texts) and `trustlake serve` (the HTTP service): scoring with the champion."""

from __future__ import annotations

import math
import signal
import sys
from dataclasses import replace

import click

from orchestration.cli.group import cli, described, with_settings
from orchestration.settings import Settings


@cli.command("score", **described("score a CSV or Parquet file of texts with the champion"))
@click.option("--input", "input_path", required=True)
@click.option("--text-column", required=True, help="the text (with --image-column: the caption, may be empty)")
@click.option(
    "--image-column",
    default=None,
    help="a column of image file paths (relative to the input's folder): each row is scored on its text and the "
    "text OCR reads in its image; a bad image is flagged in image_flag with the reason",
)
@click.option("--output", default=None, help="CSV or Parquet by suffix (default: <input>.scored.<suffix>)")
@with_settings
def cmd_score(
    settings: Settings, input_path: str, text_column: str, image_column: str | None, output: str | None
) -> int:
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
        out = score_file(
            Lake(settings.home).models, input_path, text_column, output, warn=warn, image_column=image_column
        )
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


@cli.command("serve", **described("HTTP scoring service (FastAPI on uvicorn, or Ray Serve replicas with --ray)"))
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--ray",
    "on_ray",
    is_flag=True,
    help="run the service as Ray Serve replicas: on a local Ray cluster bound to 127.0.0.1, or on RAY_ADDRESS's",
)
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    default=None,
    help="with --ray: replicas of the service (env TRUSTLAKE_SERVE_NUM_REPLICAS, default 1)",
)
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
@click.option(
    "--canary",
    "canary_version",
    default=None,
    help="a registered model version that answers --canary-share of items, sticky by item id",
)
@click.option(
    "--canary-share",
    type=float,
    default=0.05,
    show_default=True,
    help="the share of items (by a hash of their id) the canary answers",
)
@with_settings
def cmd_serve(
    settings: Settings,
    host: str,
    port: int,
    on_ray: bool,
    replicas: int | None,
    max_body_bytes: int | None,
    body_timeout: float | None,
    max_in_flight: int | None,
    scoring_threads: int | None,
    keep_alive: float | None,
    canary_version: str | None,
    canary_share: float,
) -> int:
    if replicas is not None and not on_ray:
        print("trustlake serve: --replicas needs --ray (uvicorn runs one copy of the service)", file=sys.stderr)
        return 2
    import uvicorn

    from ml.lake import Lake
    from ml.registry import RegistryError
    from ml.scoring.serving import create_app
    from ml.scoring.traffic import Canary

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
    try:
        canary = Canary(canary_version, canary_share) if canary_version else None
    except ValueError as exc:
        print(f"trustlake serve: --canary-share: {exc}", file=sys.stderr)
        return 2
    lake = Lake(settings.home)
    if on_ray:
        return serve_on_ray(settings, host, port, replicas, limits, canary, scoring_threads is not None)
    # Image items are matched against the hash banks the pipeline keeps in the lake, when there are any.
    try:
        app = create_app(lake.models, limits, banks_dir=lake.hash_banks, canary=canary)
    except RegistryError as exc:
        print(f"trustlake serve: --canary {canary_version}: {exc}", file=sys.stderr)
        return 2
    if canary:
        print(f"trustlake serve: canary {canary.version} answers {canary.share:.1%} of items (by item id)")
    # Above max_in_flight the app answers 503 itself; uvicorn's own limit_concurrency would answer
    # 503 without Retry-After, so it is left unset.
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=limits.keep_alive_s)
    return 0


def serve_on_ray(
    settings: Settings, host: str, port: int, replicas: int | None, limits, canary, threads_given: bool
) -> int:
    """`trustlake serve --ray`: the same app as Ray Serve replicas until SIGTERM or Ctrl-C, then Serve and
    the Ray it started are stopped (orchestration/ray_serving.py). A demand the cluster cannot place,
    a bad setting or an unknown canary is one line and exit code 2."""
    import threading

    from ml.lake import Lake
    from ml.registry import RegistryError
    from ml.scoring.serving import load_canary
    from orchestration.ray_serving import ServeRefused, first_line, serving_on_ray
    from orchestration.settings import SERVING

    try:
        config = settings.replicas if replicas is None else replace(settings.replicas, num_replicas=replicas)
    except ValueError as exc:
        print(f"trustlake serve: {exc}", file=sys.stderr)
        return 2
    if not threads_given and "scoring_threads" not in SERVING.values(settings.environ):
        # A replica's CPUs, not the machine's: two replicas on two cores would otherwise run four threads.
        limits = replace(limits, scoring_threads=max(1, math.ceil(config.cpus_per_replica)))
    lake = Lake(settings.home)
    if canary:
        try:  # here, once, so an unknown canary is one line rather than every replica failing to start
            load_canary(lake.models, canary)
        except RegistryError as exc:
            print(f"trustlake serve: --canary {canary.version}: {exc}", file=sys.stderr)
            return 2
    from ml.scoring.replicas import scoring_application

    application = scoring_application(lake.models, limits, config, banks_dir=lake.hash_banks, canary=canary)
    stop = threading.Event()

    def stopping(signum, frame) -> None:
        stop.set()

    try:
        with serving_on_ray(settings, application, config, host, port, limits.keep_alive_s) as cluster:
            # Installed once Ray is up (ray.init sets its own SIGTERM handler); before, a signal stops the
            # start-up and the block still stops what it started.
            signal.signal(signal.SIGTERM, stopping)
            signal.signal(signal.SIGINT, stopping)
            print(
                f"trustlake serve: {config.num_replicas} replica(s) x {config.cpus_per_replica:g} CPUs on {cluster}, "
                f"http://{host}:{port}"
                + (f"; canary {canary.version} answers {canary.share:.1%} of items" if canary else ""),
                flush=True,
            )
            while not stop.wait(1.0):
                pass
            print("trustlake serve: stopping Ray Serve", flush=True)
    except ServeRefused as exc:
        print(f"trustlake serve: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, SystemExit):  # a signal during start-up: what started is stopped already
        print("trustlake serve: interrupted while starting; stopped", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001  a replica that cannot start is one line, the rest is in Ray's logs
        print(f"trustlake serve: Ray Serve failed: {first_line(exc)}", file=sys.stderr)
        return 2
    print("trustlake serve: stopped", flush=True)
    return 0
