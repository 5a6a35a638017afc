"""What the Azure backends share: credentials, one retry policy, TLS trust, errors, redaction.

Every Azure client qrelease builds (ARM's resource groups and deployments, the Quantum
workspace and its endpoint lookup, the blob storage its jobs go through) gets its options
from one `Pipeline` per backend: the same retry rules (an `AzureRetry` of its own), the
same timeouts and the same TLS trust (`connection_verify`: True, or a CA bundle path for
a private CA or a TLS-inspecting proxy). Only azure-core and
azure-identity are imported: each service SDK still enters through its own module
(`azure/quantum.py`, `azure/arm.py`).

Failures come in three kinds, and callers treat them differently:
- auth (401/403, a credential that cannot produce a token): clear and immediate, never
  retried, naming the environment and where the credential came from — never the secret;
- transient (408, 429, 5xx, timeouts, refused connections): retried by `AzureRetry` where
  that is safe, and reported with the retries it really made ("retried 2 times: ...");
- anything else (an untrusted TLS certificate among them): a real error of the request,
  reported as the service worded it.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy

from qrelease.redaction import redact

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
REFUSED_STATUS = frozenset({408, 429})  # the service did nothing with the request
AUTH_STATUS = frozenset({401, 403})
SAFE_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
# POSTs that change nothing, or change the same thing however often they are sent.
SAFE_POSTS = (
    "/validate",  # ARM: validate a deployment
    "/whatif",  # ARM: what-if of a deployment
    "/storage/sasuri",  # Azure Quantum: a SAS link into the workspace's storage
    ":cancel",  # Azure Quantum: cancel a job (twice is the same as once)
    "/providers/microsoft.resourcegraph/resources",  # Resource Graph: a query
)
NOT_RETRIED_ERRORS = ("CERTIFICATE_VERIFY_FAILED", "not permitted for non-TLS")
# What azure-storage-blob's pipeline leaves for its own retry policy (a secondary endpoint,
# a retry hook); qrelease uses the primary endpoint only, so AzureRetry drops them and, as
# the storage SDK's policy does, tells the response which location answered.
STORAGE_RETRY_OPTIONS = ("hosts", "location_mode", "retry_to_secondary", "retry_hook")
_MAX_DETAIL = 400
_NOTES_SHOWN = 5

Kind = Literal["auth", "transient", "other"]
log = logging.getLogger("qrelease.azure")


class AzureAuthError(Exception):
    """Credentials are missing or refused; retrying will not help, so say so at once."""


class AzureUnavailable(Exception):
    """A service kept failing transiently (429, 5xx, timeouts) through every safe retry."""


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
    """How hard the clients try: attempts, backoff, the longest Retry-After honoured, timeouts.

    >>> RetrySettings(attempts=3).retries
    2
    """

    attempts: int = 5
    backoff_seconds: float = 0.8
    backoff_max_seconds: float = 30.0
    retry_after_max_seconds: float = 60.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0

    @property
    def retries(self) -> int:
        """Retries after the first attempt."""
        return max(self.attempts - 1, 0)


def safe_to_repeat(method: str, url: str) -> bool:
    """Whether a request may be sent again when it is unknown whether the service acted on it.

    GET, HEAD, PUT (ARM deployments and jobs are created by name), DELETE and OPTIONS are;
    of the POSTs, those listed in SAFE_POSTS (validate, what-if, storage links, job cancel).

    >>> safe_to_repeat("POST", "https://m/rg/providers/Microsoft.Resources/deployments/d/whatIf?x=1")
    True
    >>> safe_to_repeat("POST", "https://q/workspaces/w/jobs"), safe_to_repeat("PUT", "https://q/j")
    (False, True)
    """
    verb = method.upper()
    if verb in SAFE_METHODS:
        return True
    return verb == "POST" and _path(url).lower().rstrip("/").endswith(SAFE_POSTS)


class RetryNotes:
    """The retries the AzureRetry policies of one backend made, kept per calling thread."""

    def __init__(self) -> None:
        self._local = threading.local()

    def add(self, text: str) -> None:
        """Note one retry made on this thread."""
        self._notes().append(text)

    def take(self) -> list[str]:
        """The retries made on this thread since the last call, oldest first."""
        notes = self._notes()
        self._local.notes = []
        return notes

    def _notes(self) -> list[str]:
        notes: list[str] | None = getattr(self._local, "notes", None)
        if notes is None:
            notes = self._local.notes = []
        return notes


class AzureRetry(RetryPolicy):  # type: ignore[type-arg]  # azure-core's policy generics vary by transport
    """azure-core's RetryPolicy with qrelease's rules, used by every Azure client it builds.

    What is retried: 408, 429, 500, 502, 503, 504 and network errors on requests that are
    safe to repeat (`safe_to_repeat`); any other request only on 408 and 429, with which
    the service says it did nothing. (azure-core's own policy skips a POST's 429 without
    Retry-After and its 502, and retries any status that carries Retry-After.) An untrusted
    TLS certificate is never retried. How long it waits: the Retry-After the service asks
    for, at most `retry_after_max_seconds`, else exponential backoff. How often:
    `attempts` in all. Each retry it makes is logged and added to `notes` for the calling
    thread, which the caller takes to say "retried N times" only when N > 0. A pipeline
    links its policies to each other, so each client gets its own instance.
    """

    def __init__(self, settings: RetrySettings, notes: RetryNotes | None = None) -> None:
        retries = settings.retries
        super().__init__(
            retry_total=retries,
            retry_connect=retries,
            retry_read=retries,
            retry_status=retries,
            retry_backoff_factor=settings.backoff_seconds,
            retry_backoff_max=settings.backoff_max_seconds,
        )
        self.settings = settings
        self.notes = notes or RetryNotes()

    def send(self, request: Any) -> PipelineResponse[Any, Any]:
        """azure-core's retry loop; a storage request's response learns its location mode."""
        location = request.context.options.get("location_mode")
        response: PipelineResponse[Any, Any] = super().send(request)
        if location is not None:
            response.http_response.location_mode = location
        return response

    def configure_retries(self, options: dict[str, Any]) -> dict[str, Any]:
        """azure-core's per-request settings, after dropping the storage SDK's own."""
        for name in STORAGE_RETRY_OPTIONS:
            options.pop(name, None)
        settings: dict[str, Any] = super().configure_retries(options)
        return settings

    def _is_method_retryable(
        self, settings: dict[str, Any], request: Any, response: Any = None
    ) -> bool:
        """Safe requests on any transient failure; others only when the service refused them."""
        if safe_to_repeat(request.method, request.url):
            return True
        return response is not None and response.status_code in REFUSED_STATUS

    def is_retry(self, settings: dict[str, Any], response: PipelineResponse[Any, Any]) -> bool:
        """A transient status on a request this policy may repeat (never any other status)."""
        http = response.http_response
        if http.status_code not in TRANSIENT_STATUS:
            return False
        return self._is_method_retryable(settings, response.http_request, http)

    def is_exhausted(self, settings: dict[str, Any]) -> bool:
        """True once any budget (total, connect, read, status) is spent: `attempts` in all."""
        budgets: list[int] = [settings[name] for name in ("total", "connect", "read", "status")]
        return min(budgets) < 0

    def increment(
        self, settings: dict[str, Any], response: Any = None, error: Exception | None = None
    ) -> bool:
        """Count a failure; when a retry follows, note and log it."""
        if error is not None and any(text in str(error) for text in NOT_RETRIED_ERRORS):
            return False
        retrying = bool(super().increment(settings, response=response, error=error))
        if retrying and response is not None:
            self._note(_failure(response, error), self.settings.retries - settings["total"])
        return retrying

    def _sleep_for_retry(self, response: PipelineResponse[Any, Any], transport: Any) -> bool:
        """Wait as long as Retry-After asks, but never longer than the cap."""
        retry_after = self.get_retry_after(response)
        if retry_after is None:
            return False
        wait = min(retry_after, self.settings.retry_after_max_seconds)
        if wait > 0:
            transport.sleep(wait)
        return True

    def _note(self, text: str, number: int) -> None:
        self.notes.add(text)
        log.warning("azure: %s; retrying (retry %d of %d)", text, number, self.settings.retries)


class Pipeline:
    """What every Azure client of one backend shares: the retry rules, timeouts, TLS trust.

    `connection_verify` is azure-core's TLS setting: True, or the path of a CA bundle. With
    True, the requests-based Azure clients trust the bundle named by REQUESTS_CA_BUNDLE
    (or CURL_CA_BUNDLE) when it is set, and so does `ssl_context`, so that one variable
    reaches every client in production.
    """

    def __init__(self, retry: RetrySettings, connection_verify: bool | str = True) -> None:
        self.retry = retry
        self.connection_verify = connection_verify
        self.notes = RetryNotes()

    def policy(self) -> AzureRetry:
        """A retry policy for one more client, noting into this pipeline's notes."""
        return AzureRetry(self.retry, self.notes)

    def options(self) -> dict[str, Any]:
        """Keyword arguments for an azure-core based client (ARM, workspace, blob storage)."""
        return {
            "retry_policy": self.policy(),
            "connection_timeout": self.retry.connect_timeout,
            "read_timeout": self.retry.read_timeout,
            "connection_verify": self.connection_verify,
        }

    def ssl_context(self) -> ssl.SSLContext | bool:
        """The same TLS trust for a client outside azure-core (httpx's `verify`)."""
        bundle = self.connection_verify
        if bundle is True:
            bundle = (
                os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
            )
        if isinstance(bundle, str):
            return ssl.create_default_context(cafile=bundle)
        return bundle

    def take(self) -> list[str]:
        """The retries made on this thread since the last call."""
        return self.notes.take()


def retried(notes: Sequence[str]) -> str:
    """How many retries a call made and why (the last few), for logs and messages.

    >>> retried(["HTTP 503 on GET https://h/a", "timeout on GET https://h/a"])
    'retried 2 times: HTTP 503 on GET https://h/a; timeout on GET https://h/a'
    """
    count = len(notes)
    shown = "; ".join(notes[-_NOTES_SHOWN:])
    last = f"the last {_NOTES_SHOWN}: " if count > _NOTES_SHOWN else ""
    return f"retried {count} time{'' if count == 1 else 's'}: {last}{shown}"


def _failure(response: Any, error: Exception | None) -> str:
    """'HTTP 503 on GET https://...' or 'timeout on POST https://...' (no query string)."""
    http = response.http_request
    where = f"{http.method} {_path(http.url)}"
    if error is not None:
        return f"{_network_reason(error)} on {where}"
    return f"HTTP {response.http_response.status_code} on {where}"


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
        if any(text in str(error) for text in NOT_RETRIED_ERRORS):
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
    tried = f" ({retried(notes)})" if notes else ""
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
