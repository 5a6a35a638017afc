"""The controller's local API: `qrelease reconcile` asks a running controller for a pass.

One process changes a state dir at a time: the one holding its lock. When that is a
controller, a CLI reconcile does not race it (two processes deploying the same release,
every step recorded twice); it asks the controller to run the pass, streams the rows as
the pass records them and exits with the pass's result, as `flux reconcile` does.

The controller publishes where it listens in `<state>/controller.api.json` and a random
token in `<state>/controller.token` (mode 0600, so only the state dir's owner can ask);
both are removed when it stops. Requests carry the token as a bearer token. The stream
is JSON lines (the request body: `{"env": ..., "app": ..., "retry": ...}`, each optional):
`{"row": {...}}` for every row the pass writes, then one `{"report": {...}}`
(or `{"error": "..."}`).
"""

from __future__ import annotations

import hmac
import json
import os
import queue
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from qrelease import __version__
from qrelease.daemon.settings import Address
from qrelease.planning.planner import Retry

ENDPOINT_NAME = "controller.api.json"
TOKEN_NAME = "controller.token"  # noqa: S105 the file's name, not a token
RECONCILE_PATH = "/api/v1/reconcile"
STREAM_END = None


class ApiError(Exception):
    """The running controller could not be asked, or refused; the message says why."""


@dataclass
class PassRequest:
    """One pass asked for through the API, and the stream its rows and report go to."""

    env: str | None
    retry: Retry
    app: str | None = None
    events: queue.Queue[dict[str, Any] | None] = field(default_factory=queue.Queue)

    def send(self, event: dict[str, Any]) -> None:
        """Queue one event for the caller (from the reconcile thread)."""
        self.events.put(event)

    def close(self) -> None:
        """Say the stream is over."""
        self.events.put(STREAM_END)


def publish_endpoint(state_dir: Path, address: Address) -> str:
    """Write where the API listens and a fresh token (0600); returns the token."""
    host = address.host
    if host in ("0.0.0.0", ""):  # noqa: S104 mapping a wildcard bind to loopback, not binding
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    url = f"http://{Address(host, address.port)}"
    token = secrets.token_urlsafe(32)
    state_dir.mkdir(parents=True, exist_ok=True)
    _write_private(state_dir / TOKEN_NAME, token + "\n")
    endpoint = {"url": url, "pid": os.getpid(), "version": __version__}
    _write_private(state_dir / ENDPOINT_NAME, json.dumps(endpoint) + "\n")
    return token


def withdraw_endpoint(state_dir: Path) -> None:
    """Remove the endpoint and token files (the controller is stopping)."""
    for name in (ENDPOINT_NAME, TOKEN_NAME):
        (state_dir / name).unlink(missing_ok=True)


def read_endpoint(state_dir: Path) -> tuple[str, str] | None:
    """(url, token) of the controller running on `state_dir`, if it published them."""
    try:
        endpoint = json.loads((state_dir / ENDPOINT_NAME).read_text())
        token = (state_dir / TOKEN_NAME).read_text().strip()
    except (OSError, ValueError):
        return None
    url = endpoint.get("url") if isinstance(endpoint, dict) else None
    return (str(url), token) if url and token else None


def authorized(header: str | None, token: str) -> bool:
    """True when an Authorization header carries the token (compared in constant time)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


def request_pass(
    state_dir: Path,
    env: str | None,
    retry: Retry,
    on_row: Callable[[dict[str, Any]], None],
    timeout: float | None = None,
    app: str | None = None,
) -> dict[str, Any]:
    """Ask the controller on `state_dir` for a pass; rows go to `on_row`; returns the report."""
    endpoint = read_endpoint(state_dir)
    if endpoint is None:
        raise ApiError(
            f"{state_dir}: a controller holds the state dir but publishes no API "
            f"({ENDPOINT_NAME}); is it `controller run --once`? try again when it ends"
        )
    url, token = endpoint
    body = {"env": env, "retry": str(retry), "app": app}
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(10.0, read=timeout)) as client,
            client.stream("POST", url + RECONCILE_PATH, json=body, headers=headers) as response,
        ):
            if response.status_code != 200:
                response.read()
                raise ApiError(
                    f"the controller at {url} answered {response.status_code}: "
                    f"{_error_of(response)}"
                )
            return _consume(response.iter_lines(), on_row)
    except httpx.HTTPError as error:
        raise ApiError(f"cannot reach the controller at {url}: {error}") from None


def _consume(lines: Iterator[str], on_row: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)
        if "row" in event:
            on_row(event["row"])
        elif "report" in event:
            report: dict[str, Any] = event["report"]
            return report
        elif "error" in event:
            raise ApiError(f"the controller's pass failed: {event['error']}")
    raise ApiError("the controller ended the stream before the pass finished")


def _error_of(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", response.text))
    except ValueError:
        return response.text[:200]


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, replacing any previous one atomically."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    temp.replace(path)
