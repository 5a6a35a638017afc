"""The Azure Quantum backend: the workspace's word on targets, qdk's gates, a verification job.

This is the only module that imports azure.quantum. It answers the `QuantumBackend`
Protocol for environments with `quantum: {kind: azure, ...}`:

- target status comes from the workspace's provider status (`providerStatus`), read
  directly because the SDK's `Target` objects drop the service-reported profile and qubit
  count. Availability is the worse of the provider's and the target's; an average queue
  time over the environment's `max_queue_time` makes an Available target Degraded, which
  holds rollouts like any other degradation (it never rolls an app back).
- gates are qdk's (compile, estimate, smoke, run locally), except that the profile gate is
  re-judged against what the service reports, which wins over the built-in catalog.
- the jobs live releases submit (`read_jobs`, `refresh_jobs`) are read from the workspace's
  job list, incrementally and bounded per read (`azure/jobs.py` holds the cursor).
- the optional verification job is priced first from the provider's tariff
  (`quantum/pricing.py`); where the environment has a `policy.quantum_budget`, a job over
  it (per job, or this month with what was spent) is refused before anything is submitted.
  It then submits the compiled QIR to the pinned target (or to the
  environment's `verification_target`, an emulator in non-production), follows the job
  lifecycle until Succeeded, Failed or Cancelled, checks that the service ran the shots
  requested, and judges the returned histogram with the smoke gate's statistics. A job
  still running at `verification_timeout` is cancelled and the gate is Inconclusive: the
  program was not shown wrong, but nothing was shown right either, so the release still
  stops. So is a job whose results hold another number of shots than was asked for.

Every client this module builds shares one `Pipeline` (retry policy, timeouts, TLS trust):
the SDK's `Workspace` builds its REST client and its ARM lookup of the workspace endpoint
without pipeline options, so `_Workspace` overrides the SDK's `_create_client` hook and
hands it a `_Discovery` client; job input is uploaded and results are downloaded with
azure-storage-blob clients built here (`_Workspace.container`, `_Job.download_data`)
through the SAS URLs the service hands out, never with the storage SDK's defaults.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from azure.core import PipelineClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.policies import RetryPolicy
from azure.quantum._client import WorkspaceClient
from azure.quantum._constants import ConnectionConstants
from azure.quantum._mgmt_client import WorkspaceMgmtClient
from azure.quantum.job import Job
from azure.quantum.workspace import Workspace
from azure.storage.blob import BlobClient, ContainerClient, ContentSettings

from qrelease.azure.common import (
    AzureAuthError,
    AzureUnavailable,
    CredentialChoice,
    Pipeline,
    RetrySettings,
    auth_failure,
    classify,
    default_credential,
    error_summary,
    given_credential,
    log,
    plain,
    redact_loggers,
    retried,
    unavailable,
)
from qrelease.azure.jobs import advanced, job_of, parse_time, start_of, vanished
from qrelease.model.environment import AzureQuantum
from qrelease.model.jobs import JobCursor, QuantumJob
from qrelease.model.manifest import Quantum, SmokeGate, TargetProfile
from qrelease.model.types import format_duration
from qrelease.model.vocabulary import Availability, GateOutcome
from qrelease.quantum import catalog
from qrelease.quantum.base import (
    EstimateSummary,
    GateReport,
    GateResult,
    JobRead,
    ProgramSource,
    QuantumBackend,
    TargetStatus,
)
from qrelease.quantum.gates import canonical_text, judge_smoke, normalise_expect
from qrelease.quantum.pricing import Price, SpendLedger, price_job

SERVICE = "Azure Quantum"
USER_AGENT = "qrelease"
SUCCEEDED = frozenset({"Succeeded", "Completed"})
ENDED = SUCCEEDED | {"Failed", "Cancelled"}
CONNECTION_FIELDS = ("SubscriptionId", "ResourceGroupName", "WorkspaceName", "ApiKey")
# Loggers that print SAS URLs (job containers, blobs) at info or debug level: the SDK's
# own, and urllib3's request lines under the storage SDK.
SDK_LOGGERS = (
    "azure.quantum.workspace",
    "azure.quantum.storage",
    "azure.quantum.job.base_job",
    "azure.quantum.job.job",
    "urllib3.connectionpool",
)
_AVAILABILITY_ORDER = (Availability.AVAILABLE, Availability.DEGRADED, Availability.UNAVAILABLE)
_ENTRY_POINT = re.compile(r"^define\s+\S+\s+@([A-Za-z0-9_.$]+)\(\)\s+#(\d+)", re.MULTILINE)
_PROFILE_ALIASES = {
    "basicexecution": TargetProfile.BASE,
    "adaptiveexecution": TargetProfile.ADAPTIVE_RI,
}
_RESULT_WORD = re.compile(r"\b(Zero|One)\b")
_GATE = "verification"
_INPUT_BLOB = "inputData"
JOB_PAGE = 100  # jobs per listing request
VERIFY_TAG = "qrelease.verify="
"""Tags a verification job with a digest of (environment, target, shots, QIR)."""
IN_FLIGHT_SCAN = 2_000  # jobs of the timeout window scanned for one already under way
_T = TypeVar("_T")


class AzureQuantumError(Exception):
    """The workspace refused a request for a reason other than auth or load, or is misconfigured."""


# -- what the service reports ---------------------------------------------------------


@dataclass(frozen=True)
class ServiceTarget:
    """One target as the workspace's provider status reports it."""

    target_id: str
    provider_id: str
    availability: Availability
    queue_seconds: int | None = None
    profile: TargetProfile | None = None
    reported_profile: str | None = None
    qubits: int | None = None


