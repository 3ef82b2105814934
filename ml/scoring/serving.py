"""The online scoring service: FastAPI, the same scores and actions as the CLI and batch paths.

`POST /v1/score` scores up to MAX_ITEMS texts or images per request; `GET /health`, `GET /v1/model`,
`GET /v1/stats`. The champion is reloaded when the registry file changes, so a promotion or rollback
takes effect without a restart. Input errors are 4xx with a message that says what is wrong.

A canary (`Canary`, ml/scoring/traffic.py) answers a sticky share of items, chosen by item id; every
result names the version that answered it, and /v1/stats counts requests, items and latencies per
version, so the canary can be judged beside the champion while it runs.

The service protects itself (`ServingLimits`): a body is counted as it streams in, so a
chunked body over the limit is refused with 413 without being read to the end; a body that
does not arrive within the body timeout is cut off with 408; more than `max_in_flight`
requests at once are answered 503 with Retry-After instead of queueing without end. A loaded
champion keeps serving when the registry becomes unreadable or a newly promoted model cannot
be loaded; `/health` then says `degraded`, and is 503 only when no model can be served.

Requests that arrive together are scored together (ml/scoring/batching.py): a request waits at
most `batch_wait_ms` for others, their items go through one `score_frame` call in a pool of
`scoring_threads` threads, off the event loop, and each request is answered its own rows. Image
items are read (decoded, OCR, PDQ, bank matches) in their own bounded pool first
(ml/scoring/images.py), then scored as their caption plus the text read in them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import polars as pl
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, model_validator

from ml.evaluation.results import as_json
from ml.images.decode import DecodeLimits
from ml.matching.bank_matches import BANK_FEATURES, NO_PDQ_MATCH
from ml.registry import Registry, RegistryEntry, RegistryError
from ml.scoring import Champion, load_model, score_frame
from ml.scoring.batching import MicroBatcher
from ml.scoring.images import BankSource, ImageRead, ImageReader, ImageRefused
from ml.scoring.traffic import Canary, TrafficStats
from ml.training.artifacts import PROBA_COLUMNS

MAX_ITEMS = 256
MAX_TEXT_CHARS = 10_000
# Counts beyond this are not platform data; the bound keeps every context column a plain Int64.
MAX_COUNT = 10**12
# Paths that never count against max_in_flight: a busy server is not an unhealthy one.
UNLIMITED_PATHS = frozenset({"/health"})

logger = logging.getLogger(__name__)


def _usable_cpus() -> int:
    """the CPUs this process may use"""
    if hasattr(os, "sched_getaffinity"):  # the CPUs this process may run on (cgroups, taskset)
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class ServingLimits:
    """What the service accepts before it refuses work; `trustlake serve` fills it from settings.

    `keep_alive_s` is applied by the HTTP server that runs the app (uvicorn in `trustlake serve`; Ray
    Serve's proxy, in whole seconds, with `--ray`).
    """

    max_body_bytes: int = 4 * 1024 * 1024
    body_timeout_s: float = 10.0  # the whole body must arrive within this many seconds
    # Requests being read or scored at once; more get 503. Requests beyond the scoring threads wait to
    # be micro-batched, so this also bounds the batch size under load: 16 capped a 2-core server at
    # ~180 requests/s (bench/scoring.py on a shared machine), well below what it scores in batches.
    max_in_flight: int = 64
    # Scoring is CPU-bound: more threads than cores only add latency, so the requests in flight
    # beyond this wait their turn (a wait bounded by max_in_flight), batched together.
    scoring_threads: int = field(default_factory=_usable_cpus)
    batch_max_items: int = 64  # items scored in one call at most (ml/scoring/batching.py)
    batch_wait_ms: float = 2.0  # how long a request waits for others to be scored with it, at most
    # Images (ml/scoring/images.py): read in their own pool, so a burst of them never holds up text.
    image_threads: int = 1
    image_max_waiting: int = 8  # images queued or being read at once; a request beyond it gets 503
    image_timeout_s: float = 10.0  # an image request not read within this gets 504
    image_max_bytes: int = 3 * 1024 * 1024  # an image's bytes (base64 in a body of max_body_bytes)
    retry_after_s: int = 1
    keep_alive_s: float = 5.0

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "body_timeout_s",
            "max_in_flight",
            "scoring_threads",
            "batch_max_items",
            "batch_wait_ms",
            "image_threads",
            "image_max_waiting",
            "image_timeout_s",
            "image_max_bytes",
            "retry_after_s",
            "keep_alive_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"serving limit {name} must be positive, got {getattr(self, name)!r}")


Count = Annotated[StrictInt, Field(ge=0, le=MAX_COUNT)]


class Context(BaseModel):
    """Platform context a caller may know about the item; everything is optional."""

    model_config = ConfigDict(extra="forbid")
    surface: StrictStr | None = None
    # Strict floats still accept JSON integers; 1e999 (infinity) and NaN are refused by name.
    account_age_days: Annotated[float, Field(strict=True, ge=0, le=MAX_COUNT, allow_inf_nan=False)] | None = None
    follower_count: Count | None = None
    verified: StrictBool | None = None
    prior_posts: Count | None = None
    prior_reports_received: Count | None = None
    prior_enforcements: Count | None = None
    component_size: Annotated[StrictInt, Field(ge=1, le=MAX_COUNT)] | None = None
    # The item's closest hash-bank matches (ml.matching.bank_matches BANK_FEATURES): the server fills them
    # for an image item from its own matching when banks are loaded; a caller that matched may pass them.
    bank_pdq_distance: Annotated[StrictInt, Field(ge=0, le=NO_PDQ_MATCH)] | None = None
    bank_text_jaccard: Annotated[float, Field(strict=True, ge=0, le=1, allow_inf_nan=False)] | None = None


class Item(BaseModel):
    """A text, an image (base64 of the file's bytes) with its caption in `text`, or an image alone."""

    model_config = ConfigDict(extra="forbid")
    id: StrictStr | StrictInt | None = None
    text: StrictStr | None = Field(None, max_length=MAX_TEXT_CHARS)
    image: StrictStr | None = None
    context: Context | None = None

    @model_validator(mode="after")
    def _has_content(self) -> Item:
        if self.text is None and self.image is None:
            raise ValueError("an item needs `text`, an `image` (base64), or both")
        return self


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Item] = Field(min_length=1, max_length=MAX_ITEMS)


@dataclass(frozen=True)
class Served:
    """The champion being served and its registry entry as of when it was loaded."""

    champion: Champion
    entry: RegistryEntry


class ChampionCache:
    """The champion, reloaded when registry.json changes (a stat per request).

    Once a champion is loaded it is only replaced by another champion that loads: a damaged
    registry, a missing artifact or a model that fails to load leaves it serving and is
    reported in `problem`. A failed reload is retried when the registry changes again, or
    after RETRY_S (an artifact may be restored without touching the registry).
    """

    RETRY_S = 5.0

    def __init__(self, models_dir: Path):
        self.registry = Registry(models_dir)
        self._lock = threading.Lock()
        self._stamp: tuple | None = ("never read",)
        self._served: Served | None = None
        self.problem: str | None = None
        self._retry_at = 0.0

    def _registry_stamp(self) -> tuple | None:
        try:
            st = self.registry.path.stat()
        except OSError:
            return None
        # The inode changes on every atomic replace, even within one mtime tick.
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _stale(self, stamp: tuple | None) -> bool:
        if stamp != self._stamp:
            return True
        return self.problem is not None and time.monotonic() >= self._retry_at

    def get(self) -> Served:
        stamp = self._registry_stamp()
        # While one request reloads, the others keep being served by the loaded champion; with none
        # loaded yet, they wait for the first load (its stamp is already set, so it looks fresh).
        first = self._served is None
        if (first or self._stale(stamp)) and self._lock.acquire(blocking=first):
            try:
                if self._stale(stamp):
                    self._reload(stamp)
            finally:
                self._lock.release()
        served = self._served
        if served is None:
            raise RegistryError(self.problem or "no champion model is loaded")
        return served

    def _reload(self, stamp: tuple | None) -> None:
        self._stamp = stamp
        try:
            entry = self.registry.champion()
            if entry is None:
                raise RegistryError(f"no champion in {self.registry.dir}: run `trustlake run` (or promote a model)")
            served = self._served
            if served is None or served.champion.version != entry.version:
                served = Served(load_model(self.registry.artifact_dir(entry)), entry)
            self._served = Served(served.champion, entry)
            self.problem = None
        except Exception as exc:  # whatever broke, a loaded champion keeps serving; the reason is reported
            self.problem = str(exc) if isinstance(exc, RegistryError) else f"cannot load the champion: {exc!r}"
            self._retry_at = time.monotonic() + self.RETRY_S
            logger.warning(
                "model registry: %s%s",
                self.problem,
                "; still serving " + self._served.champion.version if self._served else "",
                exc_info=not isinstance(exc, RegistryError),
            )


@dataclass
class GuardState:
    """What the request guard is doing right now and has refused so far (shown by /health)."""

    in_flight: int = 0
    refused: dict[int, int] = field(default_factory=lambda: {408: 0, 413: 0, 503: 0})

    @contextmanager
    def set_aside(self):
        """A request inside the guard stops counting against max_in_flight meanwhile: an image request
        waiting for its images, bounded by the image pool's own limit, must not crowd out text."""
        self.in_flight -= 1
        try:
            yield
        finally:
            self.in_flight += 1


class RequestGuard:
    """ASGI middleware bounding each request's body size and read time and the requests in flight.

    Pure ASGI rather than an `@app.middleware("http")` function: it sees the body as it streams
    in through `receive`, which is the only place a chunked body's size can be counted.
    """

    def __init__(self, app, limits: ServingLimits, state: GuardState):
        self.app, self.limits, self.state = app, limits, state

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits, state = self.limits, self.state
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"").strip()
        if length.isdigit() and int(length) > limits.max_body_bytes:
            await self._refuse(send, 413, f"request body over {limits.max_body_bytes} bytes")
            return
        limited = scope["path"] not in UNLIMITED_PATHS
        if limited and state.in_flight >= limits.max_in_flight:
            # An unread body of declared length is skipped by the server and the connection kept;
            # one of unknown length (chunked) is not worth reading, so that connection is closed.
            await self._refuse(
                send,
                503,
                f"server busy: {limits.max_in_flight} requests in flight; retry later",
                extra=[(b"retry-after", str(limits.retry_after_s).encode())],
                close=b"transfer-encoding" in headers,
            )
            return
        if limited:
            state.in_flight += 1
        try:
            body = await self._read_body(receive, send)
            if body is not None:
                await self.app(scope, _replay(body, receive), send)
        finally:
            if limited:
                state.in_flight -= 1

    async def _read_body(self, receive, send) -> bytes | None:
        """The whole body, or None once the client was answered 408/413 or went away."""
        limits = self.limits
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(limits.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limits.max_body_bytes:
                        await self._refuse(send, 413, f"request body over {limits.max_body_bytes} bytes")
                        return None
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            await self._refuse(
                send, 408, f"request body not received within {limits.body_timeout_s:g} s ({size} bytes arrived)"
            )
            return None

    async def _refuse(self, send, status: int, error: str, extra: list | None = None, close: bool = True) -> None:
        self.state.refused[status] += 1
        body = json.dumps({"error": error}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(extra or [])]
        if close:
            # The rest of the body is never read: closing is the only way to stop the client sending it.
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


REPLICA_HEADER = b"x-trustlake-replica"


class NamedReplica:
    """ASGI middleware naming the replica that answered in every response, refusals included
    (`X-Trustlake-Replica`): under Ray Serve (ml/scoring/replicas.py) a client sees which of the
    replicas behind the proxy served it."""

    def __init__(self, app, replica: str):
        self.app, self.name = app, replica.encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def named(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (REPLICA_HEADER, self.name)]}
            await send(message)

        await self.app(scope, receive, named)


