"""The ARM deployer on the real azure-mgmt-resource SDKs against a loopback ARM endpoint.

`ArmFake` (tests/azure_fakes.py) serves HTTPS with a self-signed certificate generated per
module; the SDK clients trust it through azure-core's `connection_verify` and send the
static test token through their normal bearer-token policy, which insists on TLS. The
last tests run the real engine with this deployer and the Azure Quantum backend, as the
runtime wires them, on a real git repo and store.
"""

from __future__ import annotations

import ast
import doctest
import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError

from qrelease.azure import arm as arm_module
from qrelease.azure.arm import ArmAuthError, ArmDeployer, ensure_quantum_infrastructure
from qrelease.azure.common import RetrySettings
from qrelease.azure.quantum import AzureQuantumBackend
from qrelease.deployers.base import DeployError, Provisioner, ReleaseLock
from qrelease.engine import Backends, Engine, PassReport
from qrelease.model.environment import Environment
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.vocabulary import Health, Rollout, Sync
from qrelease.planning.planner import Retry
from qrelease.quantum.base import QuantumBackend
from qrelease.quantum.qdk import QdkBackend
from qrelease.source.repo import GitRepo
from qrelease.store import StateStore, open_store
from tests.helpers import PROJECT_ROOT
from tests.helpers.azure import (
    ArmFake,
    HealthFake,
    LoopbackServer,
    QuantumFake,
    StaticToken,
    TlsFiles,
    error_body,
    self_signed_cert,
)
from tests.helpers.gitops import GitOpsRepo

ROOT = PROJECT_ROOT
EXAMPLES = ROOT / "examples" / "azure"
SUB = "00000000-0000-0000-0000-0000000000b2"
PLACEHOLDER_SUB = "00000000-0000-0000-0000-000000000000"
FAST = RetrySettings(
    attempts=3, backoff_seconds=0.01, backoff_max_seconds=0.02, connect_timeout=2, read_timeout=2
)
APP_TEMPLATE = "infra/classical.json"
QUANTUM_TEMPLATE = "infra/quantum.json"


def example_files() -> dict[str, bytes]:
    """The bundled example templates, keyed by their repo path."""
    return {
        APP_TEMPLATE: (EXAMPLES / APP_TEMPLATE).read_bytes(),
        QUANTUM_TEMPLATE: (EXAMPLES / QUANTUM_TEMPLATE).read_bytes(),
    }


def example_environment(name: str = "azure-staging", **quantum: Any) -> Environment:
    """An example environment file with the test subscription."""
    text = (EXAMPLES / "releases" / f"{name}.yaml").read_text().replace(PLACEHOLDER_SUB, SUB)
    data = yaml.safe_load(text)
    data["quantum"] |= quantum
    return Environment.model_validate(data)


def manifest(version: str) -> ReleaseManifest:
    """A bundled bell-service release."""
    path = ROOT / "manifests" / "bell-service" / f"{version}.yaml"
    return ReleaseManifest.model_validate(yaml.safe_load(path.read_text()))


def lock(env: Environment, release: ReleaseManifest) -> ReleaseLock:
    """The lock the engine would write for a release."""
    target = release.quantum.target
    return ReleaseLock(
        app=release.app,
        env=env.environment,
        version=release.version,
        revision="c0ffee",
        target_id=target.id,
        profile=str(target.profile),
        entry=release.quantum.entry,
        program=release.quantum.program,
        qir_sha256="ab" * 32,
        deployed_at="2025-11-24T12:00:00+00:00",
    )


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


@dataclass
class Arm:
    """A running fake ARM endpoint."""

    fake: ArmFake
    url: str
    cert: str


@pytest.fixture
def arm(tls: TlsFiles) -> Iterator[Arm]:
    fake = ArmFake(token="arm-token")
    with LoopbackServer(fake, tls) as server:
        yield Arm(fake, server.url, str(tls.cert))


@pytest.fixture
def health() -> Iterator[tuple[HealthFake, str]]:
    fake = HealthFake()
    with LoopbackServer(fake) as server:
        yield fake, f"{server.url}/healthz"


Make = Callable[..., ArmDeployer]


@pytest.fixture
def make_deployer(arm: Arm) -> Iterator[Make]:
    made: list[ArmDeployer] = []

    def make(
        files: dict[str, bytes] | None = None, credential: Any = None, **options: Any
    ) -> ArmDeployer:
        templates = example_files() if files is None else files
        settings: dict[str, Any] = {
            "retry": FAST,
            "poll_interval": 0.005,
            "connection_verify": arm.cert,
        }
        deployer = ArmDeployer(
            templates.get,
            credential=StaticToken("arm-token") if credential is None else credential,
            base_url=arm.url,
            **(settings | options),
        )
        made.append(deployer)
        return deployer

    yield make
    for deployer in made:
        deployer.close()


