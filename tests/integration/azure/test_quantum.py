"""The Azure Quantum backend on the real azure-quantum SDK against a loopback workspace.

The SDK talks HTTP to `QuantumFake` (tests/azure_fakes.py): provider status, the storage SAS
route, job create/get/cancel and the blob uploads and downloads in between. qdk is real too.
The workspace client authenticates with an API key (the connection-string path), which
azure-core allows over plain HTTP; the bearer-token path is tested over HTTPS with a
self-signed certificate handed to the client as `connection_verify`.
"""

from __future__ import annotations

import doctest
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.core.exceptions import ClientAuthenticationError

from qrelease.azure import quantum as quantum_azure
from qrelease.azure.common import AzureAuthError, RetrySettings
from qrelease.azure.quantum import AzureQuantumBackend, Clock, align_keys, entry_point
from qrelease.model.environment import AzureQuantum
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.vocabulary import Availability, GateOutcome
from qrelease.quantum.base import GateReport, GateResult, ProgramSource
from qrelease.quantum.qdk import QdkBackend
from qrelease.redaction import redact
from tests.helpers import PROJECT_ROOT
from tests.helpers.azure import (
    EPOCH,
    SAS_SIGNATURE,
    ArmFake,
    JobScript,
    LoopbackServer,
    QuantumFake,
    StaticToken,
    private_ca,
    self_signed_cert,
)

ROOT = PROJECT_ROOT
SUB = "00000000-0000-0000-0000-0000000000a1"
KEY_VARIABLE = "QRELEASE_TEST_QUANTUM_CONNECTION"
API_KEY = "test-api-key-0123456789"
FAST = RetrySettings(
    attempts=3, backoff_seconds=0.01, backoff_max_seconds=0.02, connect_timeout=2, read_timeout=0.4
)


def connection_string(key: str = API_KEY, workspace: str = "ws-dev") -> str:
    """An Azure Quantum connection string as the portal shows it."""
    return (
        f"SubscriptionId={SUB};ResourceGroupName=rg-quantum;WorkspaceName={workspace};"
        f"ApiKey={key};QuantumEndpoint=https://eastus.quantum.azure.com/;"
    )


def settings(**overrides: Any) -> AzureQuantum:
    """The quantum block of a dev environment on Azure."""
    fields: dict[str, Any] = {
        "kind": "azure",
        "subscription": SUB,
        "resource_group": "rg-quantum",
        "workspace": "ws-dev",
        "location": "eastus",
        "connection_string_env": KEY_VARIABLE,
    }
    return AzureQuantum.model_validate(fields | overrides)


def release(version: str) -> tuple[ReleaseManifest, ProgramSource]:
    """A bundled bell-service release and its program."""
    folder = ROOT / "manifests" / "bell-service"
    manifest = ReleaseManifest.model_validate(
        yaml.safe_load((folder / f"{version}.yaml").read_text())
    )
    path = f"manifests/bell-service/{manifest.quantum.program}"
    return manifest, ProgramSource(path, (ROOT / path).read_text())


def gate(report: GateReport, name: str) -> GateResult:
    """One gate's result from a report."""
    return next(result for result in report.results if result.gate == name)


@dataclass
class Workspace:
    """A running fake workspace and its URL."""

    fake: QuantumFake
    url: str


@pytest.fixture
def workspace() -> Iterator[Workspace]:
    fake = QuantumFake(api_key=API_KEY)
    fake.set_target("ionq.qpu.aria-1", profile="Base", qubits=25, queue_seconds=90)
    fake.set_target("ionq.simulator", profile="Base", qubits=29)
    fake.set_target("quantinuum.sim.h2-1e", profile="Adaptive_RI", qubits=56)
    with LoopbackServer(fake) as server:
        yield Workspace(fake, server.url)


@pytest.fixture(scope="module")
def qdk_backend() -> QdkBackend:
    return QdkBackend()


Make = Callable[..., AzureQuantumBackend]


