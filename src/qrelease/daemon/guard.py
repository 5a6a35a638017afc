"""Read deadlines for the HTTP server, so a slow or lying client cannot hold a connection.

uvicorn (h11) bounds the idle time between requests (`timeout_keep_alive`) and the number
of connections served (`limit_concurrency`), but nothing bounds how long a client may take
to send a request: one byte of headers every few seconds, or a Content-Length it never
fulfils, keeps a connection open with no reply for as long as the client likes. Two small
guards close that gap, each at the only layer that can see its phase:

- `GuardedH11Protocol` (the connection): the request line and headers must arrive within
  `header_timeout` of the connection (on a kept-alive connection, of the request's first
  byte); late ones get a 408 and a close, and a connection that sent nothing is closed.
  A body still trickling in after the answer was sent is cut off `body_timeout` after
  the headers.
- `BodyDeadline` (ASGI, around the app): a handler that reads the body gets a 408 with
  `Connection: close` once `body_timeout` has passed since the headers.
"""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from typing import ClassVar, Literal

import h11
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from qrelease.config import HttpConfig
from qrelease.model.types import format_duration


def timeout_response(what: str, timeout: timedelta) -> bytes:
    """A whole `408 Request Timeout` with a close, as raw bytes: h11 answers only parsed requests.

    >>> timeout_response("request headers", timedelta(seconds=10)).splitlines()[0]
    b'HTTP/1.1 408 Request Timeout'
    """
    body = f"{what} not received within {format_duration(timeout)}\n".encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + body


def whole_seconds(duration: timedelta) -> int:
    """`duration` rounded up to whole seconds, at least 1 (uvicorn's keep-alive unit).

    >>> whole_seconds(timedelta(milliseconds=300)), whole_seconds(timedelta(seconds=5))
    (1, 5)
    """
    return max(1, math.ceil(duration.total_seconds()))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 connection with a deadline for the headers and for an unread body."""

    limits: ClassVar[HttpConfig] = HttpConfig()
    _deadline: asyncio.TimerHandle | None = None
    _awaiting: Literal["headers", "body"] = "headers"

    # uvicorn's own signature narrows asyncio's BaseTransport to Transport the same way.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the header deadline: a connection that never sends is closed too."""
        super().connection_made(transport)
        self._arm("headers")

    def data_received(self, data: bytes) -> None:
        """The first byte of a request on an idle keep-alive connection starts its deadline."""
        if self._deadline is None and self.conn.their_state is h11.IDLE:
            self._arm("headers")
        super().data_received(data)

    def handle_events(self) -> None:
        """Parse as uvicorn does, then move the deadline along with the request's state."""
        super().handle_events()
        state = self.conn.their_state
        if state is h11.SEND_BODY and self._deadline is not None and self._awaiting == "headers":
            self._arm("body")
        elif state is not h11.IDLE and state is not h11.SEND_BODY:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the deadline with the connection."""
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, awaiting: Literal["headers", "body"]) -> None:
        self._disarm()
        self._awaiting = awaiting
        timeout = self.limits.header_timeout if awaiting == "headers" else self.limits.body_timeout
        self._deadline = self.loop.call_later(timeout.total_seconds(), self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self._awaiting == "headers":
            self._headers_overdue()
        else:
            self._body_overdue()

    def _headers_overdue(self) -> None:
        """408 if part of a request came, a quiet close if nothing did."""
        if self.conn.their_state is not h11.IDLE or self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:
            self.logger.warning("request headers too slow: answered 408 and closed")
            self.transport.write(timeout_response("request headers", self.limits.header_timeout))
        self.transport.close()

    def _body_overdue(self) -> None:
        """Close once answered: now if the answer went out, else right after it."""
        if self.conn.their_state is not h11.SEND_BODY or self.cycle is None:
            return
        if self.cycle.response_complete:
            self.transport.close()
        else:
            self.cycle.keep_alive = False


def guarded_h11(limits: HttpConfig) -> type[GuardedH11Protocol]:
    """The protocol class for uvicorn's `http` setting, bound to these limits."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


class BodyDeadline:
    """ASGI middleware: a body that has not fully arrived `timeout` after the headers is 408."""

    def __init__(self, app: ASGIApp, timeout: timedelta) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app with a `receive` that gives up on the body at the deadline."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout.total_seconds()
        body_done = False

        async def receive_by_deadline() -> Message:
            nonlocal body_done
            if body_done:  # later calls only wait for a disconnect: no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"request body not received within {format_duration(self.timeout)}",
                    headers={"Connection": "close"},
                ) from None
            body_done = message["type"] != "http.request" or not message.get("more_body")
            return message

        await self.app(scope, receive_by_deadline, send)