def deploy(deployer: ArmDeployer, env: Environment, version: str) -> None:
    """Prepare and switch, as the engine does."""
    release = manifest(version)
    deployer.prepare(env, release, lock(env, release), "; QIR")
    deployer.switch(env, release.app, version)


# -- the Deployer steps -----------------------------------------------------------------


def test_prepare_creates_the_group_validates_and_what_ifs_without_deploying(
    arm: Arm, make_deployer: Make
) -> None:
    env = example_environment()
    release = manifest("1.1.0")
    deployer = make_deployer()

    prepared = deployer.prepare(env, release, lock(env, release), "; QIR")

    assert prepared.installed
    assert arm.fake.resource_groups["rg-bell-staging"]["location"] == "westeurope"
    assert arm.fake.count("POST", "/validate$") == 1
    assert arm.fake.count("POST", "/whatIf$") == 1
    assert arm.fake.puts() == 0
    before = deployer.check_health(env, release, current=False)
    assert before.ok and "ARM deploys it at the switch" in before.message
    assert deployer.observe(env, "bell-service").current is None
    assert all(r.headers["authorization"] == "Bearer arm-token" for r in arm.fake.requests)


def test_switch_deploys_incrementally_with_the_release_parameters(
    arm: Arm, make_deployer: Make, health: tuple[HealthFake, str]
) -> None:
    env = example_environment()
    arm.fake.output_values["healthUrl"] = health[1]
    deployer = make_deployer()

    deploy(deployer, env, "1.1.0")

    [put] = [r for r in arm.fake.requests if r.method == "PUT" and "/deployments/" in r.path]
    body = put.json()
    assert body["properties"]["mode"] == "Incremental"
    parameters = {k: v["value"] for k, v in body["properties"]["parameters"].items()}
    assert parameters["packageVersion"] == "1.1.0"
    assert parameters["targetId"] == "ionq.qpu.aria-1"
    assert parameters["targetProfile"] == "Base"
    assert parameters["qirSha256"] == "ab" * 32
    assert parameters["siteName"] == "bell-service-staging-qr"
    assert "qirProgram" not in parameters  # the template does not declare it
    assert body["tags"]["qrelease-version"] == "1.1.0"
    assert arm.fake.count("GET", "/operationStatuses/") >= 2  # Azure-AsyncOperation followed
    assert put.path.endswith("/deployments/qrelease-azure-staging-bell-service-1.1.0")
    assert deployer.observe(env, "bell-service").current == "1.1.0"
    assert deployer.outputs(env, "bell-service")["healthUrl"] == health[1]
    live = deployer.check_health(env, manifest("1.1.0"), current=True)
    assert live.ok and "answered 200" in live.message
    health[0].status = 503
    assert not deployer.check_health(env, manifest("1.1.0"), current=True).ok


def test_the_health_probe_trusts_the_ca_bundle_the_arm_clients_trust(
    arm: Arm, make_deployer: Make, tls: TlsFiles
) -> None:
    env = example_environment()
    deployer = make_deployer()  # connection_verify: the loopback certificate, not a system CA
    with LoopbackServer(HealthFake(), tls) as server:
        arm.fake.output_values["healthUrl"] = f"{server.url}/healthz"
        deploy(deployer, env, "1.1.0")

        live = deployer.check_health(env, manifest("1.1.0"), current=True)

    assert live.ok and "answered 200" in live.message


def test_one_ca_bundle_variable_reaches_every_client_in_production(
    arm: Arm, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls.cert))
    env = example_environment()
    deployer = ArmDeployer(
        example_files().get,
        credential=StaticToken("arm-token"),
        base_url=arm.url,  # connection_verify left at its default, as wiring leaves it
        retry=FAST,
        poll_interval=0.005,
    )
    try:
        with LoopbackServer(HealthFake(), tls) as server:
            arm.fake.output_values["healthUrl"] = f"{server.url}/healthz"
            deploy(deployer, env, "1.1.0")

            live = deployer.check_health(env, manifest("1.1.0"), current=True)
    finally:
        deployer.close()

    assert live.ok and "answered 200" in live.message


