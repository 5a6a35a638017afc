"""A real git smart-HTTP server on loopback: `git http-backend` behind HTTP basic auth.

A tiny WSGI app (wsgiref, a thread per request) checks the `Authorization` header, then
runs `git http-backend` as CGI for the request, as Apache or nginx would. Clones, fetches
and pushes go through the real git client and the real server side of the protocol.
"""

from __future__ import annotations

import base64
import hmac
import os
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

BACKEND_TIMEOUT = 60.0
MAX_BODY = 16 * 1024 * 1024
USERNAME = "release-bot"
PASSWORD = "p@ss/w:rd-Zq7x9"  # the test's own secret: it holds @ : / on purpose


class GitHttpBackend:
    """A WSGI app serving the bare repositories under `root`, for one user and password."""

    def __init__(self, root: Path, username: str, password: str) -> None:
        self.root = root
        self.username = username
        credentials = base64.b64encode(f"{username}:{password}".encode()).decode()
        self._expected = f"Basic {credentials}"
        self.refused = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not hmac.compare_digest(environ.get("HTTP_AUTHORIZATION", ""), self._expected):
            self.refused += 1
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="gitops"')])
            return [b"authentication required\n"]
        length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_BODY)
        body = environ["wsgi.input"].read(length) if length else b""
        done = subprocess.run(
            ["git", "http-backend"],
            input=body,
            env=self._cgi_env(environ, len(body)),
            capture_output=True,
            timeout=BACKEND_TIMEOUT,
            check=False,
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        status, headers = "200 OK", []
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(": ")
            if name.lower() == "status":
                status = value
            elif name:
                headers.append((name, value))
        start_response(status, headers)
        return [payload]

    def _cgi_env(self, environ: dict[str, Any], length: int) -> dict[str, str]:
        """The CGI variables `git http-backend` reads, with the authenticated user."""
        return {
            "PATH": os.environ["PATH"],
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": self.username,
            "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""),
            "CONTENT_LENGTH": str(length),
            "HTTP_CONTENT_ENCODING": environ.get("HTTP_CONTENT_ENCODING", ""),
            "GIT_PROTOCOL": environ.get("HTTP_GIT_PROTOCOL", ""),
        }


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = False
    block_on_close = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


class GitHttpServer:
    """`GitHttpBackend` on 127.0.0.1 in a thread; `url` is its base, without credentials."""

    def __init__(self, root: Path, username: str = USERNAME, password: str = PASSWORD) -> None:
        self.app = GitHttpBackend(root, username, password)
        self._server = make_server(
            "127.0.0.1", 0, self.app, server_class=_Server, handler_class=_QuietHandler
        )
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> GitHttpServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[GitHttpServer]:
    """A git HTTP server over `tmp_path / "served"`, which the test fills with bare repos."""
    root = tmp_path / "served"
    root.mkdir()
    with GitHttpServer(root) as server:
        yield server
