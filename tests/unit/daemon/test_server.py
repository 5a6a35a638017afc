"""The HTTP server's limits: slow or lying clients are cut off, and everyone else is served."""

from __future__ import annotations

import itertools
import json
import select
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from qrelease.config import ConfigError, HttpConfig, load_config
from qrelease.daemon import Controller
from qrelease.daemon.api import RECONCILE_PATH, read_endpoint
from qrelease.daemon.webhooks import sign
from tests.helpers.daemon import SECRET, SECRET_ENV, WAIT_SECONDS, Api, Rig, SlowQuantum, wait_for

TINY = HttpConfig(
    header_timeout=timedelta(milliseconds=300),
    body_timeout=timedelta(milliseconds=300),
    keep_alive=timedelta(seconds=1),
)
QUIET = {"interval": timedelta(minutes=10), "resync": timedelta(hours=1)}
HOOK_HEAD = b"POST /hooks/git HTTP/1.1\r\nHost: qrelease\r\nX-Qrelease-Signature: sha256=00\r\n"
DRIP_PAUSE_SECONDS = 0.02


@pytest.fixture
def guarded(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> Iterator[Controller]:
    """A controller with a webhook secret and tiny HTTP timeouts."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    controller = rig.start(rig.config(source=QUIET, http=TINY))
    yield controller
    assert controller.close() == 0


def _connect(controller: Controller) -> socket.socket:
    address = controller.http.address
    return socket.create_connection((address.host, address.port), timeout=WAIT_SECONDS)


def _until_closed(conn: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    received = bytearray()
    try:
        while chunk := conn.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open and silent after {WAIT_SECONDS}s") from None
    return bytes(received)


def _drip(conn: socket.socket, at_once: bytes, dripped: bytes = b"") -> bytes:
    """Send `at_once`, then `dripped` and filler a byte at a time until the server closes.

    Returns what the server sent before it closed.
    """
    conn.sendall(at_once)
    received = bytearray()
    deadline = time.monotonic() + WAIT_SECONDS
    for byte in itertools.chain(dripped, itertools.repeat(ord("a"))):
        if time.monotonic() > deadline:
            raise AssertionError(f"still open after {WAIT_SECONDS}s of dripping")
        while select.select([conn], [], [], DRIP_PAUSE_SECONDS)[0]:
            try:
                chunk = conn.recv(4096)
            except ConnectionResetError:
                return bytes(received)
            if not chunk:
                return bytes(received)
            received += chunk
        try:
            conn.sendall(bytes([byte]))
        except OSError:  # the server closed while we wrote
            return bytes(received) + _until_closed(conn)
    raise AssertionError("unreachable: the filler never ends")


def _timed_out_or_closed(reply: bytes) -> bool:
    return reply == b"" or reply.startswith(b"HTTP/1.1 408 ")


# -- slow and lying clients ----------------------------------------------------------------


def test_headers_sent_byte_by_byte_are_cut_off(guarded: Controller) -> None:
    with _connect(guarded) as conn:
        reply = _drip(conn, b"", b"GET /healthz HTTP/1.1\r\nHost: qrelease\r\nX-Pad: ")
    assert _timed_out_or_closed(reply), reply


def test_headers_that_stop_halfway_get_408_and_a_close(guarded: Controller) -> None:
    with _connect(guarded) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: qre")
        reply = _until_closed(conn)
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert reply.endswith(b"request headers not received within 300ms\n")


def test_a_connection_that_never_sends_is_closed_without_a_reply(guarded: Controller) -> None:
    with _connect(guarded) as conn:
        assert _until_closed(conn) == b""


def test_a_lying_content_length_gets_408_and_triggers_nothing(
    guarded: Controller, api_for: Callable[[Controller], Api]
) -> None:
    with _connect(guarded) as conn:
        conn.sendall(HOOK_HEAD + b"Content-Length: 100\r\n\r\n" + b'{"ref": ')
        reply = _until_closed(conn)
    assert reply.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"request body not received within 300ms" in reply
    assert b"connection: close" in reply.lower()
    metrics = api_for(guarded).get("/metrics").text
    assert 'result="accepted"' not in metrics


def test_a_body_dripping_in_after_the_answer_is_cut_off(guarded: Controller) -> None:
    with _connect(guarded) as conn:  # /healthz answers at once, without reading the body
        reply = _drip(
            conn, b"GET /healthz HTTP/1.1\r\nHost: qrelease\r\nContent-Length: 9999\r\n\r\n"
        )
    assert reply.startswith(b"HTTP/1.1 200 ")


def test_four_slow_clients_at_once_do_not_stop_healthz(
    guarded: Controller, api_for: Callable[[Controller], Api]
) -> None:
    api = api_for(guarded)
    clients = [  # (sent at once, then dripped a byte at a time)
        (b"", b"GET /healthz HTTP/1.1\r\nHost: qrelease\r\nX-Pad: "),
        (b"GET /status HTTP/1.1\r\nHo", b""),
        (HOOK_HEAD + b"Content-Length: 4096\r\n\r\n{", b""),
        (HOOK_HEAD + b"Transfer-Encoding: chunked\r\n\r\n1000\r\n", b""),
    ]
    conns = [_connect(guarded) for _ in clients]
    with ThreadPoolExecutor(len(clients)) as pool:
        replies = [
            pool.submit(_drip, conn, *client) for conn, client in zip(conns, clients, strict=True)
        ]
        answers = [api.get("/healthz").status_code]
        while not all(reply.done() for reply in replies):
            answers.append(api.get("/healthz").status_code)
    for conn in conns:
        conn.close()
    assert set(answers) == {200}
    assert all(_timed_out_or_closed(reply.result()) for reply in replies), replies


# -- everyone else ---------------------------------------------------------------------------


def test_a_signed_webhook_is_still_accepted(
    guarded: Controller, api_for: Callable[[Controller], Api]
) -> None:
    api = api_for(guarded)
    body = b'{"ref": "refs/heads/main"}'
    response = api.client.post(
        "/hooks/git", content=body, headers={"X-Qrelease-Signature": sign(body, SECRET)}
    )
    assert response.status_code == 202
    assert response.json() == {"accepted": True, "provider": "generic"}
    assert api.get("/healthz").status_code == 200  # the keep-alive connection is reused


def test_a_streamed_pass_outlives_the_body_timeout(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    slow = SlowQuantum()
    rig.quantum = slow
    controller = rig.start(rig.config(source=QUIET, http=TINY))
    assert slow.entered.wait(WAIT_SECONDS)  # the first pass holds; ours queues behind it
    endpoint = read_endpoint(rig.state)
    assert endpoint is not None
    headers = {"Authorization": f"Bearer {endpoint[1]}"}
    lines: list[str] = []
    with (
        httpx.Client(base_url=endpoint[0], timeout=WAIT_SECONDS) as client,
        client.stream("POST", RECONCILE_PATH, json={"env": "dev"}, headers=headers) as stream,
    ):
        assert stream.status_code == 200
        time.sleep(3 * TINY.body_timeout.total_seconds())  # past the body deadline
        slow.release.set()
        lines = list(stream.iter_lines())
    assert json.loads(lines[-1])["report"]["converged"]
    assert controller.close() == 0


def test_beyond_max_connections_requests_get_503_until_one_closes(
    rig: Rig, api_for: Callable[[Controller], Api]
) -> None:
    one = HttpConfig(header_timeout=timedelta(minutes=1), max_connections=1)
    controller = rig.start(rig.config(source=QUIET, http=one))
    api = api_for(controller)
    held = _connect(controller)
    held.sendall(b"GET /healthz HTTP/1.1\r\nHo")  # a slow client holds the only slot
    wait_for("the limit to bite", lambda: api.get("/healthz").status_code == 503)
    held.close()
    wait_for("the slot to free", lambda: api.get("/healthz").status_code == 200)
    assert controller.close() == 0


# -- configuration ---------------------------------------------------------------------------


def test_http_limits_are_read_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "controller.toml"
    path.write_text(
        '[http]\nheader_timeout = "2s"\nbody_timeout = "1m"\nkeep_alive = "3s"\n'
        "max_connections = 8\n"
    )
    assert load_config(path).http == HttpConfig(
        header_timeout=timedelta(seconds=2),
        body_timeout=timedelta(minutes=1),
        keep_alive=timedelta(seconds=3),
        max_connections=8,
    )
    example = Path(__file__).parents[3] / "controller" / "controller.toml"
    assert load_config(example).http == HttpConfig()  # the documented values are the defaults


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('header_timeout = "0s"', "http.header_timeout"),
        ('body_timeout = "soon"', "http.body_timeout"),
        ("max_connections = 0", "http.max_connections"),
    ],
)
def test_bad_http_limits_name_the_file_and_field(tmp_path: Path, line: str, field: str) -> None:
    path = tmp_path / "controller.toml"
    path.write_text(f"[http]\n{line}\n")
    with pytest.raises(ConfigError, match=f"^{path}:2: {field}: "):
        load_config(path)
