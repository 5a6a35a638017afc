"""qrelease's retry policy (`AzureRetry`) in a real azure-core pipeline against a loopback server.

The ARM and Quantum tests show it at work inside the SDKs; these pin down its rules one by
one with a bare azure-core client: which requests are repeated on which failures, how
many times, how long it waits, and what it reports.
"""

from __future__ import annotations

import doctest
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core import PipelineClient
from azure.core.exceptions import ServiceRequestError
from azure.core.rest import HttpRequest

from qrelease.azure import common
from qrelease.azure.common import Pipeline, RetrySettings, retried, safe_to_repeat
from tests.helpers.azure import FakeService, LoopbackServer, Reply, self_signed_cert

FAST = RetrySettings(attempts=3, backoff_seconds=0.01, backoff_max_seconds=0.02, read_timeout=0.3)


class Echo(FakeService):
    """Answers every GET and POST with 200."""

    def __init__(self) -> None:
        super().__init__()
        self.route("GET", r"/.*", lambda request: Reply(200, {"ok": True}))
        self.route("POST", r"/.*", lambda request: Reply(200, {"ok": True}))


@pytest.fixture
def echo() -> Iterator[Echo]:
    fake = Echo()
    with LoopbackServer(fake):
        yield fake


def client(pipeline: Pipeline, url: str) -> PipelineClient[HttpRequest, object]:
    """A bare azure-core client on the pipeline's policy, as qrelease's SDK clients get it."""
    return PipelineClient(url, policies=[pipeline.policy()], **_transport(pipeline))


def _transport(pipeline: Pipeline) -> dict[str, object]:
    return {k: v for k, v in pipeline.options().items() if k != "retry_policy"}


def send(pipeline: Pipeline, fake: FakeService, method: str, path: str) -> int:
    with client(pipeline, fake.base_url) as http:
        response = http.send_request(HttpRequest(method, f"{fake.base_url}{path}"))
        return int(response.status_code)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_every_transient_status_is_retried_on_a_post_known_to_be_safe(
    echo: Echo, status: int
) -> None:
    echo.inject("POST", "/whatIf$", status=status)
    pipeline = Pipeline(FAST)

    assert send(pipeline, echo, "POST", "/deployments/d/whatIf") == 200

    assert echo.count("POST", "/whatIf$") == 2
    assert pipeline.take() == [f"HTTP {status} on POST {echo.base_url}/deployments/d/whatIf"]


@pytest.mark.parametrize(("status", "attempts"), [(429, 2), (408, 2), (502, 1), (503, 1)])
def test_a_post_not_known_to_be_safe_is_retried_only_when_the_service_did_nothing(
    echo: Echo, status: int, attempts: int
) -> None:
    echo.inject("POST", "/jobs$", status=status)
    pipeline = Pipeline(FAST)

    send(pipeline, echo, "POST", "/workspaces/w/jobs")

    assert echo.count("POST", "/jobs$") == attempts
    assert len(pipeline.take()) == attempts - 1


def test_attempts_bound_every_kind_of_failure_and_each_retry_is_noted(echo: Echo) -> None:
    echo.inject("GET", "/status$", status=503, times=10)
    pipeline = Pipeline(FAST)

    assert send(pipeline, echo, "GET", "/status?sig=secret") == 503

    assert echo.count("GET", "/status$") == FAST.attempts
    notes = pipeline.take()
    assert notes == [f"HTTP 503 on GET {echo.base_url}/status"] * 2  # no query string
    assert pipeline.take() == []


def test_a_read_timeout_is_retried_on_a_get(echo: Echo) -> None:
    echo.inject("GET", "/slow$", delay=0.8)
    pipeline = Pipeline(FAST)

    assert send(pipeline, echo, "GET", "/slow") == 200

    assert pipeline.take() == [f"timeout on GET {echo.base_url}/slow"]


def test_a_status_that_is_not_transient_is_never_retried_even_with_retry_after(
    echo: Echo,
) -> None:
    echo.inject("GET", "/bad$", status=400, headers={"Retry-After": "1"})
    pipeline = Pipeline(FAST)

    assert send(pipeline, echo, "GET", "/bad") == 400

    assert echo.count("GET", "/bad$") == 1 and pipeline.take() == []


def test_retry_after_is_waited_for_up_to_the_cap(echo: Echo, slept: list[float]) -> None:
    echo.inject("GET", "/busy$", status=503, headers={"Retry-After": "4"})
    echo.inject("GET", "/busy$", status=429, headers={"Retry-After": "900"})
    settings = RetrySettings(attempts=3, retry_after_max_seconds=20)

    assert send(Pipeline(settings), echo, "GET", "/busy") == 200

    assert slept == [4, 20]


def test_notes_belong_to_the_thread_that_made_the_call(echo: Echo) -> None:
    echo.inject("GET", "/a$", status=503)
    pipeline = Pipeline(FAST)
    seen: dict[str, list[str]] = {}

    def call(path: str) -> None:
        send(pipeline, echo, "GET", path)
        seen[path] = pipeline.take()

    threads = [threading.Thread(target=call, args=(path,)) for path in ("/a", "/b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert seen == {"/a": [f"HTTP 503 on GET {echo.base_url}/a"], "/b": []}


def test_an_untrusted_certificate_is_not_retried(tmp_path: Path) -> None:
    fake = Echo()
    with LoopbackServer(fake, self_signed_cert(tmp_path)):
        pipeline = Pipeline(FAST)  # trusts the system's CAs only
        with pytest.raises(ServiceRequestError, match="CERTIFICATE_VERIFY_FAILED"):
            send(pipeline, fake, "GET", "/x")

    assert pipeline.take() == []
    assert common.classify(ServiceRequestError("[SSL: CERTIFICATE_VERIFY_FAILED] x")) == "other"


def test_which_requests_are_safe_to_repeat() -> None:
    base = "https://management.azure.com/subscriptions/s/resourcegroups/g/providers"
    assert safe_to_repeat("POST", f"{base}/Microsoft.Resources/deployments/d/validate?a=1")
    assert safe_to_repeat("POST", f"{base}/Microsoft.Quantum/workspaces/w/jobs/j:cancel")
    assert safe_to_repeat("post", f"{base}/Microsoft.Quantum/workspaces/w/storage/sasUri")
    assert safe_to_repeat("PUT", f"{base}/Microsoft.Resources/deployments/d")
    assert not safe_to_repeat("POST", f"{base}/Microsoft.Quantum/workspaces/w/jobs")
    assert not safe_to_repeat("PATCH", f"{base}/Microsoft.Quantum/workspaces/w/jobs/j")


def test_retried_counts_and_shows_the_last_few() -> None:
    notes = [f"HTTP 503 on GET https://h/{n}" for n in range(7)]

    text = retried(notes)

    assert text.startswith("retried 7 times: the last 5: HTTP 503 on GET https://h/2;")
    assert retried(notes[:1]) == "retried 1 time: HTTP 503 on GET https://h/0"


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(common).failed == 0
