"""Loopback fakes of the Azure REST services that the real Azure SDKs call, for tests only.

The Azure backends are tested by driving the real SDK clients (azure-quantum,
azure-mgmt-resource, azure-mgmt-resource-deployments, and azure-storage-blob under
azure-quantum) against these servers on 127.0.0.1. Each fake implements the routes, status
codes, headers and bodies that the SDKs parse; nothing of an SDK is patched.

- `ArmFake`: Azure Resource Manager. Resource groups (PUT/GET/HEAD
  `/subscriptions/{s}/resourcegroups/{rg}`) and deployments in a resource group: validate
  (POST `.../deployments/{name}/validate`, 200 or 400 InvalidTemplate), what-if (POST
  `.../whatIf` -> 202 + Location, polled to 200 with the changes), create-or-update (PUT ->
  201 + Azure-AsyncOperation, polled through Accepted/Running to Succeeded or Failed with an
  ARM error code and message), get (GET), list (GET `.../deployments/?$filter=...`) and
  delete (DELETE -> 202 + Location, polled to 204); and Azure Quantum workspaces (GET
  `.../providers/Microsoft.Quantum/workspaces/{name}`), where azure-quantum looks up a
  workspace's data-plane endpoint.
  Template expressions are evaluated only for `[parameters('name')]`; other expressions are
  kept as text, which is enough to compare runs.
- `QuantumFake`: the Azure Quantum data plane (`providerStatus`, `storage/sasUri`, `jobs`
  listed by creation date with skip/top paging and `nextLink`, `jobs/{id}` PUT/GET,
  `jobs/{id}:cancel`) plus the Azurite-style blob routes
  (`/devstoreaccount1/{container}/{blob}` PUT/GET/HEAD) that job input and output go through.
  A job follows a scripted lifecycle, one status per GET: Waiting -> ... -> a final status.
- `HealthFake`: an app's `/healthz`, for the ARM deployer's health probe.

Both fakes check credentials (ARM: `Authorization: Bearer <token>`; Quantum: the
`x-ms-quantum-api-key` header or a bearer token; blobs: the SAS `sig`), record every request,
and take injected faults: a status (429 with Retry-After, 500s, 401) or a delay (a read
timeout) for the next N requests matching a method and path pattern.

`LoopbackServer` serves one fake over HTTP or, given a certificate from `self_signed_cert`,
HTTPS: the ARM SDK sends bearer tokens only over TLS, so ARM tests use HTTPS with the test
certificate passed to the SDK as `connection_verify`. `private_ca` makes a CA and a server
certificate it signed, for clients that must trust a company's private CA bundle.
ARM replies carry an `x-ms-request-id`, as ARM's do.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from azure.core.credentials import AccessToken

JSON = dict[str, Any]
STORAGE_ACCOUNT = "devstoreaccount1"
SAS_SIGNATURE = "fakesig"
TEST_TOKEN = "test-token"
ARM_TOKEN = "arm-token"
QUANTUM_TOKEN = "quantum-token"
QUANTUM_API_KEY = "test-api-key"
_EPOCH = dt.datetime(2025, 11, 24, 12, 0, tzinfo=dt.UTC)
EPOCH = _EPOCH
"""Where the fakes' clocks start: every creation and change time is a second after the last."""
_HTTP_DATE = "%a, %d %b %Y %H:%M:%S GMT"
_EXPRESSION = re.compile(r"^\[parameters\('([^']+)'\)\]$")


# -- requests, replies, faults ----------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request as the fake saw it (header names lower-cased)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON (None when empty)."""
        return json.loads(self.body) if self.body else None


@dataclass
class Reply:
    """A response to send: status, headers and a body (JSON-encoded unless bytes)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        """The body as bytes, JSON-encoded unless it already is bytes."""
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


@dataclass
class Fault:
    """Replace (status) or slow down (delay) the next `times` requests matching a route."""

    method: str
    pattern: re.Pattern[str]
    times: int
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    delay: float = 0.0

    def matches(self, request: Request) -> bool:
        """True when this fault applies to the request and has uses left."""
        wanted = self.method in ("*", request.method)
        return self.times > 0 and wanted and bool(self.pattern.search(request.path))


def error_body(code: str, message: str, **extra: Any) -> JSON:
    """The ARM / Azure REST error envelope."""
    return {"error": {"code": code, "message": message, **extra}}


Handler = Callable[..., Reply]


class FakeService:
    """Routes, recorded requests and injected faults shared by the fakes."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.base_url = ""
        self._faults: list[Fault] = []
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._lock = threading.RLock()

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        """Serve `method` on paths fully matching `pattern` (case-insensitive) with `handler`."""
        self._routes.append((method, re.compile(pattern + r"/?$", re.IGNORECASE), handler))

    def inject(
        self,
        method: str,
        path_pattern: str,
        *,
        status: int | None = None,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
        delay: float = 0.0,
    ) -> None:
        """Fail or delay the next `times` requests whose path matches `path_pattern`."""
        pattern = re.compile(path_pattern, re.IGNORECASE)
        fault = Fault(method, pattern, times, status, dict(headers or {}), body, delay)
        with self._lock:
            self._faults.append(fault)

    def dispatch(self, request: Request) -> tuple[Reply, float]:
        """The reply to a request and how long to wait before sending it."""
        with self._lock:
            self.requests.append(request)
            fault = next((f for f in self._faults if f.matches(request)), None)
            if fault is not None:
                fault.times -= 1
        if fault is not None and fault.status is not None:
            return Reply(fault.status, fault.body, fault.headers), fault.delay
        delay = fault.delay if fault else 0.0
        return self._serve(request), delay

    def _serve(self, request: Request) -> Reply:
        denied = self.authorize(request)
        if denied is not None:
            return denied
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match and method == request.method:
                with self._lock:
                    return handler(request, **match.groupdict())
        text = f"no route for {request.method} {request.path}"
        return Reply(404, error_body("NotFound", text))

    def authorize(self, request: Request) -> Reply | None:
        """None when the request carries valid credentials, else the refusal to send."""
        return None

    def count(self, method: str, path_pattern: str) -> int:
        """How many requests of `method` matched `path_pattern`."""
        pattern = re.compile(path_pattern, re.IGNORECASE)
        return sum(1 for r in self.requests if r.method == method and pattern.search(r.path))