def test_the_program_and_lock_reach_templates_that_declare_them(
    arm: Arm, make_deployer: Make
) -> None:
    template = json.loads(example_files()[APP_TEMPLATE])
    template["parameters"] |= {"qirProgram": {"type": "string"}, "releaseLock": {"type": "object"}}
    files = {APP_TEMPLATE: json.dumps(template).encode()}

    deploy(make_deployer(files), example_environment(), "1.1.0")

    [put] = [r for r in arm.fake.requests if r.method == "PUT" and "/deployments/" in r.path]
    parameters = put.json()["properties"]["parameters"]
    assert parameters["qirProgram"] == {"value": "; QIR"}
    assert parameters["releaseLock"]["value"]["revision"] == "c0ffee"


def test_what_if_shows_what_a_new_release_would_change(arm: Arm, make_deployer: Make) -> None:
    env = example_environment()
    deployer = make_deployer()
    deploy(deployer, env, "1.0.0")

    changes = deployer.what_if(env, manifest("1.1.0"))

    assert changes == [
        "Modify Microsoft.Web/sites/bell-service-staging-qr: properties.siteConfig.appSettings"
    ]
    assert arm.fake.puts() == 1


def test_what_if_before_the_resource_group_exists_says_it_will_be_created(
    make_deployer: Make,
) -> None:
    changes = make_deployer().what_if(example_environment(), manifest("1.1.0"))

    assert changes == ["Create resource group rg-bell-staging in westeurope; every resource is new"]


def test_a_failed_deployment_raises_arm_code_and_message_and_keeps_the_previous_release(
    arm: Arm, make_deployer: Make
) -> None:
    env = example_environment()
    deployer = make_deployer()
    deploy(deployer, env, "1.0.0")
    arm.fake.fail_next_deployment("Conflict", "Website with given name already exists.")

    with pytest.raises(DeployError) as raised:
        deploy(deployer, env, "1.1.0")

    text = str(raised.value)
    assert text.startswith("azure-staging: deploying qrelease-azure-staging-bell-service-1.1.0")
    assert "DeploymentFailed: At least one resource deployment operation failed" in text
    assert "Conflict: Website with given name already exists." in text
    observed = deployer.observe(env, "bell-service")
    assert observed.current == "1.0.0"
    assert observed.on_disk == ("1.0.0",)


def test_an_invalid_template_is_refused_at_prepare(arm: Arm, make_deployer: Make) -> None:
    env = example_environment()
    files = example_files()
    files[APP_TEMPLATE] = files[APP_TEMPLATE].replace(b'"sku": {"type"', b'"tier": {"type"')
    release = manifest("1.1.0")

    with pytest.raises(DeployError) as raised:
        make_deployer(files).prepare(env, release, lock(env, release), "")

    assert "InvalidTemplate" in str(raised.value) and "'sku'" in str(raised.value)
    assert arm.fake.puts() == 0


def test_a_template_path_outside_the_repo_is_refused(make_deployer: Make) -> None:
    data = example_environment().model_dump()
    data["classical"]["template"] = "../secrets/x.json"
    env = Environment.model_validate(data)

    with pytest.raises(DeployError, match="must stay inside the repository"):
        make_deployer().what_if(env, manifest("1.1.0"))


def test_switch_back_to_an_earlier_release_rebuilds_it_from_arms_record(
    arm: Arm, make_deployer: Make
) -> None:
    env = example_environment()
    first = make_deployer()
    deploy(first, env, "1.0.0")
    deploy(first, env, "1.1.0")

    make_deployer().switch(env, "bell-service", "1.0.0")  # a restarted controller rolls back

    last_put = [r for r in arm.fake.requests if r.method == "PUT" and "/deployments/" in r.path][-1]
    assert last_put.json()["properties"]["parameters"]["packageVersion"] == {"value": "1.0.0"}
    assert make_deployer().observe(env, "bell-service").current == "1.0.0"


def test_switch_to_a_release_never_prepared_nor_deployed_is_refused(make_deployer: Make) -> None:
    env = example_environment()
    deployer = make_deployer()
    deploy(deployer, env, "1.0.0")

    with pytest.raises(DeployError, match="neither prepared nor deployed"):
        deployer.switch(env, "bell-service", "1.2.0")


def test_remove_deletes_the_apps_deployment_records(arm: Arm, make_deployer: Make) -> None:
    env = example_environment()
    deployer = make_deployer()
    deploy(deployer, env, "1.0.0")

    deployer.remove(env, "bell-service")

    assert arm.fake.deployments == {}
    assert deployer.observe(env, "bell-service").current is None


# -- transient failures and credentials -------------------------------------------------


def test_a_429_then_success_is_retried_and_reported(
    arm: Arm, make_deployer: Make, caplog: pytest.LogCaptureFixture
) -> None:
    env = example_environment()
    deployer = make_deployer()
    arm.fake.inject("PUT", r"/deployments/[^/]+$", status=429, headers={"Retry-After": "0"})

    deploy(deployer, env, "1.1.0")

    assert arm.fake.puts() == 2
    assert deployer.observe(env, "bell-service").current == "1.1.0"
    messages = [r.getMessage() for r in caplog.records]
    assert any("succeeded, retried 1 time: HTTP 429 on PUT" in text for text in messages)


