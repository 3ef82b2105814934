"""The HTTP service protects itself and keeps serving: bodies bounded in size and read time even
when chunked, load shed with 503 + Retry-After, non-finite numbers refused, and the loaded
champion serving through a damaged registry; a copied home serves its own models.

The limits are tested against a real `trustlake serve` process on a free loopback port with raw
sockets, since a test client never streams a body the way a slow or hostile client does.
"""

import json
import select
import shlex
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from ml.registry import Registry
from ml.scoring import load_champion
from ml.scoring.serving import create_app
from orchestration.settings import PROJECT_ROOT
from tests.helpers import free_port, labelled_training_frame, small_champion, trustlake_env

ONE_ITEM = {"items": [{"id": "a1", "text": "WIN a FREE prize, call now", "context": {"account_age_days": 1}}]}


@pytest.fixture(scope="module")
def home(pool, tmp_path_factory) -> Path:
    """A home whose registry has one champion (a small content classifier)."""
    home = tmp_path_factory.mktemp("serving-home")
    frame, _ = labelled_training_frame(pool, seed=11, days=10, rows=3000, qa_every=4)
    small_champion(frame, home / "models")
    return home


@contextmanager
def serving(home: Path, log: Path, **limits: str):
    """`trustlake serve` on a free loopback port with TRUSTLAKE_SERVE_* limits, once /health answers 200."""
    port = free_port()
    exe = Path(sys.executable).with_name("trustlake")
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [str(exe), "serve", "--port", str(port)],
            env=trustlake_env(home, **limits),
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"trustlake serve did not start: {log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def busy_server(home, tmp_path_factory):
    """At most two requests in flight; bodies get a minute, so slow ones hold their slot."""
    with serving(
        home,
        tmp_path_factory.mktemp("logs") / "busy.log",
        TRUSTLAKE_SERVE_MAX_IN_FLIGHT="2",
        TRUSTLAKE_SERVE_BODY_TIMEOUT_S="60",
    ) as port:
        yield port


@pytest.fixture(scope="module")
def impatient_server(home, tmp_path_factory):
    """A copy of the home served with a one-second body timeout (its registry may be damaged by a test)."""
    copy = tmp_path_factory.mktemp("impatient") / "home"
    shutil.copytree(home / "models", copy / "models")
    with serving(copy, copy.parent / "serve.log", TRUSTLAKE_SERVE_BODY_TIMEOUT_S="1") as port:
        yield port, copy


def health(port: int) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{port}/health", timeout=10)


