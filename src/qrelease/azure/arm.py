"""The ARM deployer: an environment's classical side as Azure Resource Manager deployments.

This is the only module that imports azure.mgmt (resource groups from azure-mgmt-resource,
deployments from azure-mgmt-resource-deployments). ARM has no `current` link to swap, so
the Deployer steps map onto ARM like this:

- prepare: make sure the resource group exists, then validate and what-if the release's
  deployment. Nothing that runs changes.
- check_health(current=False): nothing of the new release runs yet; reports the validation.
- switch: create-or-update the deployment in Incremental mode and follow the long-running
  operation to a terminal provisioning state. A Failed deployment raises DeployError with
  ARM's error code and message; the previous release stays the newest Succeeded one, so it
  is still what `observe` reports as running.

The engine names these steps as ARM does: prepare is `validate`, switch is `deploy`, so a
failure reads `deploy failed for 1.1.0: ... (ARM: DeploymentFailed: ...)`.
- check_health(current=True): GET the live deployment's health URL output (`healthUrl`
  unless the environment names another) with httpx; without one, its provisioning state.
- observe: the newest Succeeded deployment tagged with the environment and app. A missing
  resource group means nothing is deployed; any other failure to list (a 404 from an
  existing group included) is an observation error with ARM's status and request id.
- retire: nothing; deployment records are history, not resources.
- remove: deletes the app's deployment records. Its resources stay (Incremental mode never
  deletes anything); whoever owns them removes them.

Each (environment, app, version) has its own deployment, `qrelease-<env>-<app>-<version>`,
tagged `qrelease-env`, `qrelease-app`, `qrelease-version`, `qrelease-revision` and
`qrelease-template-sha256`. Rolling back re-deploys an older version's deployment; when
this process did not prepare it, its parameters are read back from ARM's record.

The release reaches the template through parameters, each passed only when the template
declares it: `releaseVersion`, `packageVersion` (the package named like the app),
`targetId`, `targetProfile`, `qirSha256`, `qirProgram` (the compiled QIR text) and
`releaseLock` (the ReleaseLock as an object). They override `classical.parameters`.

The quantum environment (workspace + storage account) has its own template and resource
group and its own lifecycle: `ArmDeployer.ensure_quantum_infrastructure` (the engine calls
it at the start of each pass) deploys it only when the template or its parameters change,
tracked by their sha256 in a deployment tag.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath
from typing import Any

import httpx
from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.mgmt.resource.deployments import DeploymentsMgmtClient
from azure.mgmt.resource.deployments.models import Deployment, DeploymentWhatIf
from azure.mgmt.resource.resources import ResourceManagementClient

from qrelease.azure.common import (
    AzureAuthError,
    CredentialChoice,
    Pipeline,
    RetrySettings,
    auth_failure,
    classify,
    default_credential,
    error_summary,
    given_credential,
    plain,
    retried,
    unavailable,
)
from qrelease.deployers.base import (
    DeployError,
    HealthResult,
    InfrastructureResult,
    Observed,
    Prepared,
    ReleaseLock,
    StepNames,
)
from qrelease.model.environment import ArmDeploy, AzureQuantum, Environment
from qrelease.model.manifest import ReleaseManifest
from qrelease.model.types import format_duration, version_key
from qrelease.redaction import redact

SERVICE = "Azure Resource Manager"
MODE = "Incremental"
TAG_ENV = "qrelease-env"
TAG_APP = "qrelease-app"
TAG_VERSION = "qrelease-version"
TAG_REVISION = "qrelease-revision"
TAG_TEMPLATE = "qrelease-template-sha256"
MAX_TEMPLATE_BYTES = 4 * 1024 * 1024  # ARM's own request limit
MAX_NAME = 64
QUIET_CHANGES = ("NoChange", "Ignore")
SUCCEEDED_FILTER = "provisioningState eq 'Succeeded'"
_NAME_CHARS = re.compile(r"[^-\w.()]")
log = logging.getLogger("qrelease.azure.arm")

ReadTemplate = Callable[[str], bytes | None]


class ArmAuthError(DeployError):
    """ARM refused the credentials: immediate, naming the environment and credential source."""


# -- pure helpers -----------------------------------------------------------------------


def deployment_name(*parts: str) -> str:
    """An ARM deployment name from parts, shortened with a digest to ARM's 64 characters.

    >>> deployment_name("qrelease", "dev", "bell-service", "1.2.0+build.7")
    'qrelease-dev-bell-service-1.2.0-build.7'
    >>> len(deployment_name("qrelease", "e" * 40, "a" * 40, "1.0.0"))
    64
    """
    name = _NAME_CHARS.sub("-", "-".join(parts))
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return f"{name[: MAX_NAME - 11]}-{digest}"


def storage_account_name(workspace: str) -> str:
    """A storage account name for a workspace: 3-24 lowercase letters and digits, stable.

    >>> storage_account_name("qws-bell-staging")
    'stqwsbellstaging9cd533'
    """
    letters = re.sub(r"[^a-z0-9]", "", workspace.lower())
    digest = hashlib.sha256(workspace.encode()).hexdigest()[:6]
    return f"st{letters[:16]}{digest}"


def template_digest(template: Mapping[str, Any], parameters: Mapping[str, Any]) -> str:
    """sha256 of a template and its parameters in canonical JSON (key order ignored).

    >>> template_digest({"b": 1, "a": 2}, {}) == template_digest({"a": 2, "b": 1}, {})
    True
    """
    canonical = json.dumps(
        {"template": template, "parameters": parameters}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def arm_value(value: Any) -> dict[str, Any]:
    """A parameter as ARM wants it: plain values wrapped, `{"value"}`/`{"reference"}` kept.

    >>> arm_value(3), arm_value({"value": "x"}), arm_value({"a": 1})
    ({'value': 3}, {'value': 'x'}, {'value': {'a': 1}})
    """
    if isinstance(value, Mapping) and len(value) == 1 and set(value) & {"value", "reference"}:
        return dict(value)
    return {"value": value}


def package_version(manifest: ReleaseManifest) -> str:
    """The version of the package named like the app, else the release's version."""
    wanted = manifest.app.lower().replace("_", "-")
    for package in manifest.classical.packages:
        if package.name.lower().replace("_", "-") == wanted:
            return package.version
    return manifest.version