def test_a_429_without_retry_after_on_a_post_is_retried(
    arm: Arm, make_deployer: Make, caplog: pytest.LogCaptureFixture
) -> None:
    env = example_environment()
    release = manifest("1.1.0")
    arm.fake.inject("POST", "/validate$", status=429)  # throttled, no Retry-After

    deployer = make_deployer()
    deployer.prepare(env, release, lock(env, release), "")

    assert arm.fake.count("POST", "/validate$") == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("validating deployment" in m and "retried 1 time: HTTP 429 on POST" in m
               for m in messages)  # fmt: skip


def test_a_502_on_a_post_is_retried(arm: Arm, make_deployer: Make) -> None:
    env = example_environment()
    release = manifest("1.1.0")
    arm.fake.inject("POST", "/whatIf$", status=502)

    prepared = make_deployer().prepare(env, release, lock(env, release), "")

    assert prepared.installed
    assert arm.fake.count("POST", "/whatIf$") == 2


def test_a_failure_that_was_not_retried_does_not_claim_retries(
    arm: Arm, make_deployer: Make, caplog: pytest.LogCaptureFixture
) -> None:
    env = example_environment()
    release = manifest("1.1.0")
    arm.fake.inject("POST", "/validate$", status=503, times=10)
    deployer = make_deployer(retry=RetrySettings(attempts=1))

    with pytest.raises(DeployError) as raised:
        deployer.prepare(env, release, lock(env, release), "")

    text = str(raised.value)
    assert "Azure Resource Manager unavailable while validating deployment" in text
    assert "HTTP 503" in text
    assert "retr" not in text
    assert not any("retr" in r.getMessage() for r in caplog.records)
    assert arm.fake.count("POST", "/validate$") == 1


def test_retry_after_is_honoured_up_to_its_cap(
    arm: Arm, make_deployer: Make, slept: list[float]
) -> None:
    env = example_environment()
    release = manifest("1.1.0")
    arm.fake.inject("GET", r"/resourcegroups/[^/]+$", status=503, headers={"Retry-After": "2"})
    arm.fake.inject("POST", "/validate$", status=429, headers={"Retry-After": "3600"})
    deployer = make_deployer(retry=RetrySettings(attempts=3, retry_after_max_seconds=30))

    deployer.prepare(env, release, lock(env, release), "")

    waits = [wait for wait in slept if wait >= 1]  # long-running operations poll at 0 s here
    assert waits == [2, 30]  # as asked, then no longer than the cap


def test_server_errors_and_timeouts_are_retried(arm: Arm, make_deployer: Make) -> None:
    env = example_environment()
    arm.fake.inject("POST", "/whatIf$", status=503)
    arm.fake.inject("POST", "/validate$", status=500)
    arm.fake.inject("GET", "/operationStatuses/", delay=0.6)
    deployer = make_deployer(
        retry=RetrySettings(attempts=3, backoff_seconds=0.01, read_timeout=0.3)
    )

    deploy(deployer, env, "1.1.0")

    assert deployer.observe(env, "bell-service").current == "1.1.0"
    assert arm.fake.count("POST", "/whatIf$") == 2


def test_errors_past_every_retry_name_the_step(arm: Arm, make_deployer: Make) -> None:
    env = example_environment()
    arm.fake.inject("POST", "/validate$", status=503, times=10)
    release = manifest("1.1.0")

    with pytest.raises(DeployError) as raised:
        make_deployer().prepare(env, release, lock(env, release), "")

    assert "Azure Resource Manager unavailable while validating deployment" in str(raised.value)
    assert "(retried 2 times: HTTP 503 on POST" in str(raised.value)
    assert arm.fake.count("POST", "/validate$") == FAST.attempts


def test_a_401_is_an_immediate_error_naming_environment_and_credential(
    arm: Arm, make_deployer: Make, slept: list[float]
) -> None:
    arm.fake.reject_auth = True
    env = example_environment()
    release = manifest("1.1.0")

    with pytest.raises(ArmAuthError) as raised:
        make_deployer().prepare(env, release, lock(env, release), "")

    assert slept == []  # refused credentials are not retried
    text = str(raised.value)
    assert text.startswith("azure-staging: Azure Resource Manager did not accept the credentials")
    assert "StaticToken given to qrelease" in text and "InvalidAuthenticationToken" in text
    assert len(arm.fake.requests) == 1
    assert "arm-token" not in text