@pytest.fixture
def make_backend(workspace: Workspace, qdk_backend: QdkBackend) -> Iterator[Make]:
    made: list[AzureQuantumBackend] = []

    def make(
        environ: dict[str, str] | None = None, retry: RetrySettings = FAST, **overrides: Any
    ) -> AzureQuantumBackend:
        backend = AzureQuantumBackend(
            settings(**overrides),
            environment="dev",
            endpoint=workspace.url,
            environ={KEY_VARIABLE: connection_string()} if environ is None else environ,
            local=qdk_backend,
            retry=retry,
            poll_interval=0.005,
        )
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


# -- target status ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reported", "expected"),
    [
        ("Available", Availability.AVAILABLE),
        ("Degraded", Availability.DEGRADED),
        ("Unavailable", Availability.UNAVAILABLE),
    ],
)
def test_target_status_reads_availability_queue_profile_and_qubits(
    workspace: Workspace, make_backend: Make, reported: str, expected: Availability
) -> None:
    workspace.fake.set_target("ionq.qpu.aria-1", availability=reported, queue_seconds=90,
                              profile="Base", qubits=25)  # fmt: skip

    status = make_backend().target_status("ionq.qpu.aria-1")

    assert status.availability is expected
    assert status.queue_time == timedelta(seconds=90)
    assert (str(status.profile), status.qubits) == ("Base", 25)
    assert "average queue 1m30s" in status.message
    assert workspace.fake.requests[0].headers["x-ms-quantum-api-key"] == API_KEY
    assert "providerStatus" in workspace.fake.requests[0].path


def test_a_provider_outage_makes_its_targets_unavailable(
    workspace: Workspace, make_backend: Make
) -> None:
    workspace.fake.set_target("ionq.simulator", provider_availability="Unavailable")

    assert make_backend().target_status("ionq.simulator").availability is Availability.UNAVAILABLE


def test_a_queue_over_the_environment_limit_degrades_the_target(
    workspace: Workspace, make_backend: Make
) -> None:
    workspace.fake.set_target("ionq.qpu.aria-1", queue_seconds=7200)

    status = make_backend(max_queue_time="30m").target_status("ionq.qpu.aria-1")

    assert status.availability is Availability.DEGRADED
    assert "over this environment's max_queue_time 30m" in status.message


def test_a_target_the_workspace_does_not_offer_is_unavailable(make_backend: Make) -> None:
    status = make_backend().target_status("rigetti.sim.qvm")

    assert status.availability is Availability.UNAVAILABLE
    assert "offers no target rigetti.sim.qvm" in status.message


# -- the profile gate, judged by the service --------------------------------------------


def test_a_base_only_service_target_refuses_an_adaptive_ri_pin(
    workspace: Workspace, make_backend: Make
) -> None:
    workspace.fake.set_target("quantinuum.sim.h2-1e", profile="Base", qubits=56)
    manifest, program = release("1.2.0")  # Adaptive_RI on quantinuum.sim.h2-1e

    report = make_backend(verification_job=True).run_gates(program, manifest.quantum, None)

    profile = gate(report, "profile")
    assert profile.outcome is GateOutcome.FAILED
    assert "runs the Base profile, not Adaptive_RI (service)" in profile.message
    assert profile.details["service_profile"] == "Base"
    verification = gate(report, "verification")
    assert verification.outcome is GateOutcome.SKIPPED
    assert "profile gate Failed" in verification.message
    assert workspace.fake.submitted() == []


def test_the_service_profile_passes_what_the_catalog_allows(make_backend: Make) -> None:
    manifest, program = release("1.2.0")

    report = make_backend().run_gates(program, manifest.quantum, None)

    assert [r.outcome for r in report.results[:3]] == [GateOutcome.PASSED] * 3
    assert gate(report, "profile").message.endswith("qubits, service)")
    assert gate(report, "verification").outcome is GateOutcome.SKIPPED