def _replay(body: bytes, receive):
    """A `receive` that hands the app the body already read, then the client's later messages."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay():
        return pending.pop() if pending else await receive()

    return replay


def with_read(item: Item, read: ImageRead) -> Item:
    """An image item as it is scored: its caption then the text read in its image and, when the banks were
    searched and the caller sent context, the risk model's bank features as batch scoring builds them (the
    image by PDQ, the text read in it; the reader computes them: ImageRead.bank_features). The risk model
    reads an item's context only when it has some (ml.training.scorer.has_context)."""
    update: dict[str, Any] = {"text": " ".join(t for t in (item.text, read.text) if t)}
    if read.bank_features is not None and item.context is not None:
        update["context"] = item.context.model_copy(update=dict(zip(BANK_FEATURES, read.bank_features)))
    return item.model_copy(update=update)


def items_frame(items: list[Item]) -> pl.DataFrame:
    rows = []
    for item in items:
        ctx = item.context.model_dump(exclude_none=True) if item.context else {}
        if "verified" in ctx:
            ctx["verified"] = int(ctx["verified"])
        rows.append({"text": item.text or "", **ctx})
    return pl.from_dicts(rows, infer_schema_length=None)


def load_canary(models_dir: Path, canary: Canary) -> Champion:
    """The canary's model, loaded once (a canary is one fixed version; the champion beside it may
    change). RegistryError with what to do when it is unknown, the champion itself, or unloadable."""
    registry = Registry(Path(models_dir))
    entry = registry.get(canary.version)
    champion = registry.champion()
    if champion is not None and champion.version == canary.version:
        raise RegistryError(f"{canary.version} is the champion already: a canary must be another version")
    try:
        return load_model(registry.artifact_dir(entry))
    except RegistryError:
        raise
    except Exception as exc:
        raise RegistryError(f"cannot load the canary {canary.version}: {exc!r}") from exc