def test_an_untrusted_certificate_is_an_immediate_error(make_deployer: Make) -> None:
    env = example_environment()
    release = manifest("1.1.0")
    deployer = make_deployer(connection_verify=True)  # the system's CAs: not the loopback's

    with pytest.raises(DeployError) as raised:
        deployer.prepare(env, release, lock(env, release), "")

    text = str(raised.value)
    assert text.startswith("azure-staging: reading resource group rg-bell-staging failed: [SSL:")
    assert "CERTIFICATE_VERIFY_FAILED" in text and "retr" not in text
    assert not raised.value.transient


def test_a_credential_that_cannot_get_a_token_fails_before_any_request(
    arm: Arm, make_deployer: Make
) -> None:
    broken = StaticToken(error=ClientAuthenticationError("AADSTS700016: application not found"))
    env = example_environment()
    release = manifest("1.1.0")

    with pytest.raises(ArmAuthError, match="AADSTS700016"):
        make_deployer(credential=broken).prepare(env, release, lock(env, release), "")

    assert arm.fake.requests == []


def test_observe_without_access_is_an_error_not_drift(arm: Arm, make_deployer: Make) -> None:
    env = example_environment()
    deployer = make_deployer()
    deploy(deployer, env, "1.0.0")
    arm.fake.reject_auth = True

    observed = deployer.observe(env, "bell-service")

    assert observed.current == "1.0.0"  # the last version seen, not a guess
    assert observed.drift is None
    assert observed.error is not None and "did not accept the credentials" in observed.error


# -- reading what runs ------------------------------------------------------------------


def test_a_missing_resource_group_means_nothing_is_deployed(make_deployer: Make) -> None:
    observed = make_deployer().observe(example_environment(), "bell-service")

    assert observed == (None, (), None, None)


def test_a_404_from_the_deployments_list_of_an_existing_group_is_an_error(
    arm: Arm, make_deployer: Make
) -> None:
    env = example_environment()
    deploy(make_deployer(), env, "1.0.0")
    missing = error_body("NotFound", "No HTTP resource was found that matches the request URI.")
    arm.fake.inject("GET", r"/deployments/?$", status=404, body=missing, times=10)

    observed = make_deployer().observe(env, "bell-service")  # a restarted controller

    assert observed.current is None and observed.on_disk == ()
    assert observed.error is not None
    assert "listing deployments in rg-bell-staging" in observed.error
    assert "HTTP 404 NotFound: No HTTP resource was found" in observed.error
    assert re.search(r"request id [0-9a-f-]{36}", observed.error)


# -- the quantum environment's infrastructure -------------------------------------------


def test_quantum_infrastructure_is_deployed_only_when_its_template_changes(
    arm: Arm, make_deployer: Make
) -> None:
    env = example_environment()
    deployer = make_deployer()

    first = ensure_quantum_infrastructure(deployer, env)
    again = ensure_quantum_infrastructure(deployer, env)
    changed = ensure_quantum_infrastructure(deployer, example_environment(storage_account="stnew"))

    assert (first.deployed, again.deployed, changed.deployed) == (True, False, True)
    assert first.sha256 == again.sha256 != changed.sha256
    assert arm.fake.puts() == 2
    record = arm.fake.deployment("rg-quantum-staging", first.deployment)
    assert record["tags"]["qrelease-template-sha256"] == changed.sha256
    parameters = record["properties"]["parameters"]
    assert parameters["workspaceName"]["value"] == "qws-bell-staging"
    assert parameters["storageAccountName"]["value"] == "stnew"
    assert arm.fake.resource_groups["rg-quantum-staging"]["location"] == "westeurope"
    assert "unchanged" in again.message


# -- the engine, wired as the runtime wires it ------------------------------------------


@dataclass
class AzureRig:
    """The engine over ArmDeployer and AzureQuantumBackend, on a real repo and store."""

    repo: GitOpsRepo
    git: GitRepo
    store: StateStore
    deployer: ArmDeployer
    quantum: QuantumFake
    arm: ArmFake
    engine: Engine

    def pin(self, version: str) -> None:
        path = "releases/azure-staging.yaml"
        text = self.repo.read(path).replace("bell-service: 1.0.0", f"bell-service: {version}")
        self.repo.write(path, text)
        self.repo.commit(f"pin bell-service {version}")

    def state(self) -> Any:
        return self.store.get_observed("azure-staging", "bell-service")