# -- the HTTP(S) server ---------------------------------------------------------------


class _RequestHandler(BaseHTTPRequestHandler):
    """Turns each HTTP request into a `Request` for the fake and writes its `Reply`."""

    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: nothing pooled outlives a test

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        headers = {key.lower(): value for key, value in self.headers.items()}
        request = Request(self.command, parts.path, query, headers, body)
        reply, delay = self.server.service.dispatch(request)
        if delay:
            time.sleep(delay)
        payload = reply.payload()
        self.send_response(reply.status)
        if reply.body is not None and not isinstance(reply.body, bytes):
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet; the fake records requests instead."""


class _Server(ThreadingHTTPServer):
    """A threaded loopback server that remembers unexpected handler errors."""

    daemon_threads = False
    block_on_close = True

    def __init__(self, service: FakeService, context: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.service = service
        self.errors: list[str] = []
        if context is not None:
            self.socket = context.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (a read timeout) is expected; anything else is a fake's bug."""
        import sys

        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError | ssl.SSLError | TimeoutError):
            self.errors.append(f"{type(error).__name__}: {error}")


class LoopbackServer:
    """Serves a fake on 127.0.0.1 in a thread, over TLS when given a certificate."""

    def __init__(self, service: FakeService, tls: TlsFiles | None = None) -> None:
        context = None
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert, tls.key)
        self._server = _Server(service, context)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        service.base_url = self.url
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        assert not self._server.errors, self._server.errors


@dataclass(frozen=True)
class TlsFiles:
    """A self-signed certificate for 127.0.0.1 and its key, as PEM files."""

    cert: Path
    key: Path


def self_signed_cert(directory: Path) -> TlsFiles:
    """Write a self-signed CA certificate for 127.0.0.1/localhost; clients trust it by path."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qrelease loopback")])
    now = dt.datetime.now(dt.UTC)
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = TlsFiles(directory / "loopback-cert.pem", directory / "loopback-key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@dataclass(frozen=True)
class PrivateCa:
    """A private certificate authority and a server certificate it signed for 127.0.0.1.

    `bundle` is what a client is given to trust (the CA alone, as a company's CA bundle
    is); `server` is what the loopback server presents. Nothing here is self-signed, so
    a client trusts the server only through the bundle.
    """

    bundle: Path
    server: TlsFiles


def private_ca(directory: Path) -> PrivateCa:
    """Write a private CA certificate and a 127.0.0.1/localhost server certificate it signs."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qrelease test private CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    bundle = directory / "private-ca.pem"
    bundle.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server = TlsFiles(directory / "server-cert.pem", directory / "server-key.pem")
    server.cert.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    server.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return PrivateCa(bundle, server)


class StaticToken:
    """A TokenCredential that hands out one fixed token (or raises, to act as a broken login)."""

    def __init__(self, token: str = TEST_TOKEN, error: Exception | None = None) -> None:
        self.token = token
        self.error = error
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """The fixed token, valid for an hour."""
        self.scopes.append(scopes)
        if self.error is not None:
            raise self.error
        return AccessToken(self.token, int(time.time()) + 3600)


def _iso(moment: dt.datetime) -> str:
    """An aware datetime as the service writes it (UTC, `Z`)."""
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _timestamp(seq: int) -> str:
    """A deterministic, strictly increasing ISO 8601 instant for the n-th event."""
    return (_EPOCH + dt.timedelta(seconds=seq)).isoformat().replace("+00:00", "Z")


# -- Azure Resource Manager -------------------------------------------------------------

_SUB = r"/subscriptions/(?P<sub>[^/]+)"
_RG = _SUB + r"/resourcegroups/(?P<rg>[^/]+)"
_DEPLOYMENTS = _RG + r"/providers/Microsoft\.Resources/deployments"
_DEPLOYMENT = _DEPLOYMENTS + r"/(?P<name>[^/]+)"