def release_values(manifest: ReleaseManifest, lock: ReleaseLock, qir: str) -> dict[str, Any]:
    """The release-specific template parameters qrelease offers every template."""
    return {
        "releaseVersion": manifest.version,
        "packageVersion": package_version(manifest),
        "targetId": manifest.quantum.target.id,
        "targetProfile": str(manifest.quantum.target.profile),
        "qirSha256": lock.qir_sha256,
        "qirProgram": qir,
        "releaseLock": asdict(lock),
    }


def deployment_parameters(
    template: Mapping[str, Any], given: Mapping[str, Any], offered: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """The environment's parameters, overridden by the offered ones the template declares."""
    declared = template.get("parameters") or {}
    parameters = {name: arm_value(value) for name, value in given.items()}
    parameters |= {name: {"value": value} for name, value in offered.items() if name in declared}
    return parameters


def check_template_path(path: str) -> str | None:
    """Why a template path is unsafe (absolute, escaping, not JSON), or None when it is fine.

    >>> check_template_path("infra/app.json") is None, check_template_path("../x.json")
    (True, "'../x.json' must stay inside the repository (no '..' segments)")
    """
    pure = PurePosixPath(path)
    if pure.is_absolute() or "\\" in path:
        return f"{path!r} must be a relative path inside the repository"
    if any(part in ("..", "") for part in path.split("/")):
        return f"{path!r} must stay inside the repository (no '..' segments)"
    if pure.suffix != ".json":
        return f"{path!r} is not an ARM template (.json)"
    return None


def describe_change(change: Mapping[str, Any]) -> str:
    """One what-if change as a line for people: `Modify Microsoft.Web/sites/app: a.b, c`.

    >>> describe_change({"resourceId": "/subscriptions/s/resourceGroups/g/providers/"
    ...     "Microsoft.Web/sites/app", "changeType": "Modify", "delta": [{"path": "a.b"}]})
    'Modify Microsoft.Web/sites/app: a.b'
    """
    resource = str(change.get("resourceId", "?"))
    short = resource.split("/providers/", 1)[-1]
    text = f"{change.get('changeType', '?')} {short}"
    paths = [str(d.get("path")) for d in change.get("delta") or [] if isinstance(d, Mapping)]
    return f"{text}: {', '.join(paths)}" if paths else text


def arm_error_text(error: HttpResponseError) -> str:
    """ARM's error code and message, with the inner errors that say what really failed.

    A refused request (4xx/5xx) also gets its HTTP status and ARM's request id, which is
    what Azure support asks for; a failed long-running operation is told by its codes.
    """
    service_error = error.error
    if service_error is None or not service_error.code:
        text = (str(error.message or error).splitlines() or [""])[0]
    else:
        parts = [f"{service_error.code}: {service_error.message}"]
        parts += [f"{d.code}: {d.message}" for d in service_error.details or [] if d.code]
        text = " -> ".join(parts)
    status = error.status_code or 0
    if status >= 400:
        request = request_id(error)
        text = f"HTTP {status} {text}" + (f"; request id {request}" if request else "")
    return redact(text)


def request_id(error: HttpResponseError) -> str | None:
    """ARM's id of a refused request (x-ms-request-id), else the id qrelease sent with it."""
    response: Any = error.response
    if response is None:
        return None
    for header in ("x-ms-request-id", "x-ms-correlation-request-id"):
        value = response.headers.get(header)
        if value:
            return str(value)
    request = getattr(response, "request", None)
    sent = request.headers.get("x-ms-client-request-id") if request is not None else None
    return str(sent) if sent else None


def _tags(deployment: Mapping[str, Any]) -> dict[str, str]:
    """A deployment's tags (empty when it has none)."""
    tags = deployment.get("tags")
    return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, Mapping) else {}


