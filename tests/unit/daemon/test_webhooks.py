"""Webhooks: each provider's proof, refusals that trigger nothing, and the body size limit."""

from __future__ import annotations

import base64
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest

from qrelease.daemon import Controller
from qrelease.daemon.webhooks import MAX_BODY_BYTES, basic_auth_password, sign, verify
from tests.helpers.daemon import SECRET, SECRET_ENV, Api, Rig, synced, wait_for

BODY = b'{"ref": "refs/heads/main", "anything": "is ignored"}'


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


VALID = {
    "github": {"X-Hub-Signature-256": sign(BODY, SECRET), "X-GitHub-Event": "push"},
    "gitlab": {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Push Hook"},
    "azure-devops": {"Authorization": _basic("service-hook", SECRET)},
    "generic": {"X-Qrelease-Signature": sign(BODY, SECRET)},
}
INVALID = {
    "github": {"X-Hub-Signature-256": sign(BODY, "wrong-secret")},
    "github-unprefixed": {"X-Hub-Signature-256": sign(BODY, SECRET).removeprefix("sha256=")},
    "gitlab": {"X-Gitlab-Token": SECRET + "x"},
    "azure-devops": {"Authorization": _basic("service-hook", "nope")},
    "azure-devops-bearer": {"Authorization": f"Bearer {SECRET}"},
    "generic": {"X-Qrelease-Signature": sign(BODY + b" ", SECRET)},
    "none": {},
}


# -- the checks themselves ------------------------------------------------------------


@pytest.mark.parametrize("provider", sorted(VALID))
def test_each_provider_proof_verifies(provider: str) -> None:
    headers = {k.lower(): v for k, v in VALID[provider].items()}
    verdict = verify(headers, BODY, SECRET)
    assert (verdict.provider, verdict.valid) == (provider, True)


@pytest.mark.parametrize("case", sorted(INVALID))
def test_wrong_or_missing_proof_is_refused(case: str) -> None:
    headers = {k.lower(): v for k, v in INVALID[case].items()}
    assert not verify(headers, BODY, SECRET).valid


def test_signature_covers_the_exact_body() -> None:
    headers = {"x-hub-signature-256": sign(BODY, SECRET)}
    assert verify(headers, BODY, SECRET).valid
    assert not verify(headers, BODY.replace(b"main", b"evil"), SECRET).valid


@pytest.mark.parametrize("value", ["Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()])
def test_malformed_basic_auth_has_no_password(value: str) -> None:
    assert basic_auth_password(value) is None


# -- over HTTP, against a running controller ------------------------------------------


@dataclass
class Hooked:
    """A running controller, its client, and every trigger its HTTP handlers pulled."""

    controller: Controller
    api: Api
    triggers: list[str]


def record_triggers(controller: Controller) -> list[str]:
    """Record each trigger (handlers pull it before they answer, so no waiting is needed)."""
    triggers: list[str] = []
    pull = controller.wake.trigger

    def recording(reason: str) -> None:
        triggers.append(reason)
        pull(reason)

    controller.wake.trigger = recording  # type: ignore[method-assign]
    return triggers


@pytest.fixture
def hooked(
    rig: Rig, api_for: Callable[[Controller], Api], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Hooked]:
    """A controller with a webhook secret that polls too rarely to pass on its own."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    config = rig.config(source={"interval": timedelta(seconds=30), "resync": timedelta(minutes=30)})
    controller = rig.start(config)
    api = api_for(controller)
    wait_for("first pass", lambda: synced(api) and _passes(api) >= 1)  # rows come first
    yield Hooked(controller, api, record_triggers(controller))
    assert controller.close() == 0


def _passes(api: Api) -> int:
    return int(api.status()["passes"])


@pytest.mark.parametrize("provider", sorted(VALID))
def test_valid_webhook_triggers_a_fetch_and_pass(provider: str, hooked: Hooked, rig: Rig) -> None:
    api = hooked.api
    rig.soaked()
    revision = rig.pin("prod", "qrng", "0.2.0")
    response = api.client.post("/hooks/git", content=BODY, headers=VALID[provider])
    assert response.status_code == 202
    assert response.json() == {"accepted": True, "provider": provider}
    assert hooked.triggers == [f"webhook:{provider}"]
    wait_for("the webhook pass", lambda: api.status()["revision"] == revision, timeout=2.0)
    assert api.status()["last_pass"]["trigger"] == f"webhook:{provider}"
    assert api.row("prod", "qrng")["deployed"] == "0.2.0"
    assert (
        api.metric(f'qrelease_webhook_requests_total{{provider="{provider}",result="accepted"}}')
        == 1
    )
    assert SECRET not in rig.log.getvalue()


def test_webhook_without_changes_still_runs_a_pass(hooked: Hooked) -> None:
    api = hooked.api
    before = _passes(api)
    api.client.post("/hooks/git", content=BODY, headers=VALID["generic"])
    wait_for("a pass", lambda: _passes(api) == before + 1, timeout=2.0)


def test_bad_signatures_are_401_and_trigger_nothing(hooked: Hooked, rig: Rig) -> None:
    api = hooked.api
    before = _passes(api)
    fetches = api.metric("qrelease_source_fetch_duration_seconds_count")
    rig.pin("prod", "qrng", "0.2.0")
    for case, headers in sorted(INVALID.items()):
        response = api.client.post("/hooks/git", content=BODY, headers=headers)
        assert response.status_code == 401, case
        assert "signature" in response.json()["error"], case
        assert hooked.triggers == [], case
    assert _passes(api) == before
    assert api.metric("qrelease_source_fetch_duration_seconds_count") == fetches
    assert api.row("prod", "qrng")["deployed"] == "0.1.0"
    assert (
        api.metric('qrelease_webhook_requests_total{provider="github",result="unauthorized"}') == 2
    )
    assert SECRET not in rig.log.getvalue()


def test_body_over_one_mib_is_413_and_triggers_nothing(hooked: Hooked) -> None:
    api = hooked.api
    big = b"x" * (MAX_BODY_BYTES + 1)
    before = _passes(api)
    declared = api.client.post(
        "/hooks/git", content=big, headers={"X-Qrelease-Signature": sign(big, SECRET)}
    )
    assert declared.status_code == 413
    streamed = api.client.post(
        "/hooks/git",
        content=_chunks(big),
        headers={"X-Qrelease-Signature": sign(big, SECRET)},
    )
    assert streamed.status_code == 413  # no Content-Length: the limit holds while reading
    assert hooked.triggers == []
    at_limit = b"y" * MAX_BODY_BYTES
    accepted = api.client.post(
        "/hooks/git", content=at_limit, headers={"X-Qrelease-Signature": sign(at_limit, SECRET)}
    )
    assert accepted.status_code == 202
    assert hooked.triggers == ["webhook:generic"]  # exactly 1 MiB is allowed
    wait_for("the accepted pass", lambda: _passes(api) == before + 1, timeout=2.0)


def test_chunked_body_is_cut_off_while_reading(hooked: Hooked) -> None:
    address = hooked.controller.http.address
    big = b"z" * (MAX_BODY_BYTES + 1024)
    head = (
        "POST /hooks/git HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        f"X-Qrelease-Signature: {sign(big, SECRET)}\r\n\r\n"
    ).encode()
    with socket.create_connection((address.host, address.port), timeout=5) as conn:
        conn.sendall(head)
        for start in range(0, len(big), 65536):
            piece = big[start : start + 65536]
            try:
                conn.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            except OSError:
                break  # the server answered and closed: fine
        reply = conn.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")
    assert hooked.triggers == []


def test_without_a_secret_the_webhook_is_disabled(
    rig: Rig, api_for: Callable[[Controller], Api], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    controller = rig.start(rig.config(source={"interval": timedelta(seconds=30)}))
    api = api_for(controller)
    wait_for("first pass", lambda: synced(api))
    triggers = record_triggers(controller)
    response = api.client.post("/hooks/git", content=BODY, headers=VALID["generic"])
    assert response.status_code == 503
    assert SECRET_ENV in response.json()["error"]
    assert triggers == []
    assert api.client.get("/hooks/git").status_code == 405
    assert controller.close() == 0


def _chunks(data: bytes, size: int = 65536) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_streamed_request_has_no_content_length() -> None:
    request = httpx.Request("POST", "http://x/", content=_chunks(b"abc"))
    assert "content-length" not in request.headers  # so the 413 above came from the stream