def parse_profile(text: object) -> TargetProfile | None:
    """A service-reported profile name as a TargetProfile (None when absent or unknown).

    >>> parse_profile("adaptive_ri"), parse_profile("BasicExecution"), parse_profile("QIR?")
    (<TargetProfile.ADAPTIVE_RI: 'Adaptive_RI'>, <TargetProfile.BASE: 'Base'>, None)
    """
    if not isinstance(text, str):
        return None
    key = text.replace("_", "").replace("-", "").lower()
    by_name = {p.value.replace("_", "").lower(): p for p in TargetProfile}
    return by_name.get(key) or _PROFILE_ALIASES.get(key)


def parse_availability(text: object) -> Availability:
    """A provider or target `currentAvailability` as an Availability (Unknown if unrecognised).

    >>> parse_availability("degraded")
    <Availability.DEGRADED: 'Degraded'>
    """
    for availability in _AVAILABILITY_ORDER:
        if isinstance(text, str) and text.lower() == availability.value.lower():
            return availability
    return Availability.UNKNOWN


def combined_availability(provider: Availability, target: Availability) -> Availability:
    """The target's availability, made worse by its provider's (never better).

    >>> combined_availability(Availability.UNAVAILABLE, Availability.AVAILABLE)
    <Availability.UNAVAILABLE: 'Unavailable'>
    >>> combined_availability(Availability.AVAILABLE, Availability.UNKNOWN)
    <Availability.UNKNOWN: 'Unknown'>
    """
    if provider in (Availability.DEGRADED, Availability.UNAVAILABLE) and (
        target not in _AVAILABILITY_ORDER
        or _AVAILABILITY_ORDER.index(provider) > _AVAILABILITY_ORDER.index(target)
    ):
        return provider
    return target


def _optional_int(value: object) -> int | None:
    """An integer field of the provider status, None when absent or not a number."""
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def service_targets(providers: list[dict[str, Any]]) -> dict[str, ServiceTarget]:
    """Every target of a provider-status listing (`{"value": [...]}` items), by id."""
    found: dict[str, ServiceTarget] = {}
    for provider in providers:
        provider_availability = parse_availability(provider.get("currentAvailability"))
        for target in provider.get("targets") or []:
            target_id = str(target.get("id", ""))
            found[target_id] = ServiceTarget(
                target_id=target_id,
                provider_id=str(provider.get("id", "")),
                availability=combined_availability(
                    provider_availability, parse_availability(target.get("currentAvailability"))
                ),
                queue_seconds=_optional_int(target.get("averageQueueTime")),
                profile=parse_profile(target.get("targetProfile")),
                reported_profile=target.get("targetProfile"),
                qubits=_optional_int(target.get("numQubits")),
            )
    return found


def status_of(
    target_id: str,
    targets: Mapping[str, ServiceTarget],
    workspace: str,
    max_queue: timedelta | None = None,
) -> TargetStatus:
    """The TargetStatus of one target from the service's report and the queue-time limit."""
    found = targets.get(target_id)
    if found is None:
        offered = ", ".join(sorted(targets)) or "none"
        text = f"workspace {workspace} offers no target {target_id} (offered: {offered})"
        return TargetStatus(target_id, Availability.UNAVAILABLE, message=text)
    queue = None if found.queue_seconds is None else timedelta(seconds=found.queue_seconds)
    availability = found.availability
    parts = [f"{availability} in workspace {workspace}"]
    if queue is not None:
        parts.append(f"average queue {format_duration(queue)}")
    if queue is not None and max_queue is not None and queue > max_queue:
        if availability is Availability.AVAILABLE:
            availability = Availability.DEGRADED
        parts.append(f"over this environment's max_queue_time {format_duration(max_queue)}")
    parts.append(_describe_profile(found))
    message = "; ".join(parts)
    return TargetStatus(target_id, availability, found.profile, found.qubits, queue, message)


def _describe_profile(found: ServiceTarget) -> str:
    """'profile Base, 29 qubits (service)', noting what the service leaves out."""
    profile = found.reported_profile or "not reported"
    qubits = "qubits not reported" if found.qubits is None else f"{found.qubits} qubits"
    return f"profile {profile}, {qubits} (service)"


# -- results --------------------------------------------------------------------------


def entry_point(qir: str) -> str:
    """The name of the QIR entry-point function (what a QIR job's `entryPoint` names).

    >>> entry_point('define i64 @ENTRYPOINT__main() #0 {\\n}\\nattributes #0 = { "entry_point" }')
    'ENTRYPOINT__main'
    """
    for match in _ENTRY_POINT.finditer(qir):
        attributes = re.search(rf"^attributes #{match.group(2)} = {{(.*)}}", qir, re.MULTILINE)
        if attributes and '"entry_point"' in attributes.group(1):
            return match.group(1)
    return "ENTRYPOINT__main"