@pytest.fixture
def azure_rig(
    example_repo: GitOpsRepo,
    tmp_path: Path,
    arm: Arm,
    health: tuple[HealthFake, str],
    make_deployer: Make,
) -> Iterator[AzureRig]:
    for path, content in example_files().items():
        example_repo.write(path, content)
    text = (EXAMPLES / "releases" / "azure-staging.yaml").read_text()
    text = text.replace(PLACEHOLDER_SUB, SUB).replace("bell-service: 1.1.0", "bell-service: 1.0.0")
    text = text.replace("promote_from: dev\n", "")  # ARM is the point here, not promotion policy
    example_repo.write("releases/azure-staging.yaml", text)
    example_repo.commit("an environment on Azure")
    arm.fake.output_values["healthUrl"] = health[1]
    git = GitRepo(example_repo.path)
    store = open_store(tmp_path / "state")
    deployer = make_deployer(files={})
    deployer.read_template = lambda path: git.show_file("HEAD", path)
    quantum = QuantumFake(api_key="rig-key")
    quantum.set_target("ionq.simulator", profile="Base", qubits=29)
    quantum.set_target("ionq.qpu.aria-1", profile="Base", qubits=25)
    local = QdkBackend()
    with LoopbackServer(quantum) as server:
        backends: dict[str, AzureQuantumBackend] = {}

        def quantum_for(env: Environment) -> QuantumBackend:
            assert env.quantum.kind == "azure"
            if env.environment not in backends:
                backends[env.environment] = AzureQuantumBackend(
                    env.quantum,
                    environment=env.environment,
                    credential=AzureKeyCredential("rig-key"),
                    endpoint=server.url,
                    local=local,
                    retry=FAST,
                    poll_interval=0.005,
                )
            return backends[env.environment]

        def provisioner_for(env: Environment) -> Provisioner | None:
            infrastructure = getattr(env.quantum, "infrastructure", None)
            return deployer if infrastructure else None  # as wiring.LocalBackends does

        engine = Engine(git, store, Backends(lambda env: deployer, quantum_for, provisioner_for))
        yield AzureRig(example_repo, git, store, deployer, quantum, arm.fake, engine)
        for backend in backends.values():
            backend.close()
    store.close()
    git.close()


def outcomes(report: PassReport) -> dict[tuple[str, str], Rollout | None]:
    """Each (env, app)'s rollout outcome in the pass."""
    return {app.key: app.outcome for app in report.apps}


def test_an_environment_on_azure_reconciles_to_healthy(azure_rig: AzureRig) -> None:
    result = azure_rig.engine.reconcile(env_filter="azure-staging")

    assert outcomes(result) == {("azure-staging", "bell-service"): Rollout.SUCCEEDED}
    state = azure_rig.state()
    assert (state.deployed, state.sync, state.health) == ("1.0.0", Sync.SYNCED, Health.HEALTHY)
    events = list(azure_rig.store.iter_events(env="azure-staging", app="bell-service"))
    verification = [e for e in events if e.action == "gate" and e.details["gate"] == "verification"]
    assert verification[0].outcome == "Passed"
    assert verification[0].details["job_id"] == azure_rig.quantum.submitted()[0]["id"]
    assert verification[0].details["cost_estimate"]["currencyCode"] == "USD"


def test_an_unavailable_target_holds_the_rollout_without_rolling_back(azure_rig: AzureRig) -> None:
    azure_rig.engine.reconcile(env_filter="azure-staging")
    azure_rig.quantum.set_target("ionq.qpu.aria-1", availability="Unavailable")
    azure_rig.pin("1.1.0")
    puts = azure_rig.arm.puts()

    result = azure_rig.engine.reconcile(env_filter="azure-staging")

    assert outcomes(result) == {("azure-staging", "bell-service"): Rollout.HELD}
    state = azure_rig.state()
    assert (state.deployed, state.health) == ("1.0.0", Health.HEALTHY)
    assert "ionq.qpu.aria-1 is Unavailable" in state.message
    assert azure_rig.arm.puts() == puts


def test_a_failed_arm_deployment_leaves_the_previous_release_running_and_says_why(
    azure_rig: AzureRig,
) -> None:
    azure_rig.engine.reconcile(env_filter="azure-staging")
    azure_rig.pin("1.1.0")
    azure_rig.arm.fail_next_deployment("Conflict", "Website with given name already exists.")

    failed = azure_rig.engine.reconcile(env_filter="azure-staging")
    state = azure_rig.state()
    retried = azure_rig.engine.reconcile(env_filter="azure-staging", retry=Retry.ALL)

    assert outcomes(failed) == {("azure-staging", "bell-service"): Rollout.FAILED}
    assert state.deployed == "1.0.0" and state.sync is Sync.OUT_OF_SYNC
    assert state.rollout_step == "deploy"
    assert state.message.startswith("deploy failed for 1.1.0: azure-staging: deploying")
    assert "failed (ARM: DeploymentFailed: At least one resource" in state.message
    assert "Conflict: Website with given name already exists." in state.message
    assert "install" not in state.message
    assert outcomes(retried) == {("azure-staging", "bell-service"): Rollout.SUCCEEDED}
    assert azure_rig.state().deployed == "1.1.0"


