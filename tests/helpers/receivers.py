"""Loopback receivers for notifications: an HTTP(S) receiver that is also an HTTPS proxy, and SMTP.

`Receiver` records every request it gets and answers with the statuses a test queues
(200 when none is queued). Slack's and Teams' apprise plugins always call the services'
own https hosts, so the receiver also serves as the HTTPS proxy those calls go through
(`HTTPS_PROXY`): it answers CONNECT, terminates TLS with a certificate for the asked host
issued by a per-test CA (trustme; `REQUESTS_CA_BUNDLE` makes requests trust it) and
records the request inside. Nothing leaves the machine and the real client code runs.
"""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True)
class Request:
    """One request a receiver got."""

    method: str
    host: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


class Receiver:
    """An HTTP server on 127.0.0.1 that records requests; also an HTTPS-intercepting proxy."""

    def __init__(self, ca: trustme.CA | None = None) -> None:
        self.requests: list[Request] = []
        self.answers: queue.Queue[Answer] = queue.Queue()
        self.ca = ca
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def answer(self, status: int, times: int = 1, **headers: str) -> None:
        """Answer the next `times` requests with `status` (then 200 again)."""
        for _ in range(times):
            self.answers.put(Answer(status, {k.replace("_", "-"): v for k, v in headers.items()}))

    def record(self, request: Request) -> Answer:
        with self._lock:
            self.requests.append(request)
        try:
            return self.answers.get_nowait()
        except queue.Empty:
            return Answer(200)

    def received(self, host: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if host is None or r.host == host]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        tunnel_host = ""

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_CONNECT(self) -> None:  # an HTTPS proxy's tunnel: terminate TLS here
            assert receiver.ca is not None, "this receiver is not a proxy"
            host = self.path.rsplit(":", 1)[0]
            self.send_response(200, "Connection established")
            self.end_headers()
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            receiver.ca.issue_cert(host).configure_cert(context)
            self.connection = context.wrap_socket(self.connection, server_side=True)
            self.rfile = self.connection.makefile("rb")
            self.wfile = self.connection.makefile("wb")
            self.tunnel_host = host
            self.close_connection = False

        def finish(self) -> None:
            super().finish()
            if self.tunnel_host:  # the TLS socket took over the accepted one: close it here
                self.connection.close()

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            host = self.tunnel_host or (self.headers.get("Host") or "").split(":")[0]
            request = Request("POST", host, self.path, dict(self.headers.items()), body)
            answer = receiver.record(request)
            self.send_response(answer.status)
            for name, value in answer.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)
            self.wfile.flush()

    return Handler


@contextmanager
def https_proxy(tmp_path: Path) -> Iterator[tuple[Receiver, dict[str, str]]]:
    """A receiver acting as HTTPS proxy, and the environment that routes requests through it."""
    ca = trustme.CA()
    bundle = tmp_path / "receiver-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    receiver = Receiver(ca)
    environ = {"HTTPS_PROXY": receiver.url, "REQUESTS_CA_BUNDLE": str(bundle)}
    try:
        yield receiver, environ
    finally:
        receiver.close()


class SmtpReceiver:
    """An SMTP server on 127.0.0.1 (aiosmtpd) that keeps every message it is sent."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []
        self._socket = socket.create_server(("127.0.0.1", 0))
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            self._loop.create_server(lambda: SMTP(self), sock=self._socket)
        )
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._socket.getsockname()[1])

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 OK"

    def close(self) -> None:
        self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.run_until_complete(self._server.wait_closed())
        self._loop.close()