def _bits(key: str) -> str:
    """A canonical key with Zero/One spelled as the service spells results: 0/1."""
    return re.sub(r"\bOne\b", "1", re.sub(r"\bZero\b", "0", key))


def align_keys(observed: Mapping[str, int], expect: Mapping[str, float]) -> dict[str, int]:
    """Service histogram keys in the manifest's spelling where they denote the same outcome.

    The service reports measurement results as 0/1 (`"[0, 1]"`) where Q# and the manifest
    say `"[Zero, One]"`. An observed key is read as the expected key with that spelling;
    when the manifest spells results and a key matches none, its 0/1 become Zero/One, so
    unexpected outcomes read the same way in messages.

    >>> align_keys({"[0, 0]": 3, "[1, 0]": 1}, {"[Zero, Zero]": 0.5, "[One, One]": 0.5})
    {'[Zero, Zero]': 3, '[One, Zero]': 1}
    >>> align_keys({"[3]": 5}, {"[3]": 1.0})
    {'[3]': 5}
    """
    expected = normalise_expect(expect)
    spelled = {_bits(key): key for key in expected}
    spells_results = any(_RESULT_WORD.search(key) for key in expected)
    aligned: dict[str, int] = {}
    for key, count in observed.items():
        name = canonical_text(key)
        if name not in expected:
            name = spelled.get(name) or (_results(name) if spells_results else name)
        aligned[name] = aligned.get(name, 0) + count
    return aligned


def _results(key: str) -> str:
    """A key with its standalone 0/1 read as Zero/One."""
    return re.sub(r"\b1\b", "One", re.sub(r"\b0\b", "Zero", key))


def histogram_counts(raw: object) -> dict[str, int]:
    """`Job.get_results_histogram()` output ({display: {"count": n}}) as plain counts."""
    if not isinstance(raw, Mapping):
        raise AzureQuantumError(f"job results are not a histogram: {type(raw).__name__}")
    counts: dict[str, int] = {}
    for key, row in raw.items():
        count = row.get("count") if isinstance(row, Mapping) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise AzureQuantumError(f"job results: outcome {key!r} has no shot count")
        counts[str(key)] = count
    return counts


@dataclass
class JobRun:
    """What became of a verification job: its record for the audit event and its results."""

    record: dict[str, Any]
    status: str
    histogram: dict[str, int] | None = None
    problem: str | None = None


def judge_job(run: JobRun, smoke: SmokeGate) -> GateResult:
    """The verification gate's outcome from a finished (or abandoned) job.

    The results must hold the shots the job asked for (`shots` in its record): a job that
    ran another number was not the verification requested, so its histogram is not judged.
    """
    details = dict(run.record)
    where = f"job {details.get('job_id')} on {details.get('target')}"
    if run.status in SUCCEEDED and run.histogram is not None:
        reported = sum(run.histogram.values())
        details["shots_reported"] = reported
        requested = details.get("shots")
        if requested is not None and reported != requested:
            text = (
                f"{where} {run.status}, but the service reports {reported} shots, not the"
                f" {requested} requested; its results are not judged"
            )
            return GateResult(_GATE, GateOutcome.INCONCLUSIVE, text, details)
        judged = judge_smoke(align_keys(run.histogram, smoke.expect), smoke)
        text = f"{where} {run.status}: {judged.message}"
        return GateResult(_GATE, judged.outcome, text, details | judged.details)
    if run.status == "Failed":
        error = details.get("error") or {}
        why = f"{error.get('code', 'error')}: {error.get('message', 'no message')}"
        return GateResult(_GATE, GateOutcome.FAILED, f"{where} failed: {why}", details)
    problem = run.problem or f"ended {run.status}"
    return GateResult(_GATE, GateOutcome.INCONCLUSIVE, f"{where} {problem}", details)


def _job_record(job: Any, target: str, shots: int) -> dict[str, Any]:
    """The job's identity, status, times, cost estimate and usage, JSON-ready."""
    details = job.details
    error = plain(details.error_data) if details.error_data else None
    return {
        "job_id": str(details.id),
        "job_name": str(details.name),
        "target": target,
        "provider": str(details.provider_id),
        "status": str(plain(details.status)),
        "shots": shots,
        "created": plain(details.creation_time),
        "began": plain(details.begin_execution_time),
        "ended": plain(details.end_execution_time),
        "cancelled": plain(details.cancellation_time),
        "cost_estimate": plain(details.cost_estimate),
        "usage": plain(details.usage),
        "error": error,
    }


# -- credentials ----------------------------------------------------------------------