@dataclass
class DeploymentScript:
    """How the next deployment PUT proceeds: the statuses its async operation reports."""

    statuses: tuple[str, ...] = ("Accepted", "Running", "Succeeded")
    error: JSON | None = None


@dataclass
class _Operation:
    """An ARM async operation: a deployment in progress, one status per poll."""

    rg: str
    name: str
    statuses: list[str]
    error: JSON | None


class ArmFake(FakeService):
    """Resource groups and resource-group deployments of one ARM endpoint."""

    def __init__(self, token: str = ARM_TOKEN) -> None:
        super().__init__()
        self.token = token
        self.reject_auth = False
        self.resource_groups: dict[str, JSON] = {}
        self.deployments: dict[tuple[str, str], JSON] = {}
        self.resources: dict[str, JSON] = {}
        self.output_values: dict[str, Any] = {}
        self.scripts: list[DeploymentScript] = []
        self.workspaces: dict[tuple[str, str], JSON] = {}
        self._operations: dict[str, _Operation] = {}
        self._what_ifs: dict[str, list[JSON]] = {}
        self._polled: set[str] = set()
        self._deletes: set[str] = set()
        self._seq = 0
        self.route("PUT", _RG, self._put_group)
        self.route("GET", _RG, self._get_group)
        self.route("HEAD", _RG, self._head_group)
        self.route("GET", _DEPLOYMENTS, self._list_deployments)
        self.route("POST", _DEPLOYMENT + "/validate", self._validate)
        self.route("POST", _DEPLOYMENT + "/whatIf", self._what_if)
        self.route("PUT", _DEPLOYMENT, self._put_deployment)
        self.route("GET", _DEPLOYMENT, self._get_deployment)
        self.route("DELETE", _DEPLOYMENT, self._delete_deployment)
        self.route("GET", _DEPLOYMENT + r"/operationStatuses/(?P<op>[^/]+)", self._op_status)
        self.route("GET", _SUB + r"/operationresults/(?P<op>[^/]+)", self._what_if_result)
        self.route("GET", _RG + r"/providers/Microsoft\.Quantum/workspaces/(?P<ws>[^/]+)",
                   self._get_workspace)  # fmt: skip

    # -- test controls

    def fail_next_deployment(self, code: str, message: str) -> None:
        """Make the next deployment end Failed with this inner ARM error."""
        error = {
            "code": "DeploymentFailed",
            "message": "At least one resource deployment operation failed. "
            "Please list deployment operations for details.",
            "details": [{"code": code, "message": message}],
        }
        self.scripts.append(DeploymentScript(("Accepted", "Running", "Failed"), error))

    def add_workspace(self, sub: str, rg: str, name: str, location: str, endpoint: str) -> None:
        """An Azure Quantum workspace resource whose data plane is at `endpoint`."""
        self.workspaces[(rg.lower(), name)] = {
            "id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Quantum"
            f"/workspaces/{name}",
            "name": name,
            "type": "Microsoft.Quantum/Workspaces",
            "location": location,
            "properties": {"provisioningState": "Succeeded", "endpointUri": endpoint},
        }

    def _get_workspace(self, request: Request, sub: str, rg: str, ws: str) -> Reply:
        found = self.workspaces.get((rg.lower(), ws))
        if found is None:
            text = f"The Resource 'Microsoft.Quantum/Workspaces/{ws}' was not found."
            return Reply(404, error_body("ResourceNotFound", text))
        return Reply(200, found)

    def deployment(self, rg: str, name: str) -> JSON:
        """The stored deployment (as GET returns it)."""
        return self.deployments[(rg.lower(), name)]

    def puts(self) -> int:
        """How many deployment create-or-update requests were received."""
        return self.count("PUT", r"/deployments/[^/]+$")

    def dispatch(self, request: Request) -> tuple[Reply, float]:
        """Every ARM reply carries a request id, as ARM's own do (`x-ms-request-id`)."""
        reply, delay = super().dispatch(request)
        reply.headers = {"x-ms-request-id": str(uuid.uuid4()), **reply.headers}
        return reply, delay

    def authorize(self, request: Request) -> Reply | None:
        """ARM wants the bearer token on every request."""
        expected = f"Bearer {self.token}"
        if not self.reject_auth and request.headers.get("authorization") == expected:
            return None
        challenge = 'Bearer authorization_uri="https://login.example/", error="invalid_token"'
        body = error_body("InvalidAuthenticationToken", "The access token is invalid.")
        return Reply(401, body, {"WWW-Authenticate": challenge})

    # -- resource groups

    def _group_body(self, sub: str, rg: str, location: str, tags: JSON) -> JSON:
        return {
            "id": f"/subscriptions/{sub}/resourceGroups/{rg}",
            "name": rg,
            "type": "Microsoft.Resources/resourceGroups",
            "location": location,
            "tags": tags,
            "properties": {"provisioningState": "Succeeded"},
        }

    def _put_group(self, request: Request, sub: str, rg: str) -> Reply:
        body = request.json() or {}
        if not body.get("location"):
            return Reply(400, error_body("LocationRequired", "The location property is required"))
        existed = rg.lower() in self.resource_groups
        group = self._group_body(sub, rg, body["location"], body.get("tags") or {})
        self.resource_groups[rg.lower()] = group
        return Reply(200 if existed else 201, group)

    def _get_group(self, request: Request, sub: str, rg: str) -> Reply:
        group = self.resource_groups.get(rg.lower())
        if group is None:
            return self._group_missing(rg)
        return Reply(200, group)

    def _head_group(self, request: Request, sub: str, rg: str) -> Reply:
        return Reply(204 if rg.lower() in self.resource_groups else 404)

    def _group_missing(self, rg: str) -> Reply:
        text = f"Resource group '{rg}' could not be found."
        return Reply(404, error_body("ResourceGroupNotFound", text))

    # -- deployments

    def _list_deployments(self, request: Request, sub: str, rg: str) -> Reply:
        wanted = re.fullmatch(r"provisioningState eq '(\w+)'", request.query.get("$filter", ""))
        found = [
            body
            for (group, _), body in self.deployments.items()
            if group == rg.lower()
            and (wanted is None or body["properties"]["provisioningState"] == wanted.group(1))
        ]
        return Reply(200, {"value": found})

    def _validate(self, request: Request, sub: str, rg: str, name: str) -> Reply:
        if rg.lower() not in self.resource_groups:
            return self._group_missing(rg)
        body = request.json() or {}
        problem = template_problem(body)
        if problem:
            return Reply(400, error_body("InvalidTemplate", problem))
        properties = body["properties"]
        resources = [{"id": rid} for rid in self._evaluated(sub, rg, properties)]
        result = {
            "id": _deployment_path(sub, rg, name),
            "name": name,
            "properties": {
                "provisioningState": "Succeeded",
                "mode": properties["mode"],
                "parameters": _typed(parameter_values(properties)),
                "validatedResources": resources,
            },
        }
        return Reply(200, result)

    def _what_if(self, request: Request, sub: str, rg: str, name: str) -> Reply:
        if rg.lower() not in self.resource_groups:
            return self._group_missing(rg)
        body = request.json() or {}
        problem = template_problem(body)
        if problem:
            return Reply(400, error_body("InvalidTemplate", problem))
        wanted = self._evaluated(sub, rg, body["properties"])
        operation = uuid.uuid4().hex
        self._what_ifs[operation] = self._changes(sub, rg, wanted)
        location = f"{self.base_url}/subscriptions/{sub}/operationresults/{operation}"
        location += "?api-version=" + request.query.get("api-version", "")
        return Reply(202, None, {"Location": location, "Retry-After": "0"})

    def _what_if_result(self, request: Request, sub: str, op: str) -> Reply:
        if op in self._deletes:
            return Reply(204)
        changes = self._what_ifs.get(op)
        if changes is None:
            return Reply(404, error_body("OperationNotFound", f"no operation {op}"))
        if op not in self._polled:
            self._polled.add(op)
            location = f"{self.base_url}{request.path}?api-version={request.query['api-version']}"
            return Reply(202, None, {"Location": location, "Retry-After": "0"})
        return Reply(200, {"status": "Succeeded", "properties": {"changes": changes}})

    def _delete_deployment(self, request: Request, sub: str, rg: str, name: str) -> Reply:
        if self.deployments.pop((rg.lower(), name), None) is None:
            return Reply(204)
        operation = uuid.uuid4().hex
        self._deletes.add(operation)
        location = f"{self.base_url}/subscriptions/{sub}/operationresults/{operation}"
        location += "?api-version=" + request.query.get("api-version", "")
        return Reply(202, None, {"Location": location, "Retry-After": "0"})

    def _changes(self, sub: str, rg: str, wanted: dict[str, JSON]) -> list[JSON]:
        prefix = f"/subscriptions/{sub}/resourceGroups/{rg}/".lower()
        changes = [_change(rid, self.resources.get(rid), after) for rid, after in wanted.items()]
        others = [
            {"resourceId": rid, "changeType": "Ignore"}
            for rid in self.resources
            if rid.lower().startswith(prefix) and rid not in wanted
        ]
        return changes + others

    def _put_deployment(self, request: Request, sub: str, rg: str, name: str) -> Reply:
        if rg.lower() not in self.resource_groups:
            return self._group_missing(rg)
        body = request.json() or {}
        problem = template_problem(body)
        if problem:
            return Reply(400, error_body("InvalidTemplate", problem))
        script = self.scripts.pop(0) if self.scripts else DeploymentScript()
        operation = uuid.uuid4().hex
        self._operations[operation] = _Operation(rg, name, list(script.statuses), script.error)
        record = self._deployment_body(sub, rg, name, body, script.statuses[0])
        self.deployments[(rg.lower(), name)] = record
        status_url = f"{self.base_url}{_deployment_path(sub, rg, name)}/operationStatuses/"
        status_url += f"{operation}?api-version=" + request.query.get("api-version", "")
        return Reply(201, record, {"Azure-AsyncOperation": status_url, "Retry-After": "0"})

    def _deployment_body(self, sub: str, rg: str, name: str, body: JSON, state: str) -> JSON:
        properties = body["properties"]
        return {
            "id": _deployment_path(sub, rg, name),
            "name": name,
            "type": "Microsoft.Resources/deployments",
            "tags": body.get("tags") or {},
            "properties": {
                "provisioningState": state,
                "mode": properties["mode"],
                "parameters": _typed(parameter_values(properties)),
                "timestamp": self._tick(),
                "correlationId": uuid.uuid4().hex,
                "template": properties["template"],
                "_sub": sub,
            },
        }

    def _op_status(self, request: Request, sub: str, rg: str, name: str, op: str) -> Reply:
        operation = self._operations.get(op)
        if operation is None:
            return Reply(404, error_body("OperationNotFound", f"no operation {op}"))
        if len(operation.statuses) > 1:
            operation.statuses.pop(0)
        status = operation.statuses[0]
        record = self.deployments[(operation.rg.lower(), operation.name)]
        record["properties"]["provisioningState"] = status
        body: JSON = {"status": status}
        if status == "Succeeded":
            self._finish(record)
        elif status == "Failed" and operation.error:
            record["properties"]["error"] = operation.error
            record["properties"]["timestamp"] = self._tick()
            body["error"] = operation.error
        return Reply(200, body, {"Retry-After": "0"} if status not in _TERMINAL else {})

    def _finish(self, record: JSON) -> None:
        properties = record["properties"]
        if "outputs" in properties:
            return
        rg = record["id"].split("/")[4]
        parameters = {k: v["value"] for k, v in properties["parameters"].items()}
        template = properties["template"]
        wanted = self._evaluated(properties["_sub"], rg, properties)
        self.resources.update(wanted)
        outputs = template.get("outputs") or {}
        properties["outputs"] = {
            key: {
                "type": spec.get("type", "string"),
                "value": self.output_values.get(key, evaluate(spec.get("value"), parameters)),
            }
            for key, spec in outputs.items()
        }
        properties["outputResources"] = [{"id": rid} for rid in wanted]
        properties["timestamp"] = self._tick()

    def _get_deployment(self, request: Request, sub: str, rg: str, name: str) -> Reply:
        record = self.deployments.get((rg.lower(), name))
        if record is None:
            text = f"Deployment '{name}' could not be found."
            return Reply(404, error_body("DeploymentNotFound", text))
        shown = dict(record)
        shown["properties"] = {
            k: v for k, v in record["properties"].items() if k not in ("template", "_sub")
        }
        return Reply(200, shown)

    # -- helpers

    def _evaluated(self, sub: str, rg: str, properties: JSON) -> dict[str, JSON]:
        """The template's resources with parameters substituted, by resource id."""
        parameters = parameter_values(properties)
        found: dict[str, JSON] = {}
        for resource in properties["template"].get("resources", []):
            body = evaluate(resource, parameters)
            rid = (
                f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{body['type']}/{body['name']}"
            )
            found[rid] = {k: v for k, v in body.items() if k not in ("apiVersion", "dependsOn")}
        return found

    def _tick(self) -> str:
        self._seq += 1
        return _timestamp(self._seq)


