"""The online scoring service: FastAPI, the same scores and actions as the CLI and batch paths.

`POST /v1/score` scores up to MAX_ITEMS texts per request; `GET /health`, `GET /v1/model`.
The champion is reloaded when the registry file changes, so a promotion or rollback takes
effect without a restart. Input errors are 4xx with a message that says what is wrong.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import polars as pl
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from ml.registry import Registry, RegistryError
from ml.scoring import Champion, load_model, score_frame
from ml.training.artifacts import PROBA_COLUMNS

MAX_ITEMS = 256
MAX_TEXT_CHARS = 10_000
MAX_BODY_BYTES = 4 * 1024 * 1024


class Context(BaseModel):
    """Platform context a caller may know about the item; everything is optional."""

    model_config = ConfigDict(extra="forbid")
    surface: StrictStr | None = None
    account_age_days: StrictFloat | StrictInt | None = Field(default=None, ge=0)
    follower_count: StrictInt | None = Field(default=None, ge=0)
    verified: StrictBool | None = None
    prior_posts: StrictInt | None = Field(default=None, ge=0)
    prior_reports_received: StrictInt | None = Field(default=None, ge=0)
    prior_enforcements: StrictInt | None = Field(default=None, ge=0)
    component_size: StrictInt | None = Field(default=None, ge=1)


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: StrictStr | StrictInt | None = None
    text: StrictStr = Field(max_length=MAX_TEXT_CHARS)
    context: Context | None = None


class ScoreRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[Item] = Field(min_length=1, max_length=MAX_ITEMS)


class ChampionCache:
    """The champion, reloaded when registry.json changes (a stat per request)."""

    def __init__(self, models_dir: Path):
        self.registry = Registry(models_dir)
        self._lock = threading.Lock()
        self._stamp: float | None = None
        self._champion: Champion | None = None

    def get(self) -> Champion:
        path = self.registry.path
        stamp = path.stat().st_mtime_ns if path.exists() else None
        with self._lock:
            if stamp != self._stamp or self._champion is None:
                entry = self.registry.champion()
                if entry is None:
                    raise RegistryError("no champion model is deployed")
                if self._champion is None or self._champion.version != entry["version"]:
                    self._champion = load_model(Path(entry["path"]))
                self._stamp = stamp
            return self._champion


def items_frame(items: list[Item]) -> pl.DataFrame:
    rows = []
    for item in items:
        ctx = item.context.model_dump(exclude_none=True) if item.context else {}
        if "verified" in ctx:
            ctx["verified"] = int(ctx["verified"])
        rows.append({"text": item.text, **ctx})
    return pl.from_dicts(rows, infer_schema_length=None)


def create_app(models_dir: Path) -> FastAPI:
    app = FastAPI(title="trustlake scoring", version="1")
    cache = ChampionCache(Path(models_dir))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        problems = [f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in exc.errors()]
        return JSONResponse(status_code=422, content={"error": "invalid request", "problems": problems})

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return JSONResponse(status_code=413, content={"error": f"request body over {MAX_BODY_BYTES} bytes"})
        return await call_next(request)

    @app.get("/health")
    def health() -> dict[str, Any]:
        try:
            version = cache.get().version
        except RegistryError as exc:
            return {"status": "no_model", "detail": str(exc)}
        return {"status": "ok", "model_version": version}

    @app.get("/v1/model")
    def model() -> dict[str, Any]:
        try:
            champion = cache.get()
        except RegistryError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        entry = cache.registry.get(champion.version)
        return {"model_version": champion.version, "kind": entry["kind"], "dataset_version": entry["dataset_version"],
                "code_version": entry["code_version"], "metrics": entry["metrics"],
                "operating_points": champion.thresholds, "max_items": MAX_ITEMS, "max_text_chars": MAX_TEXT_CHARS}

    @app.post("/v1/score")
    def score(request: ScoreRequest) -> dict[str, Any]:
        try:
            champion = cache.get()
        except RegistryError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from exc
        scored = score_frame(champion, items_frame(request.items))
        results = []
        for item, row in zip(request.items, scored.iter_rows(named=True)):
            results.append({"id": item.id, **{c: row[c] for c in PROBA_COLUMNS}, "action": row["action"],
                            "model_version": row["model_version"]})
        return {"model_version": champion.version, "results": results}

    return app