def parse_connection_string(text: str) -> dict[str, str]:
    """The fields of an Azure Quantum connection string (`Key=value;` pairs).

    >>> parse_connection_string("SubscriptionId=s;ResourceGroupName=r;WorkspaceName=w;"
    ...                         "ApiKey=k;QuantumEndpoint=https://eastus.quantum.azure.com/;")
    ... # doctest: +NORMALIZE_WHITESPACE
    {'SubscriptionId': 's', 'ResourceGroupName': 'r', 'WorkspaceName': 'w', 'ApiKey': 'k',
     'QuantumEndpoint': 'https://eastus.quantum.azure.com/'}
    """
    fields: dict[str, str] = {}
    for part in text.strip().split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            fields[key.strip()] = value.strip()
    return fields


@dataclass(frozen=True)
class _Connection:
    """How to reach the workspace: credential, its source, and an endpoint (None: discover)."""

    choice: CredentialChoice
    endpoint: str | None


class _Discovery(WorkspaceMgmtClient):  # type: ignore[misc]  # azure.quantum ships no types
    """azure-quantum's ARM lookup of a workspace's endpoint, on qrelease's pipeline."""

    _client: PipelineClient[Any, Any]
    _policies: list[Any]

    def __init__(self, credential: Any, base_url: str, pipeline: Pipeline) -> None:
        super().__init__(credential=credential, base_url=base_url, user_agent=USER_AGENT)
        self._client.close()  # the SDK's own, never used: it has the SDK's retries and trust
        self._policies = [
            pipeline.policy() if isinstance(policy, RetryPolicy) else policy
            for policy in self._policies
        ]
        options = {k: v for k, v in pipeline.options().items() if k != "retry_policy"}
        self._client = PipelineClient(base_url=base_url, policies=self._policies, **options)


class _Workspace(Workspace):  # type: ignore[misc]  # azure.quantum (top level) ships no types
    """azure-quantum's Workspace whose every client (REST, ARM lookup, blobs) is qrelease's."""

    def __init__(self, pipeline: Pipeline, **kwargs: Any) -> None:
        self.pipeline = pipeline
        self.rest: WorkspaceClient | None = None
        super().__init__(**kwargs)

    def _create_client(self) -> WorkspaceClient:
        """Build the client the way the SDK does, on qrelease's pipeline."""
        params = self._connection_params
        options = self.pipeline.options()
        if params.api_version:
            options["api_version"] = params.api_version
        self.rest = WorkspaceClient(
            endpoint=params.quantum_endpoint,
            credential=params.get_credential_or_default(),
            credential_scopes=[ConnectionConstants.DATA_PLANE_CREDENTIAL_SCOPE],
            user_agent=params.get_full_user_agent(),
            authentication_policy=params.get_auth_policy(),
            **options,
        )
        return self.rest

    def container(self, sas_url: str) -> ContainerClient:
        """A client of a job container (from a SAS URL the service handed out)."""
        return ContainerClient.from_container_url(sas_url, **self.pipeline.options())

    def blob(self, sas_url: str) -> BlobClient:
        """A client of one blob (from a SAS URL the service handed out)."""
        return BlobClient.from_blob_url(sas_url, **self.pipeline.options())


class _Job(Job):  # type: ignore[misc]  # azure.quantum (top level) ships no types
    """azure-quantum's Job whose result downloads go through the workspace's pipeline."""

    def download_data(self, blob_uri: str) -> bytes:
        """A result blob's content (the SDK's results parsing reads it through here)."""
        with self.workspace.blob(self._get_blob_uri_with_sas_token(blob_uri)) as blob:
            data: bytes = blob.download_blob().readall()
        return data

    def download_blob_properties(self, blob_uri: str) -> Any:
        """A result blob's properties (the SDK reads them for failed jobs' results)."""
        with self.workspace.blob(self._get_blob_uri_with_sas_token(blob_uri)) as blob:
            return blob.get_blob_properties()


# -- the backend ----------------------------------------------------------------------


