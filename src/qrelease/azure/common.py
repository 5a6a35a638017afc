"""What the Azure backends share: credentials, transient-failure handling, errors, redaction.

Both Azure modules reach their services through azure-core pipelines, so retries, timeouts,
the record of transient failures and the wording of auth errors are decided once, here.
Only azure-core and azure-identity are imported: each service SDK still enters through its
own module (`azure/quantum.py`, `azure/arm.py`).

Failures come in three kinds, and callers treat them differently:
- auth (401/403, a credential that cannot produce a token): clear and immediate, never
  retried, naming the environment and where the credential came from — never the secret;
- transient (408, 429, 5xx, timeouts, refused connections): retried with backoff by the
  pipeline's RetryPolicy (Retry-After is honoured), each attempt noted by `TransientLog`;
- anything else: a real error of the request, reported as the service worded it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy

from qrelease.redaction import redact

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
AUTH_STATUS = frozenset({401, 403})
_MAX_DETAIL = 400

Kind = Literal["auth", "transient", "other"]
log = logging.getLogger("qrelease.azure")


class AzureAuthError(Exception):
    """Credentials are missing or refused; retrying will not help, so say so at once."""


class AzureUnavailable(Exception):
    """A service kept failing transiently (429, 5xx, timeouts) after every retry."""


class RedactingFilter(logging.Filter):
    """Masks secrets in the records of SDK loggers that print SAS URLs at info/debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Render the record once, redacted, so no argument carries a secret onwards."""
        record.msg = redact(record.getMessage())
        record.args = None
        return True


_FILTER = RedactingFilter()


def redact_loggers(names: Iterable[str]) -> None:
    """Install the redacting filter on the named loggers (idempotent)."""
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


@dataclass(frozen=True)
class CredentialChoice:
    """The credential a backend uses, where it came from (for messages) and what to mask."""

    credential: Any
    source: str
    secrets: tuple[str, ...] = ()


def default_credential() -> CredentialChoice:
    """azure-identity's DefaultAzureCredential: environment, workload/managed identity, CLI."""
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential(exclude_interactive_browser_credential=True)
    return CredentialChoice(credential, "DefaultAzureCredential (azure-identity)")


def given_credential(credential: Any) -> CredentialChoice:
    """A credential object handed to a backend by its caller."""
    return CredentialChoice(credential, f"the {type(credential).__name__} given to qrelease")


@dataclass(frozen=True)
class RetrySettings:
    """How hard the pipelines try: attempts, exponential backoff and per-request timeouts.

    >>> RetrySettings(attempts=3).pipeline_options()["retry_total"]
    2
    """

    attempts: int = 5
    backoff_seconds: float = 0.8
    backoff_max_seconds: float = 30.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    def pipeline_options(self) -> dict[str, Any]:
        """azure-core client keyword arguments (RetryPolicy and transport settings)."""
        retries = max(self.attempts - 1, 0)
        return {
            "retry_total": retries,
            "retry_connect": retries,
            "retry_read": retries,
            "retry_status": retries,
            "retry_backoff_factor": self.backoff_seconds,
            "retry_backoff_max": self.backoff_max_seconds,
            "connection_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
        }


class TransientLog(HTTPPolicy):  # type: ignore[type-arg]  # azure-core's policy generics vary by transport
    """A per-retry pipeline policy noting each transient response or network failure.

    It sits right after the RetryPolicy, so it sees every attempt; `take()` hands the notes
    to the caller, which reports them (log, gate details, error messages).
    """

    def __init__(self) -> None:
        super().__init__()
        self._notes: list[str] = []
        self._lock = threading.Lock()

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        """Pass the request on, noting a transient status or a network error."""
        http = request.http_request
        where = f"{http.method} {_path(http.url)}"
        try:
            response: PipelineResponse[Any, Any] = self.next.send(request)
        except (ServiceRequestError, ServiceResponseError) as error:
            self._note(f"{_network_reason(error)} on {where}")
            raise
        status = response.http_response.status_code
        if status in TRANSIENT_STATUS:
            self._note(f"HTTP {status} on {where}")
            _release(response.http_response)
        return response

    def _note(self, text: str) -> None:
        with self._lock:
            self._notes.append(text)
        log.warning("azure transient failure, retrying: %s", text)

    def take(self) -> list[str]:
        """The notes since the last call, oldest first."""
        with self._lock:
            notes, self._notes = self._notes, []
        return notes


def _release(http_response: Any) -> None:
    """Read a response's body so its connection goes back to the pool (or is closed)."""
    read = getattr(http_response, "read", None)
    if callable(read):
        try:
            read()
        except Exception as error:  # a broken error body must not hide the retry
            log.debug("could not read a transient error response: %s", type(error).__name__)


def _path(url: str) -> str:
    """A URL without its query string (which may hold a SAS signature).

    >>> _path("https://h/a/b?sig=x")
    'https://h/a/b'
    """
    return url.split("?", 1)[0]


def _network_reason(error: BaseException) -> str:
    """'timeout' or 'connection error', from an azure-core transport exception."""
    text = str(error).lower()
    return "timeout" if "timed out" in text or "timeout" in text else "connection error"


def classify(error: BaseException) -> Kind:
    """Whether an SDK exception is an auth failure, a transient one, or another error."""
    if isinstance(error, ClientAuthenticationError):
        return "auth"
    if isinstance(error, HttpResponseError):
        status = error.status_code
        if status in AUTH_STATUS:
            return "auth"
        if status in TRANSIENT_STATUS:
            return "transient"
        return "other"
    if isinstance(error, ServiceRequestError | ServiceResponseError):
        if "not permitted for non-TLS" in str(error):
            return "other"
        return "transient"
    return "other"


def error_summary(error: BaseException, secrets: Iterable[str] = ()) -> str:
    """One redacted line: the HTTP status, the service's error code and its message."""
    if isinstance(error, HttpResponseError):
        parts = [f"HTTP {error.status_code}"] if error.status_code else []
        service_error = error.error
        if service_error is not None and service_error.code:
            parts.append(f"{service_error.code}: {service_error.message}")
        else:
            parts.append(_first_line(error.message or str(error)))
        return redact(" ".join(parts), secrets)[:_MAX_DETAIL]
    return redact(_first_line(str(error)) or type(error).__name__, secrets)[:_MAX_DETAIL]


def _first_line(text: str) -> str:
    """The first non-empty line of a (possibly multi-line) SDK message."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def auth_failure(
    environment: str, service: str, choice: CredentialChoice, doing: str, error: BaseException
) -> AzureAuthError:
    """The error for refused or unusable credentials, naming environment and credential source."""
    where = f"{environment}: " if environment else ""
    detail = error_summary(error, choice.secrets)
    text = (
        f"{where}{service} did not accept the credentials from {choice.source} while {doing}"
        f" ({detail}); fix the credential, then retry"
    )
    return AzureAuthError(text)


def unavailable(
    environment: str, service: str, doing: str, error: BaseException, notes: list[str]
) -> AzureUnavailable:
    """The error for a service that stayed unavailable through every retry."""
    where = f"{environment}: " if environment else ""
    tried = f" after retries ({'; '.join(notes[-5:])})" if notes else ""
    detail = error_summary(error)
    return AzureUnavailable(f"{where}{service} unavailable while {doing}{tried}: {detail}")


def plain(value: Any) -> Any:
    """An SDK model (MutableMapping-like, with `as_dict`) as plain JSON-ready values."""
    if isinstance(value, Enum):
        return plain(value.value)
    as_dict = getattr(value, "as_dict", None)
    if callable(as_dict):
        value = as_dict()
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