def test_a_validation_refused_by_arm_is_a_failed_validate_step(azure_rig: AzureRig) -> None:
    azure_rig.engine.reconcile(env_filter="azure-staging")
    azure_rig.pin("1.1.0")
    refusal = error_body("InvalidTemplateDeployment", "The template deployment is not valid.")
    azure_rig.arm.inject("POST", r"bell-service-1\.1\.0/validate$", status=400, body=refusal)

    azure_rig.engine.reconcile(env_filter="azure-staging")

    state = azure_rig.state()
    assert (state.rollout, state.rollout_step) == (Rollout.FAILED, "validate")
    assert state.message.startswith("validate failed for 1.1.0: azure-staging: validating")
    assert "(ARM: HTTP 400 InvalidTemplateDeployment: The template deployment is not valid." in (
        state.message
    )


# -- the quantum environment's infrastructure, in a pass --------------------------------

INFRA = "qrelease-quantum-qws-bell-staging"


def infrastructure_events(rig: AzureRig) -> list[Any]:
    """The environment's infrastructure events, oldest first."""
    return list(rig.store.iter_events(env="azure-staging", actions=["infrastructure"]))


def test_a_pass_deploys_the_quantum_infrastructure_before_the_release_gates(
    azure_rig: AzureRig,
) -> None:
    result = azure_rig.engine.reconcile(env_filter="azure-staging")

    assert outcomes(result) == {("azure-staging", "bell-service"): Rollout.SUCCEEDED}
    record = azure_rig.arm.deployment("rg-quantum-staging", INFRA)
    assert record["properties"]["provisioningState"] == "Succeeded"
    assert record["properties"]["parameters"]["storageAccountName"]["value"] == "stbellqrstaging"
    [event] = infrastructure_events(azure_rig)
    assert (event.app, event.outcome) == ("", "Succeeded")
    assert event.details["deployment"] == INFRA
    assert event.details["resource_group"] == "rg-quantum-staging"
    assert event.details["sha256"] == record["tags"]["qrelease-template-sha256"]
    first_gate = next(
        e for e in azure_rig.store.iter_events(env="azure-staging") if e.action == "gate"
    )
    assert event.seq < first_gate.seq


def test_an_unchanged_infrastructure_template_costs_one_get_per_pass(azure_rig: AzureRig) -> None:
    azure_rig.engine.reconcile(env_filter="azure-staging")
    seen = len(azure_rig.arm.requests)

    azure_rig.engine.reconcile(env_filter="azure-staging")

    calls = [(r.method, r.path) for r in azure_rig.arm.requests[seen:] if INFRA in r.path]
    assert [method for method, _ in calls] == ["GET"]
    assert len(infrastructure_events(azure_rig)) == 1


def test_a_changed_infrastructure_template_is_deployed_by_the_next_pass(
    azure_rig: AzureRig,
) -> None:
    azure_rig.engine.reconcile(env_filter="azure-staging")
    template = json.loads(azure_rig.repo.read(QUANTUM_TEMPLATE))
    template["parameters"]["sku"] = {"type": "string", "defaultValue": "Standard_GRS"}
    azure_rig.repo.write(QUANTUM_TEMPLATE, json.dumps(template))
    azure_rig.repo.commit("storage: geo-redundant")

    azure_rig.engine.reconcile(env_filter="azure-staging")

    events = infrastructure_events(azure_rig)
    assert [e.outcome for e in events] == ["Succeeded", "Succeeded"]
    assert events[0].details["sha256"] != events[1].details["sha256"]
    assert azure_rig.arm.count("PUT", f"/deployments/{INFRA}$") == 2


