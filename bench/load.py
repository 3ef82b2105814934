"""The HTTP load generators of bench/scoring.py and the server they load: `trustlake serve` in a subprocess.

The generators speak HTTP/1.1 over plain asyncio streams: httpx spends more CPU per request than the
server does on 2 cores, and the measurement would then be of the client.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np

from orchestration.settings import PROJECT_ROOT, Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


KEEPALIVE_EXPIRY_S = 4.0  # below the server's keep-alive timeout (ml/scoring/serving.py keep_alive_s 5 s)


async def load(port: int, rate: float, seconds: float, texts: list[str]) -> tuple[list[float], dict[str, int]]:
    """Open loop: latencies of the requests answered 200, and a count of every other outcome.

    Each request takes an idle keep-alive connection or opens one, so the send rate never waits
    for the server. As a pooling HTTP client does (httpx's keepalive_expiry), a connection idle for
    KEEPALIVE_EXPIRY_S is closed rather than reused: the server closes it at its own keep-alive
    timeout (5 s), and a request written into that close would count as a reset no real client sees.
    """
    n = int(rate * seconds)
    latencies: list[float] = []
    other: dict[str, int] = {}
    idle: list[tuple[Connection, float]] = []
    start = time.perf_counter() + 0.5

    async def connection() -> Connection:
        while idle:
            conn, since = idle.pop()
            if time.perf_counter() - since < KEEPALIVE_EXPIRY_S:
                return conn
            conn[1].close()
        return await asyncio.open_connection("127.0.0.1", port)

    async def one(i: int) -> None:
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        conn = None
        try:
            conn = await connection()
            status, headers = await exchange(conn, _score_request(port, i, texts))
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            other[type(exc).__name__] = other.get(type(exc).__name__, 0) + 1
            if conn is not None:
                conn[1].close()
            return
        if headers.get("connection") == "close":
            conn[1].close()
        else:
            idle.append((conn, time.perf_counter()))
        if status != 200:  # 503 when the server sheds load
            other[str(status)] = other.get(str(status), 0) + 1
            return
        latencies.append((time.perf_counter() - scheduled) * 1000)

    await asyncio.gather(*(one(i) for i in range(n)))
    for (_, writer), _ in idle:
        writer.close()
    return latencies, other


async def closed_loop(port: int, connections: int, requests: int, texts: list[str]) -> dict:
    """`connections` clients, each sending its next single-item request when the last is answered.

    A client told 503 waits the Retry-After seconds first, as a well-behaved client does (one that
    retries at once only measures how fast the server can say no). Latency is per request, 200s
    and 503s apart; the share of 503s shows how much the server sheds.
    """
    ok: list[float] = []
    shed: list[float] = []
    other: dict[str, int] = {}
    pending = iter(range(requests))

    async def client_loop() -> None:
        conn = None
        for i in pending:  # shared: the run ends after `requests` requests in all
            t = time.perf_counter()
            try:
                conn = conn or await asyncio.open_connection("127.0.0.1", port)
                status, headers = await exchange(conn, _score_request(port, i, texts))
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                other[type(exc).__name__] = other.get(type(exc).__name__, 0) + 1
                if conn is not None:
                    conn[1].close()
                conn = None
                continue
            ms = (time.perf_counter() - t) * 1000
            if headers.get("connection") == "close":
                conn[1].close()
                conn = None
            if status == 200:
                ok.append(ms)
            elif status == 503:
                shed.append(ms)
                await asyncio.sleep(float(headers.get("retry-after", 1)))
            else:
                other[str(status)] = other.get(str(status), 0) + 1
        if conn is not None:
            conn[1].close()

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(connections)))
    seconds = time.perf_counter() - started
    return {
        "connections": connections,
        "requests": requests,
        "seconds": round(seconds, 2),
        "answered_200_per_second": round(len(ok) / seconds, 1),
        "share_503": round(len(shed) / requests, 4),
        "other_outcomes": other,
        **percentiles("ok", ok),
        **percentiles("503", shed),
    }


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def _score_request(port: int, i: int, texts: list[str]) -> bytes:
    return post(port, json.dumps({"items": [{"id": i, "text": texts[i % len(texts)]}]}).encode())


def post(port: int, body: bytes) -> bytes:
    return (
        f"POST /v1/score HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def exchange(conn: Connection, request: bytes) -> tuple[int, dict[str, str]]:
    """Send one request; the response's status and headers (its body is read and dropped)."""
    reader, writer = conn
    writer.write(request)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("server closed the connection")
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    await reader.readexactly(int(headers.get("content-length", 0)))
    return int(status_line.split()[1]), headers


def percentiles(name: str, ms: list[float]) -> dict:
    if not ms:
        return {f"{name}_p50_ms": None, f"{name}_p90_ms": None, f"{name}_p99_ms": None}
    a = np.array(ms)
    return {f"{name}_p{q}_ms": round(float(np.percentile(a, q)), 2) for q in (50, 90, 99)}


@contextmanager
def serving(settings: Settings, *flags: str, start_s: float = 60, **env_extra: str):
    """`trustlake serve` in a subprocess on a free loopback port, once /health says ok."""
    port = free_port()
    env = {**os.environ, "TRUSTLAKE_HOME": str(settings.home), **env_extra}
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("trustlake")), "serve", "--port", str(port), *flags],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + start_s
        while True:
            try:
                # Ray Serve's proxy answers 404 or 503 in plain text until the application is deployed.
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                if health.status_code == 200 and health.json()["status"] == "ok":
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"server did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.3)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=start_s)
