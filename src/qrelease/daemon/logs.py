"""The controller's structured JSON log, with secrets redacted in one place.

Operators ship these lines to a log store and search them by env, app, revision and step,
so each event is one JSON object per line. Secrets reach log calls by accident (a URL with
credentials in a git error, a header dict); the `Redactor` runs on every event, after
tracebacks are rendered, so no call site has to remember.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import FilteringBoundLogger

from qrelease.redaction import MIN_SECRET_LENGTH, REDACTED, SENSITIVE_KEY, redact

__all__ = ["REDACTED", "redact"]

HEADLINE = ("timestamp", "level", "event")
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class Redactor:
    """A structlog processor hiding sensitive keys, URL credentials and known secret values."""

    def __init__(self, known_secrets: Callable[[], Iterable[str | None]] = tuple) -> None:
        self._known_secrets = known_secrets

    def __call__(
        self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        secrets = [s for s in self._known_secrets() if s and len(s) >= MIN_SECRET_LENGTH]
        return {key: self._clean(key, value, secrets) for key, value in event_dict.items()}

    def _clean(self, key: str, value: Any, secrets: list[str]) -> Any:
        if SENSITIVE_KEY.search(key) and value is not None:
            return REDACTED
        if isinstance(value, str):
            return redact(value, secrets)
        if isinstance(value, dict):
            return {str(k): self._clean(str(k), v, secrets) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._clean("", item, secrets) for item in value]
        return value


def headline_first(
    logger: object, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Put time, level and event first, so a human scanning the lines reads them first."""
    head = {key: event_dict[key] for key in HEADLINE if key in event_dict}
    return {**head, **{k: v for k, v in event_dict.items() if k not in head}}


class LineWriter:
    """structlog's final logger: one line per event, to a stream looked up at each write."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def msg(self, message: str) -> None:
        """Write one rendered event as a line (threads never interleave within a line)."""
        stream = self._stream or sys.stderr
        with self._lock:
            stream.write(message + "\n")
            stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = msg


def make_logger(
    level: str = "info",
    known_secrets: Callable[[], Iterable[str | None]] = tuple,
    stream: TextIO | None = None,
) -> FilteringBoundLogger:
    """A JSON-lines logger with redaction; local to the caller (structlog's globals untouched)."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        Redactor(known_secrets),
        headline_first,
        structlog.processors.JSONRenderer(sort_keys=False),
    ]
    logger: FilteringBoundLogger = structlog.wrap_logger(
        LineWriter(stream),
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        cache_logger_on_first_use=False,
    )
    return logger


class ForwardHandler(logging.Handler):
    """Routes a library's stdlib logging (uvicorn) into the structured log."""

    def __init__(self, log: FilteringBoundLogger) -> None:
        super().__init__()
        self._log = log

    def emit(self, record: logging.LogRecord) -> None:
        """Re-emit the record as a structured event named after its logger."""
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        self._log.log(record.levelno, message, logger=record.name)