@dataclass(frozen=True)
class Clock:
    """Time sources, replaceable so that lifecycle tests need not wait."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    wall: Callable[[], datetime] = lambda: datetime.now(UTC)


class AzureQuantumBackend:
    """A QuantumBackend on one Azure Quantum workspace (one instance per environment).

    `credential` overrides the credential choice (tests pass a static token or an API key);
    `endpoint` overrides the workspace's data-plane URL, which otherwise comes from the
    connection string or is discovered through ARM (`arm_endpoint`, Azure's public cloud
    by default); `local` runs the qdk gates (a `QdkBackend` by default); `environ` is where
    `connection_string_env` is looked up; `connection_verify` is the TLS trust of every
    client it builds, blob storage included (True, or a CA bundle path for a private CA).
    """

    def __init__(
        self,
        settings: AzureQuantum,
        *,
        environment: str = "",
        credential: Any = None,
        endpoint: str | None = None,
        local: QuantumBackend | None = None,
        retry: RetrySettings | None = None,
        poll_interval: float = 5.0,
        environ: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        connection_verify: bool | str = True,
        arm_endpoint: str | None = None,
    ) -> None:
        self.settings = settings
        self.environment = environment
        self.credential = credential
        self.endpoint = endpoint
        self.arm_endpoint = arm_endpoint or ConnectionConstants.ARM_PRODUCTION_ENDPOINT
        self.local = local
        self.retry = retry or RetrySettings()
        self.poll_interval = poll_interval
        self.environ: Mapping[str, str] = os.environ if environ is None else environ
        self.clock = clock or Clock()
        self.connection_verify = connection_verify
        self._workspace: _Workspace | None = None
        self._connection: _Connection | None = None
        self._lock = threading.RLock()  # the engine may roll out several apps at once
        self._pipeline = Pipeline(self.retry, connection_verify)
        redact_loggers(SDK_LOGGERS)

    # -- the Protocol

    def target_status(self, target_id: str) -> TargetStatus:
        """Availability, queue time, profile and qubits as the workspace reports them."""
        self._pipeline.take()  # anything an earlier call on this thread left unreported
        try:
            targets = self._targets("reading provider status")
        except (AzureAuthError, AzureUnavailable, AzureQuantumError) as error:
            return TargetStatus(target_id, Availability.UNKNOWN, message=str(error))
        status = status_of(
            target_id, targets, self.settings.workspace, self.settings.max_queue_time
        )
        notes = self._pipeline.take()
        if not notes:
            return status
        message = f"{status.message}; recovered, {retried(notes)}"
        return TargetStatus(
            status.target_id,
            status.availability,
            status.profile,
            status.qubits,
            status.queue_time,
            message,
        )

    def workspace_targets(self) -> list[TargetStatus]:
        """Every target the workspace offers now, as `target_status` reports each one."""
        targets = self._targets("listing the workspace's targets")
        settings = self.settings
        return [
            status_of(target_id, targets, settings.workspace, settings.max_queue_time)
            for target_id in sorted(targets)
        ]

    # -- the jobs of live releases (`JobReader`)

    def read_jobs(self, cursor: JobCursor, limit: int) -> JobRead:
        """Up to `limit` jobs of the workspace's list from `cursor`, oldest created first."""
        workspace = self._open()
        where, skip = start_of(cursor)

        def listing() -> list[dict[str, Any]]:
            assert workspace.rest is not None  # set by _create_client during construction
            pages = workspace.rest.services.jobs.list(
                workspace.subscription_id,
                workspace.resource_group,
                workspace.name,
                filter=where,
                orderby="CreationTime asc",
                skip=skip,
                top=min(limit, JOB_PAGE),
            )
            return [plain(job) for job in itertools.islice(pages, limit)]

        records = self._call("listing the workspace's jobs", listing)
        self._pipeline.take()
        created = [parse_time(record.get("creationTime")) for record in records]
        env = self.environment or self.settings.workspace
        jobs = [job for job in (job_of(record, env) for record in records) if job is not None]
        moments = [moment for moment in created if moment is not None]
        return JobRead(jobs, advanced(cursor, skip, moments), len(records))

    def refresh_jobs(self, jobs: Sequence[QuantumJob], now: datetime) -> list[QuantumJob]:
        """The jobs as the service reports them now (one it no longer has is Cancelled)."""
        workspace = self._open()
        fresh = []
        for job in jobs:

            def get(job_id: str = job.job_id) -> dict[str, Any] | None:
                assert workspace.rest is not None  # set by _create_client during construction
                try:
                    found = workspace.rest.services.jobs.get(
                        workspace.subscription_id, workspace.resource_group, workspace.name, job_id
                    )
                except ResourceNotFoundError:
                    return None
                return dict(plain(found))

            record = self._call("reading a job", get)
            read = job_of(record, job.env) if record is not None else None
            fresh.append(read or vanished(job, now))
        self._pipeline.take()
        return fresh

    def with_budget(self, ledger: SpendLedger) -> QuantumBackend:
        """This backend, pricing each verification job against `ledger` before submitting."""
        return _Budgeted(self, ledger)

    def run_gates(
        self,
        program: ProgramSource,
        quantum: Quantum,
        baseline: EstimateSummary | None,
        *,
        ledger: SpendLedger | None = None,
    ) -> GateReport:
        """qdk's gates with the service's profile check, then the optional verification job."""
        report = self._local().run_gates(program, quantum, baseline)
        results = self._with_service_profile(report, quantum)
        verification = self._verification(results, report.qir, program, quantum, ledger)
        return GateReport(
            (*results, verification),
            qir=report.qir,
            qir_sha256=report.qir_sha256,
            estimate=report.estimate,
        )

    def close(self) -> None:
        """Close the workspace's HTTP clients."""
        with self._lock:
            if self._workspace is not None:
                self._workspace.close()
                self._workspace = None

    # -- service calls

    def _local(self) -> QuantumBackend:
        """The qdk backend that compiles, estimates and simulates."""
        if self.local is None:
            from qrelease.quantum.qdk import QdkBackend

            self.local = QdkBackend()
        return self.local

    def _connect(self) -> _Connection:
        """The credential and endpoint, chosen once (a missing variable is re-read next time)."""
        with self._lock:
            if self._connection is None:
                self._connection = self._choose_connection()
            return self._connection

    def _choose_connection(self) -> _Connection:
        """The credential given, else an API key from the environment, else azure-identity."""
        if self.credential is not None:
            return _Connection(given_credential(self.credential), self.endpoint)
        if self.settings.connection_string_env:
            return self._from_connection_string(self.settings.connection_string_env)
        return _Connection(default_credential(), self.endpoint)

    def _from_connection_string(self, variable: str) -> _Connection:
        """An API-key credential from the connection string in an environment variable."""
        where = f"{self.environment}: " if self.environment else ""
        text = self.environ.get(variable, "")
        if not text.strip():
            raise AzureAuthError(
                f"{where}environment variable {variable} (quantum.connection_string_env) is not"
                " set; it must hold the workspace's API-key connection string"
            )
        fields = parse_connection_string(text)
        missing = [name for name in (*CONNECTION_FIELDS, "QuantumEndpoint") if not fields.get(name)]
        if missing:
            raise AzureAuthError(
                f"{where}environment variable {variable} does not hold an Azure Quantum"
                f" connection string (missing {', '.join(missing)})"
            )
        self._check_identity(variable, fields)
        choice = CredentialChoice(
            AzureKeyCredential(fields["ApiKey"]),
            f"the API key in environment variable {variable}",
            (fields["ApiKey"], text),
        )
        return _Connection(choice, self.endpoint or fields["QuantumEndpoint"])

    def _check_identity(self, variable: str, fields: Mapping[str, str]) -> None:
        """Refuse a connection string for another workspace than the environment file names."""
        settings = self.settings
        wanted = (settings.subscription, settings.resource_group, settings.workspace)
        found = tuple(fields[name] for name in CONNECTION_FIELDS[:3])
        if tuple(v.lower() for v in found) != tuple(v.lower() for v in wanted):
            where = f"{self.environment}: " if self.environment else ""
            raise AzureAuthError(
                f"{where}the connection string in {variable} is for workspace"
                f" {'/'.join(found)}, not {'/'.join(wanted)} as the environment file says"
            )

    def _open(self) -> _Workspace:
        """The SDK workspace, created once on first use, even with concurrent rollouts."""
        with self._lock:
            if self._workspace is None:
                self._workspace = self._call("connecting to the workspace", self._new_workspace)
            return self._workspace

    def _new_workspace(self) -> _Workspace:
        """An SDK workspace with qrelease's pipeline options (no request is made yet)."""
        connection = self._connect()
        settings = self.settings
        credential = connection.choice.credential
        extra: dict[str, Any] = {"arm_endpoint": self.arm_endpoint}
        if connection.endpoint:
            extra["_quantum_endpoint"] = connection.endpoint
        else:
            extra["_mgmt_client"] = _Discovery(credential, self.arm_endpoint, self._pipeline)
        return _Workspace(
            self._pipeline,
            subscription_id=settings.subscription,
            resource_group=settings.resource_group,
            name=settings.workspace,
            location=settings.location,
            credential=credential,
            user_agent=USER_AGENT,
            **extra,
        )

    def _call(self, doing: str, step: Callable[[], _T]) -> _T:
        """Run one SDK call, turning its failures into auth, unavailable or service errors."""
        try:
            return step()
        except (AzureAuthError, AzureQuantumError):
            raise
        except Exception as error:
            raise self._translate(doing, error) from None

    def _translate(self, doing: str, error: Exception) -> Exception:
        """The qrelease error for an SDK failure (never carrying a secret)."""
        choice = self._connect().choice
        kind = classify(error)
        notes = self._pipeline.take()
        if kind == "auth":
            return auth_failure(self.environment, self._label(), choice, doing, error)
        if kind == "transient":
            return unavailable(self.environment, self._label(), doing, error, notes)
        where = f"{self.environment}: " if self.environment else ""
        summary = error_summary(error, choice.secrets)
        if isinstance(error, HttpResponseError):
            return AzureQuantumError(f"{where}{self._label()} refused {doing}: {summary}")
        return AzureQuantumError(f"{where}{self._label()}: {doing} failed: {summary}")

    def _label(self) -> str:
        """How messages name the workspace."""
        return f"{SERVICE} workspace {self.settings.workspace}"

    def _targets(self, doing: str) -> dict[str, ServiceTarget]:
        """The workspace's targets from its provider status."""
        workspace = self._open()

        def listing() -> list[dict[str, Any]]:
            assert workspace.rest is not None  # set by _create_client during construction
            pages = workspace.rest.services.providers.list(
                workspace.subscription_id, workspace.resource_group, workspace.name
            )
            return [plain(provider) for provider in pages]

        return service_targets(self._call(doing, listing))

    # -- the profile gate, judged by the service

    def _with_service_profile(self, report: GateReport, quantum: Quantum) -> list[GateResult]:
        """The local results with the profile gate re-judged against the service's report."""
        results = list(report.results)
        index = next((i for i, r in enumerate(results) if r.gate == "profile"), None)
        if index is None or report.qir is None:
            return results
        local = results[index]
        results[index] = self._profile_gate(local, report.qir, quantum)
        if local.outcome is GateOutcome.FAILED and results[index].outcome is GateOutcome.PASSED:
            results = [_unblocked(r, local) if r.gate != "profile" else r for r in results]
        return results

    def _profile_gate(self, local: GateResult, qir: str, quantum: Quantum) -> GateResult:
        """Check the pin against the profile and qubits the workspace reports for the target."""
        pin = quantum.target
        prefix = f"compiled for {pin.profile}"
        try:
            found = self._targets("reading the target's profile").get(pin.id)
        except AzureUnavailable as error:
            text = f"{prefix}, but the service's profile of {pin.id} is unknown: {error}"
            return GateResult("profile", GateOutcome.INCONCLUSIVE, text, local.details)
        if found is None:
            text = f"{prefix}, but workspace {self.settings.workspace} offers no target {pin.id}"
            return GateResult("profile", GateOutcome.FAILED, text, local.details)
        checked = catalog.check_pin(
            pin.id,
            pin.profile,
            _required_qubits(qir),
            reported_profile=found.profile,
            reported_qubits=found.qubits,
        )
        details = local.details | checked.details
        details |= {"service_profile": found.reported_profile, "service_qubits": found.qubits}
        joiner = "; " if checked.outcome is GateOutcome.PASSED else ", but "
        return GateResult("profile", checked.outcome, prefix + joiner + checked.message, details)

    # -- the verification job

    def _verification(
        self,
        results: list[GateResult],
        qir: str | None,
        program: ProgramSource,
        quantum: Quantum,
        ledger: SpendLedger | None = None,
    ) -> GateResult:
        """Run the verification job when enabled, nothing before it stopped the release and
        its price (computed before anything is submitted) fits the environment's budget."""
        skip = self._skip_reason(results, qir, quantum)
        if skip is not None or qir is None or quantum.gates.smoke is None:
            return GateResult(_GATE, GateOutcome.SKIPPED, skip or "not run")
        smoke = quantum.gates.smoke
        target = self.settings.verification_target or quantum.target.id
        shots = self.settings.verification_shots or smoke.shots
        hqc = ledger.budget.usd_per_hqc if ledger else None
        price = price_job(target, qir, shots, usd_per_hqc=hqc)
        priced = {"target": target, "price": price.as_json()}
        refusal = ledger.reserve(price) if ledger else None
        if ledger is not None and refusal is not None:
            text = f"job on {target} refused before submitting: {refusal}"
            details = priced | {"refused": True, "budget": ledger.as_json()}
            return GateResult(_GATE, GateOutcome.FAILED, text, details)
        self._pipeline.take()  # the job's record lists the retries of this job alone
        try:
            run = self._run_job(qir, program, quantum, target, shots)
        except AzureUnavailable as error:
            _release(ledger, price)
            return GateResult(_GATE, GateOutcome.INCONCLUSIVE, str(error), priced)
        except AzureQuantumError as error:
            _release(ledger, price)
            return GateResult(_GATE, GateOutcome.FAILED, str(error), priced)
        judged = judge_job(run, smoke)
        return GateResult(judged.gate, judged.outcome, judged.message, judged.details | priced)

    def _skip_reason(
        self, results: list[GateResult], qir: str | None, quantum: Quantum
    ) -> str | None:
        """Why the verification job does not run, or None when it should."""
        if not self.settings.verification_job:
            return "not enabled: quantum.verification_job is false for this environment"
        stopped = [
            r for r in results if r.outcome in (GateOutcome.FAILED, GateOutcome.INCONCLUSIVE)
        ]
        if stopped:
            return f"not run: {stopped[0].gate} gate {stopped[0].outcome}"
        if qir is None:
            return "not run: no compiled program"
        if quantum.gates.smoke is None:
            return "not run: no quantum.gates.smoke to judge the job's results against"
        return None

    def _run_job(
        self, qir: str, program: ProgramSource, quantum: Quantum, target: str, shots: int
    ) -> JobRun:
        """Submit the QIR (or find the same job already under way), follow the job to an
        end or the timeout, and fetch its histogram."""
        started = self.clock.now()
        tag = self._verification_tag(qir, target, shots)
        job = self._call("looking for the same verification job", lambda: self._in_flight(tag))
        followed = job is not None
        if job is None:
            job = self._call(
                "submitting the verification job",
                lambda: self._submit(qir, program, quantum, target, shots, tag),
            )
        try:
            ended = self._follow(job)
        except AzureUnavailable:
            self._cancel_quietly(job)
            raise
        record = _job_record(job, target, shots) | {
            "seconds": round(self.clock.now() - started, 3),
            "followed": followed,
        }
        status = record["status"]
        if not ended:
            limit = format_duration(self.settings.verification_timeout)
            self._call("cancelling the verification job", lambda: self._open().cancel_job(job))
            problem = f"did not finish within {limit} (last status {status}); cancelled"
            record |= {"timed_out": True, "retries": self._pipeline.take()}
            return JobRun(record, status, problem=problem)
        if status not in SUCCEEDED:
            return JobRun(record | {"retries": self._pipeline.take()}, status)
        raw = self._call(
            "downloading the job's results", lambda: job.get_results_histogram(timeout_secs=60)
        )
        record["retries"] = self._pipeline.take()
        return JobRun(record, status, histogram=histogram_counts(raw))

    def _verification_tag(self, qir: str, target: str, shots: int) -> str:
        """The tag naming one verification: this environment, target, shots and QIR."""
        label = self.environment or self.settings.workspace
        digest = hashlib.sha256(f"{label}\n{target}\n{shots}\n{qir}".encode()).hexdigest()
        return f"{VERIFY_TAG}{digest[:32]}"

    def _in_flight(self, tag: str) -> Any | None:
        """The newest job tagged `tag` created within the verification timeout that did not
        fail or get cancelled: one a controller submitted before it died (or lost its
        lease), which a new owner follows instead of paying for the same job twice."""
        workspace = self._open()
        since = self.clock.wall() - self.settings.verification_timeout
        assert workspace.rest is not None  # set by _create_client during construction
        pages = workspace.rest.services.jobs.list(
            workspace.subscription_id,
            workspace.resource_group,
            workspace.name,
            filter=f"CreationTime ge {since.date().isoformat()}",
            orderby="CreationTime asc",
            top=JOB_PAGE,
        )
        found = None
        for job in itertools.islice(pages, IN_FLIGHT_SCAN):
            record = plain(job)
            created = parse_time(record.get("creationTime"))
            usable = str(record.get("status")) not in {"Failed", "Cancelled"}
            if tag in (record.get("tags") or ()) and usable and created and created >= since:
                found = record
        return None if found is None else workspace.get_job(str(found["id"]))

    def _submit(
        self,
        qir: str,
        program: ProgramSource,
        quantum: Quantum,
        target: str,
        shots: int,
        tag: str,
    ) -> Any:
        """Upload the QIR into a new job container of the workspace's storage, create the job."""
        workspace = self._open()
        job_id = _Job.create_job_id()
        container_uri = workspace.get_container_uri(job_id=job_id)
        with workspace.container(container_uri) as container:
            container.upload_blob(
                _INPUT_BLOB,
                qir.encode("utf-8"),
                overwrite=True,  # a retried upload must not fail on its own first attempt
                content_settings=ContentSettings(content_type="qir.v1"),
            )
            input_uri = container.get_blob_client(_INPUT_BLOB).url.split("?", 1)[0]
        params = {
            "entryPoint": entry_point(qir),
            "arguments": [],
            "shots": shots,
            "target_profile": str(quantum.target.profile),
        }
        label = self.environment or self.settings.workspace
        return _Job.from_storage_uri(
            workspace=workspace,
            job_id=job_id,
            name=f"qrelease verification ({label}): {program.path}",
            target=target,
            input_data_uri=input_uri,
            container_uri=container_uri,
            provider_id=target.split(".", 1)[0],
            input_data_format="qir.v1",
            output_data_format="microsoft.quantum-results.v2",
            input_params=params,
            tags=["qrelease", f"env:{label}", tag],
        )

    def _cancel_quietly(self, job: Any) -> None:
        """Best-effort cancel of a job that can no longer be followed, so it stops billing."""
        try:
            self._open().cancel_job(job)
        except Exception as error:  # the service is already failing; report, don't mask
            log.warning("could not cancel verification job %s: %s", job.id, error_summary(error))

    def _follow(self, job: Any) -> bool:
        """Refresh the job until it ends (True) or the verification timeout passes (False)."""
        deadline = self.clock.now() + self.settings.verification_timeout.total_seconds()
        while str(plain(job.details.status)) not in ENDED:
            remaining = deadline - self.clock.now()
            if remaining <= 0:
                return False
            self.clock.sleep(min(self.poll_interval, remaining))
            self._call("following the verification job", job.refresh)
        return True