CANARY = "canary"  # the micro-batcher's key for the canary's items (the champion's is None)


def create_app(
    models_dir: Path,
    limits: ServingLimits | None = None,
    banks_dir: Path | None = None,
    ocr=None,
    canary: Canary | None = None,
    replica: str | None = None,
) -> FastAPI:
    """The service for the registry in `models_dir`; image items are matched against the hash-bank
    table under `banks_dir` when it exists; `canary` answers its share of items (`load_canary` raises
    RegistryError here when it cannot). `replica` names this copy of the service in every response and
    in /v1/stats (Ray Serve replicas). `ocr` replaces the OCR engine (tests only)."""
    limits = limits or ServingLimits()
    app = FastAPI(title="trustlake scoring", version="1")
    cache = ChampionCache(Path(models_dir))
    canary_model = load_canary(Path(models_dir), canary) if canary else None
    traffic = TrafficStats()
    guard = GuardState()
    app.add_middleware(RequestGuard, limits=limits, state=guard)
    if replica is not None:
        app.add_middleware(NamedReplica, replica=replica)  # outside the guard: its refusals are named too

    def score_requests(key, requests: list[list[Item]]) -> list[dict[str, Any]]:
        """In a scoring thread: the items of every request of a micro-batch that one model answers (the
        champion, or the canary for key CANARY) in one `score_frame` call, answered to each request in
        its own order."""
        champion = canary_model if key == CANARY else cache.get().champion
        items = [item for request in requests for item in request]
        scored = score_frame(champion, items_frame(items)).iter_rows(named=True)
        answers = []
        for request in requests:
            results = [
                {
                    "id": item.id,
                    **{c: row[c] for c in PROBA_COLUMNS},
                    "action": row["action"],
                    "model_version": row["model_version"],
                }
                for item, row in zip(request, scored)
            ]
            answers.append({"model_version": champion.version, "results": results})
        return answers

    batcher = MicroBatcher(score_requests, limits.scoring_threads, limits.batch_max_items, limits.batch_wait_ms / 1e3)
    app.state.batcher = batcher
    app.router.on_shutdown.append(batcher.close)
    reader = ImageReader(
        limits.image_threads,
        limits.image_max_waiting,
        limits.image_timeout_s,
        DecodeLimits(max_bytes=limits.image_max_bytes),
        BankSource(banks_dir),
        limits.retry_after_s,
        ocr,
    )
    app.router.on_shutdown.append(reader.close)

    @app.exception_handler(ImageRefused)
    async def _image_refused(request: Request, exc: ImageRefused):
        headers = {"retry-after": str(exc.retry_after_s)} if exc.retry_after_s else None
        return JSONResponse(status_code=exc.status, content=exc.body, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()]
        return JSONResponse(status_code=422, content={"error": "invalid request", "problems": problems})

    @app.get("/health")
    def health() -> JSONResponse:
        load = {
            "in_flight": guard.in_flight,
            "max_in_flight": limits.max_in_flight,
            "scoring_threads": limits.scoring_threads,
            "batching": batcher.stats.as_dict(),
            "refused": {str(k): v for k, v in guard.refused.items()},
        }
        try:
            served = cache.get()
        except RegistryError as exc:
            return JSONResponse(status_code=503, content={"status": "no_model", "detail": str(exc), **load})
        body = {"status": "ok", "model_version": served.champion.version, **load}
        if cache.problem:
            body.update(status="degraded", detail=cache.problem)
        return JSONResponse(content=body)

    @app.get("/v1/stats")
    def stats() -> dict[str, Any]:
        return {
            "replica": replica,
            "canary": {"version": canary.version, "share": canary.share} if canary else None,
            "versions": traffic.as_dict(),
            "batching": batcher.stats.as_dict(),
        }

    @app.get("/v1/model")
    def model() -> dict[str, Any]:
        try:
            served = cache.get()
        except RegistryError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        champion, entry = served.champion, served.entry
        return {
            "model_version": champion.version,
            "kind": entry.kind,
            "dataset_version": entry.dataset_version,
            "code_version": entry.code_version,
            "metrics": as_json(entry.metrics),
            "operating_points": champion.thresholds,
            "max_items": MAX_ITEMS,
            "max_text_chars": MAX_TEXT_CHARS,
            "max_body_bytes": limits.max_body_bytes,
        }

    async def answered(items: list[Item]) -> dict[str, Any]:
        """The items' results in order: the canary's share scored by the canary, the rest by the champion."""
        routed = canary.routes([i.id for i in items], [i.text or "" for i in items]) if canary else None
        if routed is None or not routed.any():
            return await batcher.submit(None, items, len(items))
        if routed.all():
            return await batcher.submit(CANARY, items, len(items))
        ours = [item for item, c in zip(items, routed) if not c]
        theirs = [item for item, c in zip(items, routed) if c]
        champion, canary_answer = await asyncio.gather(
            batcher.submit(None, ours, len(ours)), batcher.submit(CANARY, theirs, len(theirs))
        )
        from_champion, from_canary = iter(champion["results"]), iter(canary_answer["results"])
        results = [next(from_canary) if c else next(from_champion) for c in routed]
        return {"model_version": champion["model_version"], "results": results}

    @app.post("/v1/score")
    async def score(request: ScoreRequest) -> dict[str, Any]:
        started = time.perf_counter()
        items = request.items
        images = {
            i: (reader.decode_base64(i, item.image), item.text or "")
            for i, item in enumerate(items)
            if item.image is not None
        }
        reads = {}
        if images:
            with guard.set_aside():
                reads = await reader.read(images)
        if reads:  # an image is scored as its caption and the text read in it, with what it matched
            items = [with_read(item, reads[i]) if i in reads else item for i, item in enumerate(items)]
        try:
            answer = await answered(items)
        except RegistryError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        for i, read in reads.items():
            answer["results"][i].update(image=read.facts(), bank_matches=read.matches)
        by_version: dict[str, int] = {}
        for result in answer["results"]:
            by_version[result["model_version"]] = by_version.get(result["model_version"], 0) + 1
        traffic.record(by_version, (time.perf_counter() - started) * 1e3)
        return answer

    return app
