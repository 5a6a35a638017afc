"""The controller's HTTP surface: probes, metrics, status and the Git webhook, on uvicorn.

Handlers only read the shared `View` and poke the reconcile thread; none of them touches
git or the store, so the server answers in microseconds even in the middle of a long pass.
uvicorn runs on its own thread with a socket bound up front, so a port clash is reported
at start and port 0 (tests) tells the caller which port it got. The `[http]` limits bound
how long a client may take to send a request and how many connections are served at once
(`guard` explains the deadlines).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from structlog.typing import FilteringBoundLogger

from qrelease import __version__
from qrelease.config import HttpConfig
from qrelease.daemon.api import RECONCILE_PATH, PassRequest, authorized
from qrelease.daemon.guard import BodyDeadline, guarded_h11, whole_seconds
from qrelease.daemon.logs import ForwardHandler
from qrelease.daemon.metrics import Metrics
from qrelease.daemon.settings import Address
from qrelease.daemon.state import ControllerState, View
from qrelease.daemon.webhooks import MAX_BODY_BYTES, declared_too_large, verify
from qrelease.planning.planner import Retry
from qrelease.web import Live

STARTUP_TIMEOUT_SECONDS = 10.0
SHUTDOWN_TIMEOUT_SECONDS = 5.0
MAX_API_BODY = 4096


@dataclass(frozen=True)
class Endpoints:
    """What the handlers may use: the shared view, metrics, the secret's variable, the trigger."""

    state: ControllerState
    metrics: Metrics
    secret_env: Callable[[], str]
    trigger: Callable[[str], None]
    log: FilteringBoundLogger
    api_token: Callable[[], str | None] = lambda: None
    submit: Callable[[PassRequest], None] | None = None
    web: tuple[BaseRoute, ...] = ()
    """The read-only web view's routes (`/`, `/apps/…`, `/history`, `/audit`), when enabled."""


def make_app(endpoints: Endpoints) -> Starlette:
    """The ASGI app: probes, metrics, status, the Git webhook, the local API and the web view."""
    handlers = _Handlers(endpoints)
    return Starlette(
        routes=[
            Route("/healthz", handlers.healthz, methods=["GET"]),
            Route("/readyz", handlers.readyz, methods=["GET"]),
            Route("/metrics", handlers.metrics, methods=["GET"]),
            Route("/status", handlers.status, methods=["GET"]),
            Route("/hooks/git", handlers.hook, methods=["POST"]),
            Route(RECONCILE_PATH, handlers.reconcile, methods=["POST"]),
            *endpoints.web,
        ]
    )


def live_of(view: View) -> Live:
    """What the web view shows of the controller's shared view."""
    record = view.last_pass
    last_pass = None
    if record is not None:
        last_pass = {
            "outcome": str(record.outcome),
            "trigger": record.trigger,
            "started_at": record.started_at.isoformat(),
            "revision": record.revision,
        }
    return Live(
        rows=view.rows,
        environments=view.environments,
        revision=view.rows_revision,
        fetched_revision=view.fetched_revision,
        source=view.url,
        branch=view.branch,
        last_pass=last_pass,
        ready=not view.not_ready_reasons(),
        reasons=tuple(view.not_ready_reasons()),
        source_error=view.source_error,
    )