def wait_until(condition, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def request_head(port: int, **headers: str) -> bytes:
    lines = [
        "POST /v1/score HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Content-Type: application/json",
        *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed without a complete response (got {data[:200]!r})")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def test_a_chunked_body_over_the_limit_is_refused_with_413_before_it_is_read(busy_server):
    refused_before = health(busy_server).json().get("refused", {}).get("413", 0)
    total = 64 * 1024 * 1024
    piece = b"a" * 65536
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", busy_server), timeout=60) as sock:
        sock.sendall(request_head(busy_server, Transfer_Encoding="chunked"))
        while sent < total and not select.select([sock], [], [], 0)[0]:
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break  # the server closed the connection after answering; read that answer
            sent += len(piece)
        if sent >= total:
            sock.sendall(b"0\r\n\r\n")
        status, headers, body = read_response(sock)
    assert status == 413, body
    assert "request body over 4194304 bytes" in json.loads(body)["error"]
    assert headers["connection"] == "close"
    # The server answered while most of the 64 MB was still unsent: it never read the body to its end.
    assert sent < total // 2, f"client had sent {sent} of {total} bytes before the answer"
    assert health(busy_server).json()["refused"]["413"] == refused_before + 1


def test_a_body_that_trickles_in_is_cut_off_with_408(impatient_server):
    port, _ = impatient_server
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request_head(port, Content_Length="4000000") + b'{"items": [')
        give_up = time.monotonic() + 30  # the server's body timeout is 1 s
        while time.monotonic() < give_up and not select.select([sock], [], [], 0.2)[0]:
            sock.sendall(b" ")
        assert select.select([sock], [], [], 0)[0], "the server still waits for the body after 30 s"
        status, headers, body = read_response(sock)
    assert status == 408, body
    assert "request body not received within 1 s" in json.loads(body)["error"]
    assert headers["connection"] == "close"


def test_requests_beyond_the_concurrency_limit_get_503_with_retry_after(busy_server):
    body = json.dumps(ONE_ITEM).encode()
    held = []
    try:
        for _ in range(2):  # two slow clients: headers and the first bytes of the body, then nothing
            sock = socket.create_connection(("127.0.0.1", busy_server), timeout=60)
            sock.sendall(request_head(busy_server, Content_Length=str(len(body))) + body[:5])
            held.append(sock)
        wait_until(lambda: health(busy_server).json().get("in_flight") == 2)
        with httpx.Client(base_url=f"http://127.0.0.1:{busy_server}", timeout=30) as client:
            shed = [client.post("/v1/score", json=ONE_ITEM) for _ in range(3)]
        assert [r.status_code for r in shed] == [503, 503, 503], [r.text for r in shed]
        assert all(r.headers["retry-after"] == "1" and "server busy" in r.json()["error"] for r in shed)
        for sock in held:  # the slow clients finish and are answered normally
            sock.sendall(body[5:])
            status, _, answer = read_response(sock)
            assert status == 200, answer
    finally:
        for sock in held:
            sock.close()
    # Every slot was given back: the next request is served.
    assert wait_until(lambda: health(busy_server).json()["in_flight"] == 0)
    assert httpx.post(f"http://127.0.0.1:{busy_server}/v1/score", json=ONE_ITEM, timeout=30).status_code == 200


@pytest.fixture(scope="module")
def client(home):
    return TestClient(create_app(home / "models"))


@pytest.mark.parametrize(
    "field, raw",
    [
        ("account_age_days", "1e999"),
        ("account_age_days", "-1e999"),
        ("account_age_days", "NaN"),
        ("account_age_days", "Infinity"),
        ("follower_count", "1" + "0" * 40),
    ],
)
def test_non_finite_or_absurd_numbers_are_refused_with_422_naming_the_field(client, field, raw):
    content = json.dumps({"items": [{"text": "hello", "context": {field: "RAW"}}]}).replace('"RAW"', raw)
    resp = client.post("/v1/score", content=content, headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    problems = resp.json()["problems"]
    assert problems and all(p.startswith(f"items.0.context.{field}: ") for p in problems), problems
    assert any("finite" in p or "less than or equal" in p for p in problems), problems


def test_a_damaged_registry_leaves_the_loaded_champion_serving_until_it_is_restored(impatient_server, home):
    port, copy = impatient_server
    version = Registry(home / "models").champion().version
    registry = copy / "models" / "registry.json"
    base = f"http://127.0.0.1:{port}"
    assert httpx.post(f"{base}/v1/score", json=ONE_ITEM, timeout=30).status_code == 200
    registry.write_text(registry.read_text()[:80])  # truncated, as by a full disk or a bad hand edit
    resp = httpx.post(f"{base}/v1/score", json=ONE_ITEM, timeout=30)
    assert resp.status_code == 200 and resp.json()["model_version"] == version, resp.text
    assert httpx.get(f"{base}/v1/model", timeout=30).json()["model_version"] == version
    status = health(port)
    assert status.status_code == 200, status.text
    assert status.json()["status"] == "degraded" and str(registry) in status.json()["detail"]
    # The restore command the error names brings the registry back, and the service notices.
    subprocess.run(shlex.split(status.json()["detail"].split("with: ", 1)[1]), check=True)
    assert wait_until(lambda: health(port).json()["status"] == "ok"), health(port).text


def test_health_is_503_when_no_model_can_be_served(tmp_path):
    empty = TestClient(create_app(tmp_path / "models"))
    resp = empty.get("/health")
    assert resp.status_code == 503 and resp.json()["status"] == "no_model", resp.text
    assert empty.post("/v1/score", json=ONE_ITEM).status_code == 503
    (tmp_path / "damaged" / "models").mkdir(parents=True)
    (tmp_path / "damaged" / "models" / "registry.json").write_text('{"models": {')
    resp = TestClient(create_app(tmp_path / "damaged" / "models")).get("/health")
    assert resp.status_code == 503 and "registry.json is damaged" in resp.json()["detail"], resp.text


def test_a_copied_home_serves_its_own_models(home, tmp_path):
    originals = {"relative": tmp_path / "original-relative", "absolute": tmp_path / "original-absolute"}
    for original in originals.values():
        shutil.copytree(home, original)
    # An older registry stored absolute paths into its own home.
    registry_file = originals["absolute"] / "models" / "registry.json"
    table = json.loads(registry_file.read_text())
    for entry in table["models"].values():
        entry["path"] = str(originals["absolute"] / "models" / Path(entry["path"]).name)
    registry_file.write_text(json.dumps(table))
    for name, original in originals.items():
        shutil.copytree(original, tmp_path / f"copy-{name}")
        champion = load_champion(tmp_path / f"copy-{name}" / "models")
        # While the original is still there, the copy loads its own files rather than reaching back.
        assert Path(champion.scorer.artifact.path).is_relative_to(tmp_path / f"copy-{name}"), name
    for original in originals.values():
        shutil.rmtree(original)
    for name in originals:
        models = tmp_path / f"copy-{name}" / "models"
        version = Registry(models).champion().version
        assert load_champion(models).version == version
        resp = TestClient(create_app(models)).get("/v1/model")
        assert resp.status_code == 200 and resp.json()["model_version"] == version, resp.text
