"""The read-only web view: Starlette routes rendering Jinja2 templates, served by the controller.

Pages: `/` (apps × environments), `/apps/<app>` (one app per environment), `/history`
(the timeline with filters; `.csv` and `.json` exports of the same filters), `/audit`
(the audit check; `/audit/export.jsonl`). Nothing here changes anything: promotion and
rollback stay Git commits made with the CLI or the TUI.

Access: by default only loopback clients are served (a reverse proxy on the same host
counts as one). With `[web] token_env` set, every request also needs the token, as a
bearer token (`Authorization: Bearer …`, for scripts) or through the sign-in form, which
sets an HttpOnly, SameSite=Strict cookie holding an HMAC of the token, never the token.
`[web] remote = true` serves other hosts too and is refused without a token.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import ipaddress
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from importlib import resources
from typing import IO, Any
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from qrelease.config import ControllerConfig
from qrelease.history import COLUMNS, event_reason
from qrelease.model.environment import promotion_order
from qrelease.store import StoreError
from qrelease.web.data import WebData
from qrelease.web.pages import (
    AppEnv,
    FilterError,
    HistoryQuery,
    Live,
    cell,
    history_page,
    matrix,
    parse_query,
    since_text,
    suggestions,
)

COOKIE = "qrelease_web"
MAX_FORM = 4096
CSV_CHUNK = 500
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
GATE_CSS = {"Passed": "good", "Failed": "bad", "Inconclusive": "warn", "Skipped": "muted"}

Handler = Callable[[Request], Awaitable[Response]]
RequestHook = Callable[[str, int], None]


class WebSite:
    """The web view of one controller: its live rows, its store and its Git mirror."""

    def __init__(
        self,
        config: ControllerConfig,
        live: Callable[[], Live],
        clock: Callable[[], datetime],
        on_request: RequestHook | None = None,
    ) -> None:
        self.config = config
        self.live = live
        self.clock = clock
        self.data = WebData(config, clock)
        self._on_request = on_request
        self._templates = jinja2.Environment(
            loader=jinja2.PackageLoader("qrelease.web", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self._stylesheet = resources.files("qrelease.web").joinpath("static/web.css").read_bytes()

    def routes(self) -> list[BaseRoute]:
        """Every route of the web view."""
        return [
            Route("/", self._page("matrix", self.matrix), methods=["GET"]),
            Route("/apps/{app}", self._page("app", self.app), methods=["GET"]),
            Route("/history", self._page("history", self.history), methods=["GET"]),
            Route("/history.csv", self._page("history.csv", self.history_csv), methods=["GET"]),
            Route("/history.json", self._page("history.json", self.history_json), methods=["GET"]),
            Route("/audit", self._page("audit", self.audit), methods=["GET"]),
            Route("/audit/export.jsonl", self._page("export", self.export), methods=["GET"]),
            Route("/login", self.login_form, methods=["GET"]),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/static/web.css", self.stylesheet, methods=["GET"]),
        ]

    def close(self) -> None:
        """Close the store the pages read."""
        self.data.close()

    # -- pages --------------------------------------------------------------------------

    async def matrix(self, request: Request) -> Response:
        """Apps × environments, from the controller's status rows."""
        live = self.live()
        started = (live.last_pass or {}).get("started_at")
        ago = since_text(datetime.fromisoformat(started), self.clock()) if started else ""
        return self._render(
            request, "matrix.html", "matrix", live, matrix=matrix(live), last_pass_ago=ago
        )

    async def app(self, request: Request) -> Response:
        """One app in every environment: the row, its gates, its newest events."""
        name = request.path_params["app"]
        live = self.live()
        apps = sorted({app for _, app in live.rows})
        if name not in apps:
            message = f"No app named {name!r} in any environment."
            return self._message(
                request, 404, "Unknown app", message, "warn", suggestions=suggestions(name, apps)
            )
        envs = promotion_order(live.environments, sorted({env for env, _ in live.rows}))
        shown = []
        for env in envs:
            row = live.rows.get((env, name))
            if row is None and name not in _apps_of(live, env):
                continue
            version = (row.desired or row.deployed) if row else None
            gates, events = await self.data.run(self.data.gates_and_events, env, name, version)
            environment = live.environments.get(env)
            suspended = environment.policy.suspended.get(name) if environment else None
            shown.append(AppEnv(cell(env, name, row), gates, events, suspended))
        return self._render(
            request,
            "app.html",
            "app",
            live,
            app=name,
            envs=shown,
            gate_css=GATE_CSS,
            reason_of=event_reason,
        )

    async def history(self, request: Request) -> Response:
        """The timeline with filters, newest first, one page at a time."""
        query = parse_query(request.query_params, self.clock())
        live = self.live()
        entries, note = await self._timeline(query, live)
        result = history_page(entries, query, self.config.web.page_size)
        return self._render(
            request,
            "history.html",
            "history",
            live,
            query=query,
            result=result,
            note=note,
            since_param=request.query_params.get("since", ""),
            export_qs=_qs(query.params(page=None)),
            prev_qs=_qs(query.params(page=str(result.page - 1) if result.page > 2 else None)),
            next_qs=_qs(query.params(page=str(result.page + 1))),
        )

    async def history_csv(self, request: Request) -> Response:
        """The filtered timeline as CSV, oldest first (as `qrelease history --format csv`)."""
        rows = await self._export_rows(request)
        return StreamingResponse(
            _csv_lines(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="qrelease-history.csv"'},
        )

    async def history_json(self, request: Request) -> Response:
        """The filtered timeline as JSON, oldest first (as `qrelease history --format json`)."""
        rows = await self._export_rows(request)
        body = json.dumps(rows, indent=1).encode()
        return Response(body, media_type="application/json")

    async def audit(self, request: Request) -> Response:
        """The audit check: chain, anchors, revisions; kept for `audit_max_age`."""
        live = self.live()
        refresh = request.query_params.get("recheck") == "1"
        status = await self.data.run(self.data.audit, live.fetched_revision, refresh)
        anchored = status.findings is not None and not any(
            "not anchored" in note for note in status.findings.notes
        )
        return self._render(
            request,
            "audit.html",
            "audit",
            live,
            status=status,
            anchored=anchored,
            checked_ago=since_text(status.checked_at, self.clock()),
        )

    async def export(self, request: Request) -> Response:
        """The audit chain as JSON Lines, for `qrelease audit verify --from-export`."""
        spool, _ = await self.data.run(self.data.export)
        stamp = self.clock().strftime("%Y%m%dT%H%M%SZ")
        return StreamingResponse(
            _chunks(spool),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="qrelease-audit-{stamp}.jsonl"'},
        )

    async def stylesheet(self, request: Request) -> Response:
        """The one stylesheet."""
        return Response(self._stylesheet, media_type="text/css", headers=SECURITY_HEADERS)

    # -- signing in ---------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        """The sign-in form (only when a token is configured)."""
        if self._token() is None:
            return RedirectResponse("/", status_code=303)
        refused = self._refused_host(request)
        if refused is not None:
            return refused
        return self._login_page(request, 200, "Enter the web view's token.", "warn")

    async def login(self, request: Request) -> Response:
        """Check the token from the form; set the session cookie and go back."""
        token = self._token()
        refused = self._refused_host(request)
        if refused is not None or token is None:
            return refused or RedirectResponse("/", status_code=303)
        body = await _small_body(request)
        form = parse_qs(body.decode("utf-8", "replace")) if body is not None else {}
        given = (form.get("token") or [""])[0]
        target = _safe_next((form.get("next") or ["/"])[0])
        if not hmac.compare_digest(given.encode(), token.encode()):
            message = "That token is not the web view's."
            return self._login_page(request, 401, message, "bad", target)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            _session(token),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def logout(self, request: Request) -> Response:
        """Forget the session cookie."""
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- plumbing -----------------------------------------------------------------------

    def _page(self, name: str, handler: Handler) -> Handler:
        """Guard a page (client, token), turn bad filters and store outages into pages."""

        async def guarded(request: Request) -> Response:
            response = self._refusal(request)
            if response is None:
                try:
                    response = await handler(request)
                except FilterError as error:
                    response = self._message(request, 400, "Bad filter", str(error), "bad")
                except (StoreError, OSError) as error:
                    message = f"The controller's store cannot be read: {error}"
                    response = self._message(request, 503, "Store unavailable", message, "bad")
            response.headers.update(SECURITY_HEADERS)
            if self._on_request is not None:
                self._on_request(name, response.status_code)
            return response

        return guarded

    def _refusal(self, request: Request) -> Response | None:
        """Why this request may not see the page, as a response; None when it may."""
        refused = self._refused_host(request)
        if refused is not None:
            return refused
        token_env = self.config.web.token_env
        if token_env is None:
            return None
        token = self._token()
        if token is None:
            message = f"The web view's token variable {token_env} is not set; it serves nothing."
            return self._message(request, 503, "Web view locked", message, "bad")
        if _bearer(request.headers.get("authorization"), token) or hmac.compare_digest(
            request.cookies.get(COOKIE, ""), _session(token)
        ):
            return None
        response = self._login_page(request, 401, "Sign in to see this page.", "warn")
        response.headers["WWW-Authenticate"] = 'Bearer realm="qrelease"'
        return response

    def _refused_host(self, request: Request) -> Response | None:
        host = request.client.host if request.client else ""
        if self.config.web.remote or _loopback(host):
            return None
        message = (
            "The web view answers this machine only. To serve other hosts, set "
            "[web] remote = true and token_env in the controller's config."
        )
        return self._message(request, 403, "Loopback only", message, "bad")

    def _token(self) -> str | None:
        name = self.config.web.token_env
        value = os.environ.get(name, "").strip() if name else ""
        return value or None

    def _render(
        self, request: Request, template: str, page: str, live: Live | None, **context: Any
    ) -> HTMLResponse:
        return HTMLResponse(self._html(request, template, page, live, **context))

    def _html(
        self, request: Request, template: str, page: str, live: Live | None, **context: Any
    ) -> str:
        signed_in = self._token() is not None and COOKIE in request.cookies
        values = {"page": page, "live": live, "now": self.clock(), "signed_in": signed_in}
        return self._templates.get_template(template).render(**values, **context)

    def _message(
        self,
        request: Request,
        status: int,
        heading: str,
        message: str,
        tone: str,
        **context: Any,
    ) -> HTMLResponse:
        context.setdefault("suggestions", [])
        context.setdefault("login", False)
        context.setdefault("next_path", "/")
        html = self._html(
            request,
            "message.html",
            "",
            None,
            heading=heading,
            message=message,
            tone=tone,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def _login_page(
        self, request: Request, status: int, message: str, tone: str, target: str | None = None
    ) -> HTMLResponse:
        if target is None:
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            target = request.query_params.get("next") if path.startswith("/login") else path
        response = self._message(
            request,
            status,
            "Sign in",
            message,
            tone,
            login=True,
            next_path=_safe_next(target or "/"),
        )
        response.headers.update(SECURITY_HEADERS)
        return response

    async def _timeline(self, query: HistoryQuery, live: Live) -> tuple[list[Any], str | None]:
        return await self.data.run(
            self.data.timeline, live.fetched_revision, query.env, query.app, query.since
        )

    async def _export_rows(self, request: Request) -> list[dict[str, Any]]:
        query = parse_query(request.query_params, self.clock())
        entries, _ = await self._timeline(query, self.live())
        return [entry.as_json() for entry in entries if query.keeps(entry)]


def _apps_of(live: Live, env: str) -> Mapping[str, str]:
    environment = live.environments.get(env)
    return environment.apps if environment else {}


def _loopback(host: str) -> bool:
    """True for 127.0.0.0/8 and ::1 (and IPv4-mapped loopback)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def _bearer(header: str | None, token: str) -> bool:
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def _session(token: str) -> str:
    """The cookie value: an HMAC of the token, so the cookie jar never holds the token."""
    return hmac.new(token.encode(), b"qrelease web session", hashlib.sha256).hexdigest()


def _safe_next(path: str) -> str:
    """A local path to go back to after signing in; anything else goes to `/`.

    >>> _safe_next("/history?app=qrng"), _safe_next("//evil.example/"), _safe_next("https://x")
    ('/history?app=qrng', '/', '/')
    """
    if not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def _qs(params: Mapping[str, str | None]) -> str:
    kept = {key: value for key, value in params.items() if value}
    return "?" + urlencode(kept) if kept else ""


async def _small_body(request: Request) -> bytes | None:
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > MAX_FORM:
            return None
    return bytes(body)


async def _csv_lines(rows: list[dict[str, Any]]) -> AsyncIterator[str]:
    """The header, then the rows, a chunk at a time."""
    yield ",".join(COLUMNS) + "\r\n"
    for start in range(0, len(rows), CSV_CHUNK):
        out = io.StringIO()
        csv.DictWriter(out, fieldnames=list(COLUMNS)).writerows(rows[start : start + CSV_CHUNK])
        yield out.getvalue()


async def _chunks(spool: IO[bytes]) -> AsyncIterator[bytes]:
    try:
        while chunk := spool.read(1 << 16):
            yield chunk
    finally:
        spool.close()