def test_a_failed_infrastructure_deployment_holds_the_environments_rollouts(
    azure_rig: AzureRig,
) -> None:
    azure_rig.arm.fail_next_deployment("InvalidResourceLocation", "Quantum is not in westeurope.")

    held = azure_rig.engine.reconcile(env_filter="azure-staging")

    assert outcomes(held) == {("azure-staging", "bell-service"): Rollout.HELD}
    state = azure_rig.state()
    assert (state.deployed, state.rollout, state.rollout_step) == (None, Rollout.HELD,
                                                                  "infrastructure")  # fmt: skip
    assert "quantum infrastructure: azure-staging: deploying " + INFRA in state.message
    assert "(ARM: DeploymentFailed" in state.message
    assert "InvalidResourceLocation: Quantum is not in westeurope." in state.message
    assert azure_rig.arm.count("PUT", "/deployments/qrelease-azure-staging-") == 0
    assert azure_rig.quantum.submitted() == []  # no gate ran
    [event] = infrastructure_events(azure_rig)
    assert event.outcome == "Failed" and "InvalidResourceLocation" in event.reason
    again = azure_rig.engine.reconcile(env_filter="azure-staging")  # ARM is fixed meanwhile
    assert outcomes(again) == {("azure-staging", "bell-service"): Rollout.SUCCEEDED}
    assert [e.outcome for e in infrastructure_events(azure_rig)] == ["Failed", "Succeeded"]


def test_the_same_infrastructure_failure_is_recorded_once(azure_rig: AzureRig) -> None:
    azure_rig.arm.fail_next_deployment("InvalidResourceLocation", "Quantum is not in westeurope.")
    azure_rig.arm.fail_next_deployment("InvalidResourceLocation", "Quantum is not in westeurope.")

    azure_rig.engine.reconcile(env_filter="azure-staging")
    azure_rig.engine.reconcile(env_filter="azure-staging")

    assert [e.outcome for e in infrastructure_events(azure_rig)] == ["Failed"]
    assert azure_rig.state().rollout is Rollout.HELD


# -- what runs, when ARM cannot say ----------------------------------------------------


def test_an_unreadable_deployments_list_keeps_the_live_release_and_says_why(
    azure_rig: AzureRig,
) -> None:
    azure_rig.engine.reconcile(env_filter="azure-staging")
    azure_rig.deployer.close()
    azure_rig.deployer._last_seen.clear()  # as after a restart: only the store remembers
    missing = error_body("NotFound", "No HTTP resource was found that matches the request URI.")
    azure_rig.arm.inject("GET", r"/deployments/?$", status=404, body=missing, times=100)
    puts = azure_rig.arm.puts()

    result = azure_rig.engine.reconcile(env_filter="azure-staging")

    state = azure_rig.state()
    assert state.deployed == "1.0.0"
    assert (state.sync, state.health) == (Sync.UNKNOWN, Health.UNKNOWN)
    assert "cannot read what runs: azure-staging: listing deployments in rg-bell-staging" in (
        state.message
    )
    assert "HTTP 404 NotFound" in state.message and "request id" in state.message
    assert azure_rig.arm.puts() == puts  # nothing redeployed on a guess
    assert outcomes(result) == {("azure-staging", "bell-service"): Rollout.HELD}


def test_logging_of_a_deployment_names_no_token(
    arm: Arm, make_deployer: Make, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    deploy(make_deployer(), example_environment(), "1.1.0")

    assert caplog.records
    assert not any("arm-token" in record.getMessage() for record in caplog.records)


# -- each Azure SDK enters through one module -------------------------------------------


def azure_imports() -> dict[str, set[str]]:
    """Which `azure.*` packages each module under src/qrelease imports (at any depth)."""
    found: dict[str, set[str]] = {}
    for path in (ROOT / "src" / "qrelease").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("azure."):
                    module = str(path.relative_to(ROOT / "src"))
                    found.setdefault(module, set()).add(".".join(name.split(".")[:2]))
    return found


def test_each_azure_sdk_enters_through_one_module() -> None:
    imports = azure_imports()

    quantum = {
        m for m, packages in imports.items() if packages & {"azure.quantum", "azure.storage"}
    }
    arm = {m for m, packages in imports.items() if "azure.mgmt" in packages}
    shared = {m for m, packages in imports.items() if packages - {"azure.core", "azure.identity"}}

    assert quantum == {"qrelease/azure/quantum.py"}
    assert arm == {"qrelease/azure/arm.py"}
    assert shared == quantum | arm
    assert set(imports) <= {*quantum, *arm, "qrelease/azure/common.py"}


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(arm_module).failed == 0


@pytest.mark.parametrize("name", ["azure-staging", "azure-prod"])
def test_the_example_environments_validate(name: str) -> None:
    env = example_environment(name)

    assert env.classical.kind == "arm" and env.quantum.kind == "azure"
    assert env.classical.template == APP_TEMPLATE
    assert env.quantum.infrastructure == QUANTUM_TEMPLATE


def test_the_arm_deployer_previews_plans() -> None:
    from qrelease.deployers.base import Previewer

    deployer = ArmDeployer(lambda path: None)
    try:
        assert isinstance(deployer, Previewer)
    finally:
        deployer.close()