_TERMINAL = ("Succeeded", "Failed", "Canceled")


def _deployment_path(sub: str, rg: str, name: str) -> str:
    return (
        f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Resources/deployments/{name}"
    )


def template_problem(body: JSON) -> str | None:
    """Why ARM would refuse this deployment body, or None (the checks ARM makes first)."""
    properties = body.get("properties") or {}
    template = properties.get("template")
    if properties.get("mode") not in ("Incremental", "Complete"):
        return f"The deployment mode '{properties.get('mode')}' is not valid."
    if not isinstance(template, dict) or not isinstance(template.get("resources"), list):
        return "The template must be a JSON object with a 'resources' array."
    declared = template.get("parameters") or {}
    given = properties.get("parameters") or {}
    unknown = sorted(set(given) - set(declared))
    if unknown:
        return (
            f"The template parameters '{', '.join(unknown)}' in the parameters file are not"
            " valid; they are not present in the original template and can therefore not be"
            " provided at deployment time."
        )
    missing = sorted(k for k, v in declared.items() if "defaultValue" not in v and k not in given)
    if missing:
        return f"The value for the template parameter '{missing[0]}' is not provided."
    return None


def parameter_values(properties: JSON) -> JSON:
    """Declared defaults overlaid with the given `{"name": {"value": ...}}` parameters."""
    declared = properties["template"].get("parameters") or {}
    values = {k: v["defaultValue"] for k, v in declared.items() if "defaultValue" in v}
    given = properties.get("parameters") or {}
    values.update({k: v.get("value") for k, v in given.items()})
    return values