def test_a_target_only_the_service_knows_is_judged_by_the_service_and_every_gate_runs(
    workspace: Workspace, make_backend: Make
) -> None:
    workspace.fake.set_target("acme.qpu.one", profile="Adaptive_RI", qubits=30)
    manifest, program = release("1.2.0")
    pinned = manifest.quantum.model_copy(
        update={"target": manifest.quantum.target.model_copy(update={"id": "acme.qpu.one"})}
    )

    report = make_backend().run_gates(program, pinned, None)

    assert gate(report, "profile").outcome is GateOutcome.PASSED  # the service wins
    assert gate(report, "estimate").outcome is GateOutcome.PASSED  # judged, not skipped
    assert gate(report, "smoke").outcome is GateOutcome.PASSED
    assert report.passed


# -- the verification job ---------------------------------------------------------------


def test_a_verification_job_with_the_expected_histogram_passes(
    workspace: Workspace, make_backend: Make
) -> None:
    manifest, program = release("1.1.0")  # Base, pinned to ionq.qpu.aria-1
    backend = make_backend(verification_job=True, verification_target="ionq.simulator")

    report = backend.run_gates(program, manifest.quantum, None)

    verification = gate(report, "verification")
    assert verification.outcome is GateOutcome.PASSED, verification.message
    [job] = workspace.fake.submitted()
    assert job["target"] == "ionq.simulator"
    assert job["inputDataFormat"] == "qir.v1"
    assert job["inputParams"]["entryPoint"] == "ENTRYPOINT__main"
    assert job["inputParams"]["shots"] == manifest.quantum.gates.smoke.shots  # type: ignore[union-attr]
    assert workspace.fake.input_of(job).decode() == report.qir
    details = verification.details
    assert details["job_id"] == job["id"]
    assert details["status"] == "Succeeded"
    assert details["began"] and details["ended"] and details["created"]
    assert details["cost_estimate"]["currencyCode"] == "USD"
    shots = manifest.quantum.gates.smoke.shots  # type: ignore[union-attr]
    assert details["usage"] == {"shots": shots}
    assert details["observed"] == {"[Zero, Zero]": shots // 2, "[One, One]": shots // 2}
    json.dumps(details)  # the engine writes details into the audit event


def test_a_verification_job_with_a_wrong_histogram_fails(
    workspace: Workspace, make_backend: Make
) -> None:
    manifest, program = release("1.1.0")
    shots = manifest.quantum.gates.smoke.shots  # type: ignore[union-attr]
    wrong = {"[0, 1]": shots * 48 // 100, "[1, 0]": shots - shots * 48 // 100}
    workspace.fake.script = JobScript(histogram=wrong)

    report = make_backend(verification_job=True).run_gates(program, manifest.quantum, None)

    verification = gate(report, "verification")
    assert verification.outcome is GateOutcome.FAILED, verification.message
    expected = f"[One, Zero] x{wrong['[1, 0]']}, [Zero, One] x{wrong['[0, 1]']}"
    assert f"unexpected outcomes: {expected}" in verification.message
    assert workspace.fake.submitted()[0]["target"] == "ionq.qpu.aria-1"


def test_a_verification_job_that_fails_fails_the_gate_with_the_service_error(
    workspace: Workspace, make_backend: Make
) -> None:
    error = {"code": "QIRValidationFailed", "message": "unsupported instruction"}
    workspace.fake.script = JobScript(statuses=("Waiting", "Executing", "Failed"), error=error)
    manifest, program = release("1.1.0")

    report = make_backend(verification_job=True).run_gates(program, manifest.quantum, None)

    verification = gate(report, "verification")
    assert verification.outcome is GateOutcome.FAILED
    assert "failed: QIRValidationFailed: unsupported instruction" in verification.message
    assert verification.details["status"] == "Failed"


WHEN = EPOCH + timedelta(minutes=1)  # just after the loopback workspace created its jobs


class Killed(BaseException):
    """The controller process dying where it stands (nothing after it runs)."""


def _dies_after_submitting(backend: AzureQuantumBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    def die(job: object) -> bool:
        raise Killed

    monkeypatch.setattr(backend, "_follow", die)


def _at_the_workspace_time(backend: AzureQuantumBackend) -> AzureQuantumBackend:
    """The backend's calendar set to the loopback workspace's (its jobs' creation times)."""
    backend.clock = Clock(now=backend.clock.now, sleep=backend.clock.sleep, wall=lambda: WHEN)
    return backend


def test_a_new_owner_follows_the_verification_job_the_last_one_submitted(
    workspace: Workspace, make_backend: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failover never double-bills: the job a dead owner left running is followed."""
    manifest, program = release("1.1.0")
    dead = make_backend(verification_job=True, verification_target="ionq.simulator")
    _dies_after_submitting(dead, monkeypatch)
    with pytest.raises(Killed):
        dead.run_gates(program, manifest.quantum, None)
    [first] = workspace.fake.submitted()

    owner = _at_the_workspace_time(
        make_backend(verification_job=True, verification_target="ionq.simulator")
    )
    verification = gate(owner.run_gates(program, manifest.quantum, None), "verification")

    assert verification.outcome is GateOutcome.PASSED, verification.message
    assert workspace.fake.submitted() == [first]  # nothing submitted twice
    assert verification.details["job_id"] == first["id"] and verification.details["followed"]
    assert any(tag.startswith("qrelease.verify=") for tag in first["tags"])


def test_a_failed_job_or_another_environment_s_is_not_followed(
    workspace: Workspace, make_backend: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest, program = release("1.1.0")
    workspace.fake.script = JobScript(statuses=("Executing", "Failed"), error={"code": "E"})
    failed = make_backend(verification_job=True, verification_target="ionq.simulator")
    failed.run_gates(program, manifest.quantum, None)
    workspace.fake.script = JobScript()
    other = make_backend(verification_job=True, verification_target="ionq.simulator")
    other.environment = "staging"  # the same release verified for another environment
    _dies_after_submitting(other, monkeypatch)
    with pytest.raises(Killed):
        other.run_gates(program, manifest.quantum, None)

    owner = _at_the_workspace_time(
        make_backend(verification_job=True, verification_target="ionq.simulator")
    )
    verification = gate(owner.run_gates(program, manifest.quantum, None), "verification")

    assert verification.outcome is GateOutcome.PASSED, verification.message
    assert len(workspace.fake.submitted()) == 3 and not verification.details["followed"]


def test_a_verification_job_that_ran_other_shots_than_requested_is_not_accepted(
    workspace: Workspace, make_backend: Make
) -> None:
    workspace.fake.script = JobScript(histogram={"[0, 0]": 50, "[1, 1]": 50})  # 100 shots
    manifest, program = release("1.1.0")
    backend = make_backend(verification_job=True, verification_shots=200)

    report = backend.run_gates(program, manifest.quantum, None)

    verification = gate(report, "verification")
    assert verification.outcome is GateOutcome.INCONCLUSIVE
    assert "the service reports 100 shots, not the 200 requested" in verification.message
    assert workspace.fake.submitted()[0]["inputParams"]["shots"] == 200
    assert verification.details["shots"] == 200
    assert verification.details["shots_reported"] == 100
    assert "observed" not in verification.details  # the histogram was not judged


def test_a_verification_job_past_its_timeout_is_cancelled_and_inconclusive(
    workspace: Workspace, make_backend: Make
) -> None:
    workspace.fake.script = JobScript(statuses=("Waiting",) * 10_000)
    manifest, program = release("1.1.0")
    backend = make_backend(verification_job=True, verification_timeout=0.1)

    report = backend.run_gates(program, manifest.quantum, None)

    verification = gate(report, "verification")
    assert verification.outcome is GateOutcome.INCONCLUSIVE
    assert "did not finish within" in verification.message
    assert verification.details["timed_out"] is True
    assert workspace.fake.count("POST", r"/jobs/[^/]+:cancel$") == 1
    assert workspace.fake.submitted()[0]["status"] == "Cancelled"


# -- transient failures and credentials -------------------------------------------------


def test_a_429_with_retry_after_is_retried_and_reported(
    workspace: Workspace, make_backend: Make, slept: list[float]
) -> None:
    workspace.fake.inject("GET", "/providerStatus", status=429, headers={"Retry-After": "7"})

    status = make_backend().target_status("ionq.qpu.aria-1")

    assert slept == [7]  # the wait the service asked for, and only that one
    assert status.availability is Availability.AVAILABLE
    assert "recovered, retried 1 time: HTTP 429 on GET" in status.message
    assert workspace.fake.count("GET", "/providerStatus") == 2


def test_a_429_without_retry_after_on_the_storage_link_post_is_retried(
    workspace: Workspace, make_backend: Make
) -> None:
    workspace.fake.inject("POST", "/storage/sasUri$", status=429)  # throttled, no Retry-After
    manifest, program = release("1.1.0")

    report = make_backend(verification_job=True).run_gates(program, manifest.quantum, None)

    verification = gate(report, "verification")
    assert verification.outcome is GateOutcome.PASSED, verification.message
    assert any("HTTP 429 on POST" in note for note in verification.details["retries"])


def test_a_502_on_job_cancel_is_retried(workspace: Workspace, make_backend: Make) -> None:
    workspace.fake.script = JobScript(statuses=("Waiting",) * 10_000)
    workspace.fake.inject("POST", r"/jobs/[^/]+:cancel$", status=502)
    manifest, program = release("1.1.0")
    backend = make_backend(verification_job=True, verification_timeout=0.1)

    report = backend.run_gates(program, manifest.quantum, None)

    verification = gate(report, "verification")
    assert verification.outcome is GateOutcome.INCONCLUSIVE
    assert "did not finish within" in verification.message and "cancelled" in verification.message
    assert workspace.fake.count("POST", r"/jobs/[^/]+:cancel$") == 2
    assert workspace.fake.submitted()[0]["status"] == "Cancelled"


def test_blob_uploads_go_through_qreleases_retry_policy(
    workspace: Workspace, make_backend: Make, slept: list[float]
) -> None:
    workspace.fake.inject("PUT", "/devstoreaccount1/.+/inputData$", status=503)
    manifest, program = release("1.1.0")

    report = make_backend(verification_job=True).run_gates(program, manifest.quantum, None)

    verification = gate(report, "verification")
    assert verification.outcome is GateOutcome.PASSED, verification.message
    assert any("HTTP 503 on PUT" in note for note in verification.details["retries"])
    assert workspace.fake.count("PUT", "/devstoreaccount1/.+/inputData$") == 2


def test_a_failure_that_was_not_retried_does_not_claim_retries(
    workspace: Workspace, make_backend: Make, caplog: pytest.LogCaptureFixture
) -> None:
    workspace.fake.inject("GET", "/providerStatus", status=503, times=10)

    status = make_backend(retry=RetrySettings(attempts=1)).target_status("ionq.qpu.aria-1")

    assert status.availability is Availability.UNKNOWN
    assert "unavailable while reading provider status" in status.message
    assert "retr" not in status.message
    assert not any("retr" in record.getMessage() for record in caplog.records)
    assert workspace.fake.count("GET", "/providerStatus") == 1


def test_a_read_timeout_is_retried(workspace: Workspace, make_backend: Make) -> None:
    workspace.fake.inject("GET", "/providerStatus", delay=0.8)

    status = make_backend().target_status("ionq.qpu.aria-1")

    assert status.availability is Availability.AVAILABLE
    assert "timeout on GET" in status.message


def test_server_errors_past_every_retry_leave_the_target_unknown_with_the_reason(
    workspace: Workspace, make_backend: Make
) -> None:
    workspace.fake.inject("GET", "/providerStatus", status=503, times=10)

    status = make_backend().target_status("ionq.qpu.aria-1")

    assert status.availability is Availability.UNKNOWN
    assert "unavailable while reading provider status (retried 2 times: HTTP 503" in status.message
    assert workspace.fake.count("GET", "/providerStatus") == FAST.attempts


def test_a_refused_api_key_is_an_immediate_error_naming_environment_and_source(
    workspace: Workspace, make_backend: Make
) -> None:
    workspace.fake.reject_auth = True
    manifest, program = release("1.1.0")
    backend = make_backend()

    status = backend.target_status("ionq.qpu.aria-1")
    with pytest.raises(AzureAuthError) as raised:
        backend.run_gates(program, manifest.quantum, None)

    for text in (status.message, str(raised.value)):
        assert text.startswith("dev: Azure Quantum workspace ws-dev did not accept")
        assert f"the API key in environment variable {KEY_VARIABLE}" in text
        assert "HTTP 401" in text
        assert API_KEY not in text
    assert status.availability is Availability.UNKNOWN
    assert workspace.fake.count("GET", "/providerStatus") == 2  # one per call: no retries


def test_a_missing_connection_string_variable_is_named(make_backend: Make) -> None:
    status = make_backend(environ={}).target_status("ionq.qpu.aria-1")

    assert status.availability is Availability.UNKNOWN
    assert f"environment variable {KEY_VARIABLE} (quantum.connection_string_env)" in status.message


def test_a_connection_string_for_another_workspace_is_refused(make_backend: Make) -> None:
    environ = {KEY_VARIABLE: connection_string(workspace="ws-prod")}

    status = make_backend(environ=environ).target_status("ionq.qpu.aria-1")

    assert "is for workspace" in status.message and "ws-prod" in status.message
    assert API_KEY not in status.message


@pytest.fixture
def tls_workspace(tmp_path: Path) -> Iterator[tuple[QuantumFake, str, str]]:
    tls = self_signed_cert(tmp_path)
    fake = QuantumFake(token="quantum-token")
    fake.set_target("ionq.simulator", profile="Base", qubits=29)
    with LoopbackServer(fake, tls) as server:
        yield fake, server.url, str(tls.cert)


def token_backend(url: str, cert: str, credential: StaticToken) -> AzureQuantumBackend:
    """A backend on the bearer-token path (no connection string), trusting the test CA."""
    return AzureQuantumBackend(
        settings(connection_string_env=None),
        environment="staging",
        credential=credential,
        endpoint=url,
        retry=FAST,
        connection_verify=cert,
    )


def test_a_token_credential_is_sent_as_a_bearer_token_over_tls(
    tls_workspace: tuple[QuantumFake, str, str],
) -> None:
    fake, url, cert = tls_workspace
    credential = StaticToken("quantum-token")
    backend = token_backend(url, cert, credential)
    try:
        status = backend.target_status("ionq.simulator")
    finally:
        backend.close()

    assert status.availability is Availability.AVAILABLE
    assert fake.requests[0].headers["authorization"] == "Bearer quantum-token"
    assert credential.scopes == [("https://quantum.microsoft.com/.default",)]


def test_a_credential_that_cannot_get_a_token_fails_at_once(
    tls_workspace: tuple[QuantumFake, str, str],
) -> None:
    fake, url, cert = tls_workspace
    broken = StaticToken(error=ClientAuthenticationError("no managed identity endpoint"))
    backend = token_backend(url, cert, broken)
    try:
        status = backend.target_status("ionq.simulator")
    finally:
        backend.close()

    assert status.availability is Availability.UNKNOWN
    assert status.message.startswith("staging: Azure Quantum workspace ws-dev did not accept")
    assert "StaticToken given to qrelease" in status.message
    assert "no managed identity endpoint" in status.message
    assert fake.requests == []


def test_job_blobs_reach_storage_behind_a_private_ca(tmp_path: Path) -> None:
    ca = private_ca(tmp_path)
    fake = QuantumFake(token="quantum-token")
    fake.set_target("ionq.simulator", profile="Base", qubits=29)
    fake.set_target("ionq.qpu.aria-1", profile="Base", qubits=25)
    manifest, program = release("1.1.0")
    with LoopbackServer(fake, ca.server) as server:
        backend = AzureQuantumBackend(
            settings(connection_string_env=None, verification_job=True,
                     verification_target="ionq.simulator"),
            environment="staging",
            credential=StaticToken("quantum-token"),
            endpoint=server.url,
            local=QdkBackend(),
            retry=FAST,
            poll_interval=0.005,
            connection_verify=str(ca.bundle),
        )  # fmt: skip
        try:
            report = backend.run_gates(program, manifest.quantum, None)
        finally:
            backend.close()

    verification = gate(report, "verification")
    assert verification.outcome is GateOutcome.PASSED, verification.message
    assert fake.count("PUT", "/devstoreaccount1/.+/inputData$") == 1  # the upload, over TLS
    assert fake.count("GET", "/devstoreaccount1/.+/rawOutputData$") >= 1  # the results


def test_the_workspace_endpoint_is_looked_up_through_arm_on_the_same_pipeline(
    tmp_path: Path,
) -> None:
    ca = private_ca(tmp_path)
    arm, fake = ArmFake(token="shared-token"), QuantumFake(token="shared-token")
    fake.set_target("ionq.simulator", profile="Base", qubits=29)
    with LoopbackServer(arm, ca.server) as arm_server, LoopbackServer(fake, ca.server) as server:
        arm.add_workspace(SUB, "rg-quantum", "ws-dev", "eastus", server.url)
        arm.inject("GET", "/workspaces/ws-dev$", status=503)
        backend = AzureQuantumBackend(
            settings(connection_string_env=None),
            environment="staging",
            credential=StaticToken("shared-token"),
            arm_endpoint=arm_server.url,  # no endpoint given: discovered, as in production
            retry=FAST,
            connection_verify=str(ca.bundle),
        )
        try:
            status = backend.target_status("ionq.simulator")
        finally:
            backend.close()

    assert status.availability is Availability.AVAILABLE, status.message
    assert arm.count("GET", "/workspaces/ws-dev$") == 2
    assert "recovered, retried 1 time: HTTP 503 on GET" in status.message
    assert fake.count("GET", "/providerStatus$") == 1


# -- secrets never leak -----------------------------------------------------------------


def test_the_api_key_and_sas_signatures_never_reach_logs_errors_or_details(
    workspace: Workspace, make_backend: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    manifest, program = release("1.1.0")
    backend = make_backend(verification_job=True)

    report = backend.run_gates(program, manifest.quantum, None)
    workspace.fake.reject_auth = True
    refused = backend.target_status("ionq.simulator")

    assert gate(report, "verification").outcome is GateOutcome.PASSED
    assert any(f"sig={SAS_SIGNATURE}" in r.path + str(r.query) or r.query.get("sig")
               for r in workspace.fake.requests)  # fmt: skip
    texts = [record.getMessage() for record in caplog.records]
    texts += [refused.message, json.dumps([vars(result) for result in report.results], default=str)]
    assert caplog.records, "the SDK logs requests at debug level"
    for text in texts:
        assert API_KEY not in text
        assert SAS_SIGNATURE not in text


def test_redact_masks_connection_strings_signatures_and_tokens() -> None:
    text = f"{connection_string()} GET https://b/c?sig=abc%3D&se=1 Authorization: Bearer eyJ.a.b"

    cleaned = redact(text)

    assert API_KEY not in cleaned and "abc%3D" not in cleaned and "eyJ.a.b" not in cleaned
    assert "WorkspaceName=ws-dev" in cleaned


# -- pure helpers -----------------------------------------------------------------------


def test_service_keys_are_read_in_the_manifests_spelling() -> None:
    observed = {"[0, 0]": 10, "[1, 1]": 12, "[1, 0]": 1}

    aligned = align_keys(observed, {"[Zero,Zero]": 0.5, "[One, One]": 0.5})

    assert aligned == {"[Zero, Zero]": 10, "[One, One]": 12, "[One, Zero]": 1}


def test_the_entry_point_is_read_from_the_qir(qdk_backend: QdkBackend) -> None:
    manifest, program = release("1.1.0")
    report = qdk_backend.run_gates(program, manifest.quantum, None)

    assert report.qir is not None
    assert entry_point(report.qir) == "ENTRYPOINT__main"


def test_the_settings_block_is_hashable_for_the_engines_status_cache() -> None:
    assert hash(settings(verification_job=True)) == hash(settings(verification_job=True))


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(quantum_azure).failed == 0