class _Handlers:
    """The route handlers, bound to one controller's endpoints."""

    def __init__(self, endpoints: Endpoints) -> None:
        self.e = endpoints

    async def healthz(self, request: Request) -> Response:
        """200 while the process serves requests: the liveness probe (with the version)."""
        return JSONResponse({"status": "alive", "version": __version__, "pid": os.getpid()})

    async def readyz(self, request: Request) -> Response:
        """200 once fetched, with the store open and the last fetch good; else 503 and why."""
        body = self.e.state.view.readiness()
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    async def metrics(self, request: Request) -> Response:
        """Prometheus text exposition of this controller's registry."""
        return Response(self.e.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def status(self, request: Request) -> Response:
        """The last-known status rows, the source and the last pass, as JSON (streamed)."""
        return StreamingResponse(self.e.state.view.json_chunks(), media_type="application/json")

    async def hook(self, request: Request) -> Response:
        """A validly signed call triggers a fetch and a pass; the payload itself is never used."""
        env_name = self.e.secret_env()
        secret = os.environ.get(env_name)
        if not secret:
            return self._refuse(
                "unknown", "disabled", 503, f"webhook receiver disabled: {env_name} is not set"
            )
        body = await _read_limited(request, MAX_BODY_BYTES)
        if body is None:
            return self._refuse("unknown", "too_large", 413, f"body over {MAX_BODY_BYTES} bytes")
        verdict = verify(dict(request.headers), body, secret)
        if not verdict.valid:
            return self._refuse(
                verdict.provider, "unauthorized", 401, "invalid or missing signature"
            )
        self.e.metrics.webhooks.labels(provider=verdict.provider, result="accepted").inc()
        self.e.log.info("webhook accepted", provider=verdict.provider)
        self.e.trigger(f"webhook:{verdict.provider}")
        return JSONResponse({"accepted": True, "provider": verdict.provider}, status_code=202)

    async def reconcile(self, request: Request) -> Response:
        """Run a pass now (token holders only) and stream its rows, then its report."""
        token = self.e.api_token()
        if token is None or self.e.submit is None:
            return JSONResponse({"error": "the local API is not enabled"}, status_code=503)
        if not authorized(request.headers.get("authorization"), token):
            return JSONResponse({"error": "invalid or missing token"}, status_code=401)
        body = await _read_limited(request, MAX_API_BODY)
        if body is None:
            return JSONResponse({"error": f"body over {MAX_API_BODY} bytes"}, status_code=413)
        try:
            asked = json.loads(body or b"{}")
            env, retry = asked.get("env"), Retry(asked.get("retry", Retry.TRANSIENT))
            app = asked.get("app")
            if env is not None and not isinstance(env, str):
                raise ValueError("env must be a string")
            if app is not None and not isinstance(app, str):
                raise ValueError("app must be a string")
        except (ValueError, AttributeError) as error:
            return JSONResponse({"error": f"bad request: {error}"}, status_code=400)
        pass_request = PassRequest(env, retry, app)
        self.e.submit(pass_request)
        self.e.log.info("pass requested", env=env, app=app, retry=str(retry))
        return StreamingResponse(_events(pass_request), media_type="application/x-ndjson")

    def _refuse(self, provider: str, result: str, code: int, message: str) -> Response:
        self.e.metrics.webhooks.labels(provider=provider, result=result).inc()
        self.e.log.warning("webhook refused", provider=provider, result=result, status=code)
        headers = {"WWW-Authenticate": 'Basic realm="qrelease"'} if code == 401 else None
        return JSONResponse({"error": message}, status_code=code, headers=headers)


async def _events(pass_request: PassRequest) -> AsyncIterator[str]:
    """The pass's events as JSON lines, until the reconcile thread closes the stream."""
    while (event := await asyncio.to_thread(pass_request.events.get)) is not None:
        yield json.dumps(event) + "\n"


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds `limit` (whatever Content-Length claimed)."""
    if declared_too_large(request.headers.get("content-length"), limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return None
    return bytes(body)


class HttpServer:
    """uvicorn serving the app on its own thread, on a socket bound by the constructor."""

    def __init__(
        self, app: Starlette, address: Address, log: FilteringBoundLogger, limits: HttpConfig
    ) -> None:
        self._socket = bind(address)
        config = uvicorn.Config(
            BodyDeadline(app, limits.body_timeout),
            log_config=None,
            log_level=None,
            access_log=False,
            lifespan="off",
            loop="asyncio",
            http=guarded_h11(limits),
            ws="none",
            server_header=False,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=whole_seconds(limits.keep_alive),
            # uvicorn counts the asking connection too: +1 so max_connections are served.
            limit_concurrency=limits.max_connections + 1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="qrelease-http", daemon=True)
        self._forward = ForwardHandler(log)

    @property
    def address(self) -> Address:
        """Where the server listens (the real port when 0 was asked for)."""
        host, port = self._socket.getsockname()[:2]
        return Address(str(host), int(port))

    @property
    def alive(self) -> bool:
        """True while the server thread runs."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start serving and wait until the server accepts connections."""
        _attach(self._forward)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HTTP server did not start on {self.address}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop serving (open requests get a short grace) and close the socket."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(SHUTDOWN_TIMEOUT_SECONDS)
        self._socket.close()
        _detach(self._forward)

    def _serve(self) -> None:
        self._server.run(sockets=[self._socket])


def bind(address: Address) -> socket.socket:
    """A listening TCP socket on `address`; OSError (e.g. port in use) goes to the caller."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    return socket.create_server((address.host, address.port), family=family, backlog=128)


def _attach(handler: logging.Handler) -> None:
    """Send uvicorn's warnings and errors into the structured log."""
    logger = logging.getLogger("uvicorn")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False


def _detach(handler: logging.Handler) -> None:
    logger = logging.getLogger("uvicorn")
    logger.removeHandler(handler)
    if not logger.handlers:
        logger.propagate = True