def evaluate(value: Any, parameters: Mapping[str, Any]) -> Any:
    """Substitute `[parameters('x')]` expressions; other values (and expressions) are kept."""
    if isinstance(value, dict):
        return {key: evaluate(item, parameters) for key, item in value.items()}
    if isinstance(value, list):
        return [evaluate(item, parameters) for item in value]
    if isinstance(value, str):
        match = _EXPRESSION.match(value)
        if match and match.group(1) in parameters:
            return parameters[match.group(1)]
    return value


def _typed(values: JSON) -> JSON:
    """Parameter values in the shape ARM returns them: `{"name": {"type", "value"}}`."""
    kinds = {str: "String", bool: "Bool", int: "Int", dict: "Object", list: "Array"}
    return {k: {"type": kinds.get(type(v), "String"), "value": v} for k, v in values.items()}


def _change(resource_id: str, before: JSON | None, after: JSON) -> JSON:
    """One what-if change: Create, NoChange or Modify with the differing property paths."""
    if before is None:
        return {"resourceId": resource_id, "changeType": "Create", "after": after}
    delta = [
        {"path": path, "propertyChangeType": "Modify", "before": old, "after": new}
        for path, old, new in _differences(before, after)
    ]
    kind = "Modify" if delta else "NoChange"
    change = {"resourceId": resource_id, "changeType": kind, "before": before, "after": after}
    return change | ({"delta": delta} if delta else {})