class _Budgeted:
    """An Azure Quantum backend whose verification jobs are priced against a ledger."""

    def __init__(self, backend: AzureQuantumBackend, ledger: SpendLedger) -> None:
        self.backend = backend
        self.ledger = ledger

    def target_status(self, target_id: str) -> TargetStatus:
        """As the backend reports it."""
        return self.backend.target_status(target_id)

    def run_gates(
        self, program: ProgramSource, quantum: Quantum, baseline: EstimateSummary | None
    ) -> GateReport:
        """The backend's gates, with the ledger."""
        return self.backend.run_gates(program, quantum, baseline, ledger=self.ledger)


def _release(ledger: SpendLedger | None, price: Price) -> None:
    """Give back the reservation of a job that was never submitted."""
    if ledger is not None:
        ledger.release(price)


def _unblocked(result: GateResult, local_profile: GateResult) -> GateResult:
    """A gate qdk skipped because its catalog refused a pin that the service accepts."""
    if result.outcome is not GateOutcome.SKIPPED or not result.message.startswith("not run"):
        return result
    text = (
        "not run: qdk's catalog refused the pin that the service accepts"
        f" ({local_profile.message}); this gate could not be judged"
    )
    return GateResult(result.gate, GateOutcome.INCONCLUSIVE, text, result.details)


def _required_qubits(qir: str) -> int | None:
    """The qubits a compiled program needs, as qdk's QIR attributes say."""
    from qrelease.quantum.qdk import required_qubits

    return required_qubits(qir)


__all__ = [
    "AzureQuantumBackend",
    "AzureQuantumError",
    "ServiceTarget",
    "align_keys",
    "entry_point",
    "judge_job",
    "parse_connection_string",
    "service_targets",
    "status_of",
]