def _properties(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """A deployment's properties (empty when absent)."""
    properties = deployment.get("properties")
    return dict(properties) if isinstance(properties, Mapping) else {}


def version_of(deployment: Mapping[str, Any]) -> str | None:
    """The release version a deployment carries: its tag, else its releaseVersion parameter."""
    tagged = _tags(deployment).get(TAG_VERSION)
    if tagged:
        return tagged
    parameter = (_properties(deployment).get("parameters") or {}).get("releaseVersion") or {}
    value = parameter.get("value") if isinstance(parameter, Mapping) else None
    return str(value) if value else None


def outputs_of(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """A deployment's outputs as plain name -> value."""
    outputs = _properties(deployment).get("outputs") or {}
    return {
        str(name): spec.get("value") if isinstance(spec, Mapping) else spec
        for name, spec in outputs.items()
    }


# -- the deployer -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Release:
    """A deployment ready to submit: its name, request body and what-if's changes."""

    name: str
    body: dict[str, Any]
    changes: tuple[str, ...] = ()


@dataclass
class _Clients:
    """The SDK clients of one subscription."""

    groups: ResourceManagementClient
    deployments: DeploymentsMgmtClient

    def close(self) -> None:
        """Close both clients' HTTP sessions."""
        self.groups.close()
        self.deployments.close()


class ArmDeployer:
    """A Deployer for `classical: {kind: arm, ...}` environments.

    `read_template(path)` returns the bytes of a repo file (None when absent); `credential`
    overrides DefaultAzureCredential; `base_url` overrides the ARM endpoint;
    `connection_verify` is the TLS trust of every client it builds, the health probe's
    included (True, or a CA bundle path); `poll_interval` is the LRO poll delay when ARM
    sends no Retry-After.
    """

    step_names = StepNames(prepare="validate", switch="deploy")

    def __init__(
        self,
        read_template: ReadTemplate,
        *,
        credential: Any = None,
        base_url: str | None = None,
        retry: RetrySettings | None = None,
        poll_interval: float = 10.0,
        connection_verify: bool | str = True,
        http: httpx.Client | None = None,
    ) -> None:
        self.read_template = read_template
        self.base_url = base_url
        self.retry = retry or RetrySettings()
        self.poll_interval = poll_interval
        self.connection_verify = connection_verify
        self._given = credential
        self._choice: CredentialChoice | None = None
        self._http = http
        self._clients_by_subscription: dict[str, _Clients] = {}
        self._prepared: dict[tuple[str, str, str], _Release] = {}
        self._last_seen: dict[tuple[str, str], str | None] = {}
        self._lock = threading.Lock()  # the engine may roll out several apps at once
        self._pipeline = Pipeline(self.retry, connection_verify)

    # -- the Deployer Protocol

    def observe(self, env: Environment, app: str) -> Observed:
        """The newest Succeeded deployment of the app; when ARM cannot say, the error."""
        arm = _arm(env)
        key = (env.environment, app)
        try:
            deployments = self._succeeded(env.environment, arm)
        except DeployError as error:
            return Observed(self._last_seen.get(key), error=str(error))
        mine = [d for d in deployments if _belongs(d, env.environment, app)]
        newest = max(mine, key=lambda d: str(_properties(d).get("timestamp", "")), default=None)
        current = version_of(newest) if newest else None
        self._last_seen[key] = current
        versions = {v for v in (version_of(d) for d in mine) if v}
        return Observed(current, tuple(sorted(versions, key=_version_order)))

    def prepare(
        self, env: Environment, manifest: ReleaseManifest, lock: ReleaseLock, qir: str
    ) -> Prepared:
        """Ensure the resource group, then validate and what-if the release (no deployment)."""
        arm = _arm(env)
        release = self._release(env, arm, manifest, lock, qir)
        clients = self._clients(arm.subscription)
        self._ensure_group(env.environment, clients, arm.resource_group, arm.location)
        self._validate(env.environment, clients, arm.resource_group, release)
        changes = self._what_if(env.environment, clients, arm.resource_group, release)
        prepared = _Release(release.name, release.body, tuple(changes))
        self._prepared[(env.environment, manifest.app, manifest.version)] = prepared
        log.info("%s/%s %s what-if: %s", env.environment, manifest.app, manifest.version, changes)
        return Prepared(manifest.version, installed=bool(_loud(changes)))

    def check_health(
        self, env: Environment, manifest: ReleaseManifest, *, current: bool
    ) -> HealthResult:
        """Before switch: the validation; after: the live deployment's health URL or state."""
        arm = _arm(env)
        if not current:
            return self._prepared_health(env.environment, arm, manifest)
        try:
            live = self._live(env.environment, arm, manifest.app)
        except DeployError as error:
            return HealthResult(False, str(error))
        if live is None:
            return HealthResult(
                False, f"no Succeeded deployment of {manifest.app} in {arm.resource_group}"
            )
        url = outputs_of(live).get(arm.health_output)
        state = f"deployment {live.get('name')} Succeeded"
        if not isinstance(url, str) or not url:
            return HealthResult(True, f"{state} (no {arm.health_output} output to probe)")
        return self._probe(url, arm.health_timeout.total_seconds(), state)

    def switch(self, env: Environment, app: str, version: str) -> None:
        """Deploy `version` (Incremental) and wait for a terminal provisioning state."""
        arm = _arm(env)
        key = (env.environment, app, version)
        release = self._prepared.get(key) or self._recorded(env.environment, arm, app, version)
        clients = self._clients(arm.subscription)
        deployed = self._deploy(env.environment, clients, arm, release)
        self._last_seen[(env.environment, app)] = version
        log.info(
            "%s/%s %s deployed as %s; outputs: %s",
            env.environment,
            app,
            version,
            release.name,
            sorted(outputs_of(deployed)),
        )

    def retire(self, env: Environment, app: str, keep: int) -> list[str]:
        """Nothing to free: ARM deployment records are history, not resources."""
        return []

    def remove(self, env: Environment, app: str) -> None:
        """Delete the app's deployment records (its resources stay; see the module doc)."""
        arm = _arm(env)
        clients = self._clients(arm.subscription)
        with self._errors(env.environment, f"listing deployments of {app}"):
            every = [
                plain(d)
                for d in clients.deployments.deployments.list_by_resource_group(arm.resource_group)
            ]
        for deployment in every:
            if _belongs(deployment, env.environment, app):
                name = str(deployment.get("name"))
                with self._errors(env.environment, f"deleting deployment record {name}"):
                    poller = clients.deployments.deployments.begin_delete(
                        arm.resource_group, name, polling_interval=self.poll_interval
                    )
                    poller.result(timeout=arm.deploy_timeout.total_seconds())
        self._last_seen.pop((env.environment, app), None)

    # -- beyond the Protocol

    def what_if(self, env: Environment, manifest: ReleaseManifest) -> list[str]:
        """What deploying the release would change, one line per resource (for `qrelease plan`).

        Parameters that need the compiled program (qirSha256, qirProgram, releaseLock) are
        placeholders unless this process already prepared the release.
        """
        arm = _arm(env)
        release = self._prepared.get((env.environment, manifest.app, manifest.version))
        if release is None:
            release = self._release(env, arm, manifest, _placeholder_lock(env, manifest), "")
        clients = self._clients(arm.subscription)
        if not self._group_exists(env.environment, clients, arm.resource_group):
            where = f" in {arm.location}" if arm.location else " (no location to create it)"
            return [f"Create resource group {arm.resource_group}{where}; every resource is new"]
        return _loud(self._what_if(env.environment, clients, arm.resource_group, release))

    def outputs(self, env: Environment, app: str) -> dict[str, Any]:
        """The outputs of the app's live deployment (empty when none is live)."""
        live = self._live(env.environment, _arm(env), app)
        return outputs_of(live) if live else {}

    def close(self) -> None:
        """Close every SDK client."""
        with self._lock:
            for clients in self._clients_by_subscription.values():
                clients.close()
            self._clients_by_subscription.clear()

    # -- steps

    def _release(
        self,
        env: Environment,
        arm: ArmDeploy,
        manifest: ReleaseManifest,
        lock: ReleaseLock,
        qir: str,
    ) -> _Release:
        """The deployment of one release: name, template, parameters and tags."""
        template = self.template(env.environment, arm.template)
        offered = release_values(manifest, lock, qir)
        parameters = deployment_parameters(template, arm.parameters, offered)
        tags = {
            TAG_ENV: env.environment,
            TAG_APP: manifest.app,
            TAG_VERSION: manifest.version,
            TAG_REVISION: lock.revision,
            TAG_TEMPLATE: template_digest(template, {}),
        }
        name = deployment_name("qrelease", env.environment, manifest.app, manifest.version)
        return _Release(name, _body(template, parameters, tags))

    def _recorded(self, env_name: str, arm: ArmDeploy, app: str, version: str) -> _Release:
        """A release this process did not prepare, rebuilt from ARM's record of it.

        The record's parameters (those ARM returns: secure ones it does not) are re-sent
        with the environment's current template.
        """
        name = deployment_name("qrelease", env_name, app, version)
        clients = self._clients(arm.subscription)
        record: dict[str, Any] | None = None
        with self._errors(env_name, f"reading deployment {name}"):
            try:
                record = plain(clients.deployments.deployments.get(arm.resource_group, name))
            except ResourceNotFoundError:
                record = None
        if record is None:
            raise DeployError(
                f"{env_name}: {app} {version} was neither prepared nor deployed before in"
                f" {arm.resource_group}, so there is nothing to switch to"
            )
        template = self.template(env_name, arm.template)
        recorded = _properties(record).get("parameters") or {}
        values = {
            name: spec["value"]
            for name, spec in recorded.items()
            if isinstance(spec, Mapping) and spec.get("value") is not None
        }
        parameters = deployment_parameters(template, arm.parameters, values)
        tags = _tags(record) | {TAG_TEMPLATE: template_digest(template, {})}
        return _Release(name, _body(template, parameters, tags))

    def template(self, env_name: str, path: str) -> dict[str, Any]:
        """A template from the GitOps repo, parsed and size-checked."""
        problem = check_template_path(path)
        if problem:
            raise DeployError(f"{env_name}: template {problem}")
        raw = self.read_template(path)
        if raw is None:
            raise DeployError(f"{env_name}: template {path} is not in the GitOps repository")
        if len(raw) > MAX_TEMPLATE_BYTES:
            raise DeployError(f"{env_name}: template {path} is over ARM's 4 MiB limit")
        try:
            template = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DeployError(f"{env_name}: template {path} is not valid JSON: {error}") from None
        if not isinstance(template, dict):
            raise DeployError(f"{env_name}: template {path} is not a JSON object")
        return template

    def _ensure_group(
        self, env_name: str, clients: _Clients, group: str, location: str | None
    ) -> None:
        """Create the resource group when it is missing and a location is known."""
        if self._group_exists(env_name, clients, group):
            return
        if not location:
            raise DeployError(
                f"{env_name}: resource group {group} does not exist; create it or set"
                " classical.location so that qrelease can"
            )
        body = {"location": location, "tags": {TAG_ENV: env_name}}
        with self._errors(env_name, f"creating resource group {group}"):
            clients.groups.resource_groups.create_or_update(group, body)

    def _group_exists(self, env_name: str, clients: _Clients, group: str) -> bool:
        """Whether the resource group exists (a GET, so that refusals carry ARM's error code)."""
        with self._errors(env_name, f"reading resource group {group}"):
            try:
                clients.groups.resource_groups.get(group)
            except ResourceNotFoundError:
                return False
        return True

    def _validate(self, env_name: str, clients: _Clients, group: str, release: _Release) -> None:
        """ARM's validation of the deployment; refuses with ARM's code and message."""
        with self._errors(env_name, f"validating deployment {release.name}"):
            poller = clients.deployments.deployments.begin_validate(
                group, release.name, Deployment(release.body), polling_interval=self.poll_interval
            )
            result = plain(poller.result())
        error = result.get("error") if isinstance(result, Mapping) else None
        if isinstance(error, Mapping):
            text = redact(f"{error.get('code')}: {error.get('message')}")
            raise DeployError(
                f"{env_name}: validating deployment {release.name} failed (ARM: {text})"
            )

    def _what_if(
        self, env_name: str, clients: _Clients, group: str, release: _Release
    ) -> list[str]:
        """ARM's what-if of the deployment, one line per resource."""
        with self._errors(env_name, f"computing what-if of {release.name}"):
            poller = clients.deployments.deployments.begin_what_if(
                group,
                release.name,
                DeploymentWhatIf(release.body),
                polling_interval=self.poll_interval,
            )
            result = plain(poller.result())
        changes = (result.get("properties") or {}).get("changes") or []
        return [describe_change(change) for change in changes if isinstance(change, Mapping)]

    def _deploy(
        self, env_name: str, clients: _Clients, arm: ArmDeploy, release: _Release
    ) -> dict[str, Any]:
        """Create-or-update and follow the LRO to Succeeded; anything else is a DeployError."""
        timeout = arm.deploy_timeout.total_seconds()
        doing = f"deploying {release.name} to {arm.resource_group}"
        with self._errors(env_name, doing):
            poller = clients.deployments.deployments.begin_create_or_update(
                arm.resource_group,
                release.name,
                Deployment(release.body),
                polling_interval=self.poll_interval,
            )
            poller.wait(timeout)
            if not poller.done():
                raise DeployError(
                    f"{env_name}: deployment {release.name} is still running after"
                    f" {format_duration(arm.deploy_timeout)}; ARM carries on, and the next"
                    " pass observes how it ends"
                )
            deployed: dict[str, Any] = plain(poller.result())
        state = _properties(deployed).get("provisioningState")
        if state != "Succeeded":
            raise DeployError(f"{env_name}: {doing} failed (ARM: provisioning state {state})")
        return deployed

    def _succeeded(self, env_name: str, arm: ArmDeploy) -> list[dict[str, Any]]:
        """Every Succeeded deployment in the resource group (none when the group is missing).

        A 404 from an existing group (a wrong endpoint, a proxy, an API version ARM does not
        serve) is an error: it must not read as an environment where nothing runs.
        """
        clients = self._clients(arm.subscription)
        doing = f"listing deployments in {arm.resource_group}"
        with self._errors(env_name, doing):
            try:
                pages = clients.deployments.deployments.list_by_resource_group(
                    arm.resource_group, filter=SUCCEEDED_FILTER
                )
                return [plain(deployment) for deployment in pages]
            except ResourceNotFoundError as error:
                not_found = error
        if not self._group_exists(env_name, clients, arm.resource_group):
            return []
        raise self._translate(env_name, doing, not_found, [])

    def _live(self, env_name: str, arm: ArmDeploy, app: str) -> dict[str, Any] | None:
        """The newest Succeeded deployment of the app in this environment."""
        mine = [d for d in self._succeeded(env_name, arm) if _belongs(d, env_name, app)]
        return max(mine, key=lambda d: str(_properties(d).get("timestamp", "")), default=None)

    def _prepared_health(
        self, env_name: str, arm: ArmDeploy, manifest: ReleaseManifest
    ) -> HealthResult:
        """Before the switch nothing of the release runs; report its validation."""
        release = self._prepared.get((env_name, manifest.app, manifest.version))
        if release is None:
            return HealthResult(False, f"{manifest.app} {manifest.version} was not prepared")
        changes = len(_loud(list(release.changes)))
        return HealthResult(
            True,
            f"{manifest.app} {manifest.version} validated for {arm.resource_group}"
            f" ({changes} resource changes); ARM deploys it at the switch",
        )

    def _probe(self, url: str, timeout: float, state: str) -> HealthResult:
        """GET the health URL (trusting what the Azure clients trust): 2xx or 3xx is healthy."""
        shown = redact(url.split("?", 1)[0])
        client = self._http or httpx.Client(
            timeout=timeout, follow_redirects=True, verify=self._pipeline.ssl_context()
        )
        try:
            response = client.get(url, timeout=timeout)
        except httpx.HTTPError as error:
            return HealthResult(False, f"{state}; GET {shown} failed: {type(error).__name__}")
        finally:
            if self._http is None:
                client.close()
        healthy = response.status_code < 400
        return HealthResult(healthy, f"{state}; GET {shown} answered {response.status_code}")

    # -- the quantum environment's own infrastructure

    def ensure_quantum_infrastructure(self, env: Environment) -> InfrastructureResult:
        """Deploy the workspace + storage template into its resource group only when it changed.

        The template and its parameters are hashed; the deployment carries the digest in its
        `qrelease-template-sha256` tag, so an unchanged template costs one GET and no
        deployment. The template's `workspaceName`, `location` and `storageAccountName`
        parameters, when declared, are filled from the environment file.
        """
        quantum = env.quantum
        if not isinstance(quantum, AzureQuantum) or not quantum.infrastructure:
            text = "no quantum.infrastructure template"
            return InfrastructureResult(False, "", "", "", message=text)
        template = self.template(env.environment, quantum.infrastructure)
        offered = {
            "workspaceName": quantum.workspace,
            "location": quantum.location,
            "storageAccountName": quantum.storage_account
            or storage_account_name(quantum.workspace),
        }
        parameters = deployment_parameters(template, {}, offered)
        digest = template_digest(template, parameters)
        name = deployment_name("qrelease-quantum", quantum.workspace)
        clients = self._clients(quantum.subscription)
        current = self._infrastructure(clients, env.environment, quantum.resource_group, name)
        group = quantum.resource_group
        if current is not None and _tags(current).get(TAG_TEMPLATE) == digest:
            text = f"{name} unchanged (sha256 {digest[:12]})"
            return InfrastructureResult(False, name, group, digest, outputs_of(current), text)
        release = _Release(
            name, _body(template, parameters, {TAG_ENV: env.environment, TAG_TEMPLATE: digest})
        )
        self._ensure_group(env.environment, clients, quantum.resource_group, quantum.location)
        self._validate(env.environment, clients, quantum.resource_group, release)
        target = ArmDeploy(
            kind="arm",
            subscription=quantum.subscription,
            resource_group=quantum.resource_group,
            template=quantum.infrastructure,
        )
        deployed = self._deploy(env.environment, clients, target, release)
        text = f"{name} deployed to {group} (sha256 {digest[:12]})"
        return InfrastructureResult(True, name, group, digest, outputs_of(deployed), text)

    def _infrastructure(
        self, clients: _Clients, env_name: str, group: str, name: str
    ) -> dict[str, Any] | None:
        """The infrastructure deployment if it exists and Succeeded, else None."""
        with self._errors(env_name, f"reading deployment {name}"):
            try:
                record: dict[str, Any] = plain(clients.deployments.deployments.get(group, name))
            except ResourceNotFoundError:
                return None
        return record if _properties(record).get("provisioningState") == "Succeeded" else None

    # -- clients and errors

    def _credential(self) -> CredentialChoice:
        """The credential: the one given, else DefaultAzureCredential."""
        if self._choice is None:
            given = self._given
            self._choice = given_credential(given) if given is not None else default_credential()
        return self._choice

    def _clients(self, subscription: str) -> _Clients:
        """The SDK clients of a subscription, created once on first use."""
        with self._lock:
            if subscription not in self._clients_by_subscription:
                self._clients_by_subscription[subscription] = self._new_clients(subscription)
            return self._clients_by_subscription[subscription]

    def _new_clients(self, subscription: str) -> _Clients:
        """SDK clients for one subscription with qrelease's pipeline options."""
        credential = self._credential().credential
        options: dict[str, Any] = {
            **self._pipeline.options(),
            "polling_interval": self.poll_interval,
            "user_agent": "qrelease",
        }
        if self.base_url:
            options["base_url"] = self.base_url
        return _Clients(
            ResourceManagementClient(credential, subscription, **options),
            DeploymentsMgmtClient(credential, subscription, **options),
        )

    @contextmanager
    def _errors(self, env_name: str, doing: str) -> Iterator[None]:
        """Turn SDK failures into DeployErrors: auth (immediate), unavailable, or ARM's refusal.

        The retries the block made are logged when it succeeds and named when it fails.
        """
        self._pipeline.take()  # anything an earlier call on this thread left unreported
        try:
            yield
        except DeployError:
            raise
        except Exception as error:
            raise self._translate(env_name, doing, error, self._pipeline.take()) from None
        notes = self._pipeline.take()
        if notes:
            log.warning("%s: %s succeeded, %s", env_name, doing, retried(notes))

    def _translate(
        self, env_name: str, doing: str, error: Exception, notes: list[str]
    ) -> DeployError:
        """The DeployError for an SDK failure (never carrying a secret)."""
        kind = classify(error)
        if kind == "auth":
            failure = auth_failure(env_name, SERVICE, self._credential(), doing, error)
            return ArmAuthError(str(failure))
        if kind == "transient":
            message = str(unavailable(env_name, SERVICE, doing, error, notes))
            return DeployError(message, transient=True)
        if isinstance(error, HttpResponseError):
            return DeployError(f"{env_name}: {doing} failed (ARM: {arm_error_text(error)})")
        if isinstance(error, AzureAuthError):
            return ArmAuthError(str(error))
        if isinstance(error, AzureError):  # a transport failure: its own words suffice
            return DeployError(f"{env_name}: {doing} failed: {error_summary(error)}")
        return DeployError(
            f"{env_name}: {doing} failed: {type(error).__name__}: {redact(str(error))}"
        )


def _arm(env: Environment) -> ArmDeploy:
    """The environment's ARM settings; any other kind is a wiring mistake."""
    if not isinstance(env.classical, ArmDeploy):
        raise DeployError(f"{env.environment}: classical.kind is {env.classical.kind}, not arm")
    return env.classical


def _belongs(deployment: Mapping[str, Any], env_name: str, app: str) -> bool:
    """True for a deployment qrelease made for this environment and app."""
    tags = _tags(deployment)
    return tags.get(TAG_ENV) == env_name and tags.get(TAG_APP) == app


def _version_order(version: str) -> tuple[int, Any]:
    """Sort key: semantic versions in order, anything else after them."""
    try:
        return (0, version_key(version))
    except ValueError:
        return (1, version)


def _loud(changes: list[str]) -> list[str]:
    """The changes that change something (no NoChange, no Ignore)."""
    return [change for change in changes if not change.startswith(QUIET_CHANGES)]


def _body(
    template: Mapping[str, Any], parameters: Mapping[str, Any], tags: Mapping[str, str]
) -> dict[str, Any]:
    """The deployment request body in Incremental mode."""
    properties = {"mode": MODE, "template": dict(template), "parameters": dict(parameters)}
    return {"properties": properties, "tags": dict(tags)}


def _placeholder_lock(env: Environment, manifest: ReleaseManifest) -> ReleaseLock:
    """A lock for what-if before the program is compiled: QIR-derived fields left empty."""
    target = manifest.quantum.target
    return ReleaseLock(
        app=manifest.app,
        env=env.environment,
        version=manifest.version,
        revision="",
        target_id=target.id,
        profile=str(target.profile),
        entry=manifest.quantum.start,
        program=manifest.quantum.program,
        qir_sha256="",
        deployed_at="",
    )


def ensure_quantum_infrastructure(deployer: ArmDeployer, env: Environment) -> InfrastructureResult:
    """Deploy the quantum environment's template only when it changed (see the method)."""
    return deployer.ensure_quantum_infrastructure(env)