def _differences(before: Any, after: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """Leaf paths whose values differ between two JSON values."""
    if isinstance(before, dict) and isinstance(after, dict):
        for key in sorted(set(before) | set(after)):
            child = f"{path}.{key}" if path else key
            yield from _differences(before.get(key), after.get(key), child)
    elif before != after:
        yield path, before, after


# -- Azure Quantum ----------------------------------------------------------------------

_WORKSPACE = (
    _SUB + r"/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Quantum/workspaces/(?P<ws>[^/]+)"
)
_JOB = _WORKSPACE + r"/jobs/(?P<job>[^/:]+)"
_BLOB = rf"/{STORAGE_ACCOUNT}/(?P<container>[^/?]+)/(?P<blob>[^?]+)"


@dataclass
class JobScript:
    """How a submitted job proceeds: the statuses it reports, one per GET, and its outcome.

    `histogram` maps the service's display keys (e.g. "[0, 0]") to shot counts; by default
    the job's requested shots split evenly between "[0, 0]" and "[1, 1]" (a Bell pair).
    """

    statuses: tuple[str, ...] = ("Waiting", "Executing", "Succeeded")
    histogram: dict[str, int] | None = None
    error: JSON | None = None
    cost: float = 0.0


class QuantumFake(FakeService):
    """One Azure Quantum workspace: provider status, jobs and its linked blob storage."""

    def __init__(self, api_key: str = QUANTUM_API_KEY, token: str = QUANTUM_TOKEN) -> None:
        super().__init__()
        self.api_key = api_key
        self.token = token
        self.reject_auth = False
        self.providers: dict[str, JSON] = {}
        self.jobs: dict[str, JSON] = {}
        self.blobs: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.containers: set[str] = set()
        self.script = JobScript()
        self._progress: dict[str, list[str]] = {}
        self._scripts: dict[str, JobScript] = {}
        self._seq = 0
        self.route("GET", _WORKSPACE + "/providerStatus", self._provider_status)
        self.route("POST", _WORKSPACE + "/storage/sasUri", self._sas_uri)
        self.route("GET", _WORKSPACE + "/jobs", self._list_jobs)
        self.route("PUT", _JOB, self._put_job)
        self.route("GET", _JOB, self._get_job)
        self.route("POST", _JOB + ":cancel", self._cancel_job)
        self.route("PUT", _BLOB, self._put_blob)
        self.route("GET", _BLOB, self._get_blob)
        self.route("HEAD", _BLOB, self._head_blob)

    # -- test controls

    def set_target(
        self,
        target_id: str,
        *,
        availability: str = "Available",
        queue_seconds: int = 0,
        profile: str | None = None,
        qubits: int | None = None,
        provider_availability: str = "Available",
    ) -> None:
        """Offer a target with the given status (its provider is the id's first segment)."""
        provider_id = target_id.split(".", 1)[0]
        provider = self.providers.setdefault(
            provider_id, {"id": provider_id, "currentAvailability": "Available", "targets": []}
        )
        provider["currentAvailability"] = provider_availability
        provider["targets"] = [t for t in provider["targets"] if t["id"] != target_id]
        target: JSON = {
            "id": target_id,
            "currentAvailability": availability,
            "averageQueueTime": queue_seconds,
            "statusPage": f"https://status.example/{provider_id}",
        }
        if profile is not None:
            target["targetProfile"] = profile
        if qubits is not None:
            target["numQubits"] = qubits
        provider["targets"].append(target)

    def add_job(
        self,
        job_id: str,
        *,
        created: dt.datetime,
        status: str = "Succeeded",
        tags: list[str] | None = None,
        target: str = "ionq.simulator",
        began: dt.datetime | None = None,
        ended: dt.datetime | None = None,
        cost: float | None = None,
        currency: str = "USD",
    ) -> JSON:
        """Plant a job an application submitted (no input blob: only its record is read)."""
        record: JSON = {
            "id": job_id,
            "itemType": "Job",
            "name": f"app job {job_id}",
            "providerId": target.split(".", 1)[0],
            "target": target,
            "status": status,
            "creationTime": _iso(created),
            "jobType": "QuantumComputing",
            "containerUri": f"{self.base_url}/{STORAGE_ACCOUNT}/job-{job_id}",
            "inputDataFormat": "qir.v1",
            "tags": list(tags or []),
        }
        if began is not None:
            record["beginExecutionTime"] = _iso(began)
        if ended is not None:
            record["endExecutionTime" if status != "Cancelled" else "cancellationTime"] = _iso(
                ended
            )
        if cost is not None:
            record["costEstimate"] = {"currencyCode": currency, "estimatedTotal": cost}
        with self._lock:
            self.jobs[job_id] = record
            self._progress[job_id] = []
        return record

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Change a planted job's record (its status, times, cost) as the service would."""
        with self._lock:
            record = self.jobs[job_id]
            for key, value in fields.items():
                record[key] = _iso(value) if isinstance(value, dt.datetime) else value

    def submitted(self) -> list[JSON]:
        """Every job created so far, in submission order."""
        return list(self.jobs.values())

    def input_of(self, job: JSON) -> bytes:
        """The uploaded input blob of a job."""
        container, blob = _blob_location(job["inputDataUri"])
        return self.blobs[(container, blob)][0]

    def authorize(self, request: Request) -> Reply | None:
        """The workspace wants its API key or a bearer token; blobs want the SAS signature."""
        if request.path.startswith(f"/{STORAGE_ACCOUNT}/"):
            if request.query.get("sig") == SAS_SIGNATURE:
                return None
            return Reply(403, b"", {"x-ms-error-code": "AuthenticationFailed"})
        key_ok = request.headers.get("x-ms-quantum-api-key") == self.api_key
        token_ok = request.headers.get("authorization") == f"Bearer {self.token}"
        if not self.reject_auth and (key_ok or token_ok):
            return None
        return Reply(401, error_body("Unauthorized", "Access denied: invalid credentials."))

    # -- workspace routes

    def _provider_status(self, request: Request, sub: str, rg: str, ws: str) -> Reply:
        return Reply(200, {"value": list(self.providers.values()), "nextLink": None})

    def _sas_uri(self, request: Request, sub: str, rg: str, ws: str) -> Reply:
        body = request.json() or {}
        container = body.get("containerName")
        if not container:
            return Reply(400, error_body("InvalidRequest", "containerName is required"))
        self.containers.add(container)
        path = f"{self.base_url}/{STORAGE_ACCOUNT}/{container}"
        blob = body.get("blobName")
        if blob:
            path += f"/{blob}"
        expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        kind = "b" if blob else "c"
        query = f"sv=2023-11-03&se={expiry}&sr={kind}&sp=racw&sig={SAS_SIGNATURE}"
        return Reply(200, {"sasUri": f"{path}?{query}"})

    def _put_job(self, request: Request, sub: str, rg: str, ws: str, job: str) -> Reply:
        body = request.json() or {}
        problem = self._job_problem(body)
        if problem:
            return Reply(400, error_body("InvalidJobDefinition", problem))
        record = {
            **body,
            "id": job,
            "itemType": "Job",
            "status": "Waiting",
            "creationTime": self._tick(),
            "jobType": "QuantumComputing",
        }
        self.jobs[job] = record
        self._scripts[job] = self.script
        self._progress[job] = list(self.script.statuses)
        return Reply(200, record)

    def _list_jobs(self, request: Request, sub: str, rg: str, ws: str) -> Reply:
        """The job list: `filter` (only `CreationTime ge <date>`), `orderby`, `skip`, `top`."""
        query = request.query
        since = ""
        if query.get("filter"):
            match = re.fullmatch(r"CreationTime ge (\d{4}-\d{2}-\d{2})", query["filter"])
            if match is None:
                text = f"unsupported filter {query['filter']!r}"
                return Reply(400, error_body("InvalidFilter", text))
            since = match.group(1)
        if query.get("orderby") not in (None, "CreationTime asc"):
            return Reply(400, error_body("InvalidOrderBy", f"unsupported {query['orderby']!r}"))
        listed = sorted(
            (job for job in self.jobs.values() if job["creationTime"][:10] >= since),
            key=lambda job: job["creationTime"],
        )
        skip, top = int(query.get("skip") or 0), int(query.get("top") or 100)
        page = listed[skip : skip + top]
        next_link = None
        if skip + top < len(listed):
            rest = {k: v for k, v in query.items() if k not in ("skip", "api-version")}
            rest["skip"] = str(skip + top)
            next_link = f"{self.base_url}{request.path}?{urlencode(rest)}"
        return Reply(200, {"value": page, "nextLink": next_link})

    def _job_problem(self, body: JSON) -> str | None:
        target = body.get("target")
        offered = {t["id"] for p in self.providers.values() for t in p["targets"]}
        if target not in offered:
            return f"Target '{target}' is not available in this workspace."
        if body.get("inputDataUri") is None:
            return "inputDataUri is required."
        if _blob_location(body["inputDataUri"]) not in self.blobs:
            return "The job's input data blob does not exist."
        return None

    def _get_job(self, request: Request, sub: str, rg: str, ws: str, job: str) -> Reply:
        record = self.jobs.get(job)
        if record is None:
            return Reply(404, error_body("JobNotFound", f"Job '{job}' was not found."))
        statuses = self._progress[job]
        if record["status"] not in ("Cancelled",) and statuses:
            self._advance(record, statuses.pop(0))
        return Reply(200, record)

    def _advance(self, record: JSON, status: str) -> None:
        """Move a job to its next scripted status, writing results when it ends."""
        if status == "Executing" and "beginExecutionTime" not in record:
            record["beginExecutionTime"] = self._tick()
        record["status"] = status
        if status not in ("Succeeded", "Failed"):
            return
        script = self._scripts[record["id"]]
        record["endExecutionTime"] = self._tick()
        histogram = script.histogram or _bell_pairs(record["inputParams"].get("shots", 500))
        shots = sum(histogram.values())
        record["costEstimate"] = {
            "currencyCode": "USD",
            "events": [
                {
                    "dimensionId": "shots",
                    "dimensionName": "Shots",
                    "measureUnit": "shot",
                    "amountBilled": float(shots),
                    "amountConsumed": float(shots),
                    "unitPrice": script.cost / shots if shots else 0.0,
                }
            ],
            "estimatedTotal": script.cost,
        }
        record["usage"] = {"shots": shots}
        if status == "Failed":
            record["errorData"] = script.error or {"code": "JobFailed", "message": "failed"}
            return
        self._write_output(record, histogram)

    def _write_output(self, record: JSON, histogram: Mapping[str, int]) -> None:
        container, _ = _blob_location(record["inputDataUri"])
        rows = [
            {"Outcome": json.loads(key), "Display": key, "Count": count}
            for key, count in histogram.items()
        ]
        shots = [row["Outcome"] for row in rows for _ in range(row["Count"])]
        output = {
            "DataFormat": "microsoft.quantum-results.v2",
            "Results": [{"Histogram": rows, "Shots": shots}],
        }
        self.blobs[(container, "rawOutputData")] = (json.dumps(output).encode(), "application/json")
        record["outputDataUri"] = f"{self.base_url}/{STORAGE_ACCOUNT}/{container}/rawOutputData"

    def _cancel_job(self, request: Request, sub: str, rg: str, ws: str, job: str) -> Reply:
        record = self.jobs.get(job)
        if record is None:
            return Reply(404, error_body("JobNotFound", f"Job '{job}' was not found."))
        if record["status"] not in ("Succeeded", "Failed", "Cancelled"):
            record["status"] = "Cancelled"
            record["cancellationTime"] = self._tick()
        return Reply(200, record)

    # -- blob routes

    def _put_blob(self, request: Request, container: str, blob: str) -> Reply:
        if container not in self.containers:
            return Reply(404, b"", {"x-ms-error-code": "ContainerNotFound"})
        content_type = request.headers.get("x-ms-blob-content-type", "")
        self.blobs[(container, blob)] = (request.body, content_type)
        return Reply(201, None, self._blob_headers(request.body))

    def _get_blob(self, request: Request, container: str, blob: str) -> Reply:
        found = self.blobs.get((container, blob))
        if found is None:
            return Reply(404, b"", {"x-ms-error-code": "BlobNotFound"})
        data, content_type = found
        headers = self._blob_headers(data) | {"Content-Type": content_type or "application/json"}
        if "x-ms-range" not in request.headers:
            return Reply(200, data, headers)
        headers["Content-Range"] = f"bytes 0-{max(len(data) - 1, 0)}/{len(data)}"
        return Reply(206, data, headers)

    def _head_blob(self, request: Request, container: str, blob: str) -> Reply:
        found = self.blobs.get((container, blob))
        if found is None:
            return Reply(404, None, {"x-ms-error-code": "BlobNotFound"})
        return Reply(200, None, self._blob_headers(found[0]))

    def _blob_headers(self, data: bytes) -> dict[str, str]:
        return {
            "ETag": f'"0x{abs(hash(data)):X}"',
            "Last-Modified": _EPOCH.strftime(_HTTP_DATE),
            "x-ms-blob-type": "BlockBlob",
            "x-ms-request-server-encrypted": "true",
            "x-ms-version": "2023-11-03",
        }

    def _tick(self) -> str:
        self._seq += 1
        return _timestamp(self._seq)


class HealthFake(FakeService):
    """An app's health endpoint: GET /healthz answers `status`."""

    def __init__(self, status: int = 200) -> None:
        super().__init__()
        self.status = status
        self.route("GET", "/healthz", lambda request: Reply(self.status, {"ok": self.status < 400}))


def _bell_pairs(shots: int) -> dict[str, int]:
    """An even histogram of "[0, 0]" and "[1, 1]" over `shots` shots."""
    return {"[0, 0]": shots - shots // 2, "[1, 1]": shots // 2}


def _blob_location(uri: str) -> tuple[str, str]:
    """(container, blob) of a blob URI on the fake storage account."""
    parts = urlsplit(uri).path.strip("/").split("/", 2)
    return parts[1], parts[2]
