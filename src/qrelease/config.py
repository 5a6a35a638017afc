"""The controller's TOML configuration (`controller/controller.toml`) and its defaults.

Command-line flags override the file; the file overrides these defaults.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from qrelease.model.environment import check_package_source, is_state_dir_source
from qrelease.model.manifest import Frozen
from qrelease.model.types import Duration
from qrelease.model.vocabulary import NotificationKind
from qrelease.store import POSTGRES_SCHEMES, StoreError, check_location

if TYPE_CHECKING:
    from qrelease.quantum.sandbox import GateLimits

DEFAULT_CONFIG = Path("controller/controller.toml")
DEFAULT_STATE = Path(".qrelease")


class ConfigError(Exception):
    """The configuration file cannot be used; the message names the file and field."""


class SourceConfig(Frozen):
    """Where the GitOps repo is and how often to look at it."""

    url: str | None = None
    branch: str = "main"
    interval: Duration = timedelta(seconds=30)
    resync: Duration = timedelta(minutes=5)
    timeout: Duration = timedelta(seconds=60)
    max_backoff: Duration = timedelta(minutes=10)


class WebhookConfig(Frozen):
    """The webhook receiver; the secret itself comes from the named environment variable."""

    secret_env: str = "QRELEASE_WEBHOOK_SECRET"  # noqa: S105 the variable name, not a secret


class VerifyConfig(Frozen):
    """Signed-commit verification: apply only heads signed by one of these trusted keys."""

    trusted_keys: Path | None = None
    gpg_home: Path | None = None


class GatesConfig(Frozen):
    """Limits of one release's quantum gates, and how many sandboxed workers run them.

    `workers` defaults to the number of CPU cores: the gates of a whole plan run side by
    side on that many worker processes before anything is installed. With `queue`, gates
    are jobs in the store for `qrelease worker` processes (on any machine that reaches the
    store); a job no worker claims within `claim_after` runs here, as without a queue. A
    worker beats every `heartbeat` while it runs a job; one silent for six beats is taken
    for dead and its job is claimed again.
    """

    timeout: Duration = timedelta(minutes=10)
    memory_mib: int = Field(default=4096, ge=256)
    workers: int | None = Field(default=None, ge=1, le=64)
    queue: bool = False
    claim_after: Duration = timedelta(seconds=10)
    heartbeat: Duration = timedelta(seconds=5)

    @field_validator("claim_after")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must be 0s or more")
        return value

    @field_validator("heartbeat")
    @classmethod
    def _a_beat(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be more than 0s")
        return value

    @property
    def stale(self) -> timedelta:
        """How long a running job's worker may be silent before the job is taken again."""
        return self.heartbeat * 6

    def limits(self) -> GateLimits:
        """The sandbox's limits."""
        from qrelease.quantum.sandbox import GateLimits

        workers = self.workers or os.cpu_count() or 1
        return GateLimits(
            seconds=self.timeout.total_seconds(), memory_mib=self.memory_mib, workers=workers
        )


class HttpConfig(Frozen):
    """Limits of the HTTP server, so slow or lying clients cannot hold its connections."""

    header_timeout: Duration = timedelta(seconds=10)
    body_timeout: Duration = timedelta(seconds=30)
    keep_alive: Duration = timedelta(seconds=5)
    max_connections: int = Field(default=32, ge=1, le=1024)

    @field_validator("header_timeout", "body_timeout", "keep_alive")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        """Refuse a zero timeout, which would cut every client off at once."""
        if value <= timedelta(0):
            raise ValueError("must be more than 0s")
        return value


def _check_allowed_source(value: str) -> str:
    """Accept an absolute path or an http(s) URL (a relative source is always allowed)."""
    check_package_source(value)
    if is_state_dir_source(value):
        raise ValueError(f"{value!r} is relative; list absolute paths or http(s) URLs")
    return value


class PackageSourcesConfig(Frozen):
    """Package sources outside the state dir that environment files may name.

    Each entry of `allow` is a prefix: an absolute path (`/srv/wheels` admits
    `/srv/wheels/team-a`) or an http(s) URL (`https://pypi.org/simple` admits that index).
    """

    allow: tuple[Annotated[str, AfterValidator(_check_allowed_source)], ...] = ()


class StoreConfig(Frozen):
    """Where the controller's state lives: None means the SQLite file in the state dir.

    A URL: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
    ``postgresql://user@host:port/database``. Keep passwords out of it: libpq reads
    PGPASSWORD or ~/.pgpass.
    """

    url: str | None = None

    @field_validator("url")
    @classmethod
    def _known_form(cls, url: str | None) -> str | None:
        if url is None:
            return None
        try:
            return check_location(url)
        except StoreError as exc:
            raise ValueError(str(exc)) from None


class ReplicaConfig(Frozen):
    """This controller as one replica of several that share a PostgreSQL store.

    Replicas split the environments between them through leases (one owner each, renewed
    every `lease_renew`, taken over by another replica `lease_ttl` after its owner stops
    renewing). `id` names the replica (default: the state dir's controller id). `serves`
    lists the environments on the local venv deployer this replica may deploy: their
    releases live on this host's disk, so they never move to a replica that does not list
    them (default: every environment). ARM environments go to any replica.
    """

    id: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")
    serves: tuple[str, ...] | None = None
    lease_ttl: Duration = timedelta(seconds=15)
    lease_renew: Duration = timedelta(seconds=5)

    @model_validator(mode="after")
    def _renewed_in_time(self) -> ReplicaConfig:
        if self.lease_renew <= timedelta(0) or self.lease_renew * 2 > self.lease_ttl:
            raise ValueError("lease_renew must be positive and at most half of lease_ttl")
        return self


ChannelKind = Literal["slack", "teams", "email", "apprise", "webhook", "github"]
APPRISE_KINDS = frozenset({"slack", "teams", "email", "apprise"})
_CHANNEL_NEEDS: dict[str, tuple[str, ...]] = {
    "slack": ("url_env",),
    "teams": ("url_env",),
    "email": ("url_env",),
    "apprise": ("url_env",),
    "webhook": ("url", "secret_env"),
    "github": ("repository", "token_env"),
}


def _positive_duration(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be more than 0s")
    return value


class ChannelConfig(Frozen):
    """One place notifications go. Secrets are never written here: `*_env` name variables.

    Slack, Teams, email and `apprise` take an apprise URL from the variable `url_env` names
    (the URL carries the webhook token or the mail password). `webhook` posts JSON to `url`,
    signed with HMAC-SHA256 under the secret in `secret_env`. `github` sets commit statuses
    on `repository` (owner/name) through `api_url` with the token in `token_env`.
    """

    kind: ChannelKind
    url_env: str | None = None
    url: str | None = None
    secret_env: str | None = None
    token_env: str | None = None
    repository: str | None = Field(default=None, pattern=r"^[\w.-]+/[\w.-]+$")
    api_url: str = "https://api.github.com"
    context: str = "qrelease"
    timeout: Annotated[Duration, AfterValidator(_positive_duration)] = timedelta(seconds=10)

    @field_validator("url", "api_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        """An http(s) URL without credentials (they would sit in this file at rest)."""
        if url is None:
            return None
        scheme, _, rest = url.partition("://")
        if scheme not in ("http", "https") or not rest:
            raise ValueError(f"{url!r} is not an http(s) URL")
        if "@" in rest.split("/", 1)[0]:
            raise ValueError("credentials do not belong in the URL; use secret_env or token_env")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _fields_of_kind(self) -> ChannelConfig:
        missing = [name for name in _CHANNEL_NEEDS[self.kind] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} channel needs {' and '.join(missing)}")
        return self


class RuleConfig(Frozen):
    """Which events go where: every event of a kind in `on` (in `envs` and `apps`, when given)
    goes to each channel in `to`."""

    on: tuple[NotificationKind, ...] = Field(min_length=1)
    to: tuple[str, ...] = Field(min_length=1)
    envs: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()


class NotificationsConfig(Frozen):
    """Notifications, delivered from the audit log: channels, rules and delivery timing."""

    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    rules: tuple[RuleConfig, ...] = ()
    start: Literal["now", "beginning"] = "now"
    poll: Annotated[Duration, AfterValidator(_positive_duration)] = timedelta(seconds=5)
    backoff: Annotated[Duration, AfterValidator(_positive_duration)] = timedelta(seconds=5)
    max_backoff: Annotated[Duration, AfterValidator(_positive_duration)] = timedelta(minutes=10)
    give_up_after: Annotated[Duration, AfterValidator(_positive_duration)] = timedelta(hours=24)
    lease: Annotated[Duration, AfterValidator(_positive_duration)] = timedelta(seconds=60)
    link: str | None = None
    """The web view's public address, linked from messages and commit statuses."""

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, channels: dict[str, ChannelConfig]) -> dict[str, ChannelConfig]:
        for name in channels:
            if not name or not all(c.isalnum() or c in "-_" for c in name):
                raise ValueError(f"channel name {name!r}: use letters, digits, - and _")
        return channels

    @model_validator(mode="after")
    def _rules_name_channels(self) -> NotificationsConfig:
        for index, rule in enumerate(self.rules):
            for name in rule.to:
                if name not in self.channels:
                    known = ", ".join(sorted(self.channels)) or "none"
                    raise ValueError(
                        f"rules.{index}.to: no channel named {name!r} (channels: {known})"
                    )
        return self


class WebConfig(Frozen):
    """The read-only web view at `/`: on by default, for loopback clients only by default."""

    enabled: bool = True
    token_env: str | None = None
    remote: bool = False
    page_size: int = Field(default=100, ge=10, le=1000)
    audit_max_age: Annotated[Duration, AfterValidator(_positive_duration)] = timedelta(seconds=60)

    @model_validator(mode="after")
    def _remote_needs_a_token(self) -> WebConfig:
        if self.remote and not self.token_env:
            raise ValueError("remote = true needs token_env (a bearer token for the page)")
        return self


class MonitorConfig(Frozen):
    """Reading the quantum jobs live releases submit to their Azure Quantum workspaces.

    Every `interval` (and at every pass) the controller reads each workspace's job list from
    where it stopped, at most `max_jobs` jobs, and re-reads at most `max_refresh` jobs that
    had not ended. A workspace read for the first time is read from `backfill` ago; jobs
    are kept `retention` after their creation.
    """

    interval: Duration = timedelta(minutes=1)
    max_jobs: int = Field(default=500, ge=1, le=100_000)
    max_refresh: int = Field(default=100, ge=0, le=10_000)
    backfill: Duration = timedelta(days=1)
    retention: Duration = timedelta(days=30)

    @model_validator(mode="after")
    def _positive(self) -> MonitorConfig:
        if self.interval <= timedelta(0) or self.retention <= timedelta(0):
            raise ValueError("interval and retention must be positive")
        return self


class ControllerConfig(Frozen):
    """Everything the controller and the CLI read from the config file."""

    source: SourceConfig = SourceConfig()
    state_dir: Path = DEFAULT_STATE
    listen: str = "127.0.0.1:8080"
    webhook: WebhookConfig = WebhookConfig()
    concurrency: int = Field(default=2, ge=1, le=64)
    grace_period: Duration = timedelta(seconds=30)
    actor: str = "qrelease-controller"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    verify: VerifyConfig = VerifyConfig()
    gates: GatesConfig = GatesConfig()
    http: HttpConfig = HttpConfig()
    sources: PackageSourcesConfig = PackageSourcesConfig()
    store: StoreConfig = StoreConfig()
    replica: ReplicaConfig = ReplicaConfig()
    notifications: NotificationsConfig = NotificationsConfig()
    web: WebConfig = WebConfig()
    monitor: MonitorConfig = MonitorConfig()

    @property
    def replicated(self) -> bool:
        """True when the store is PostgreSQL: replicas may share it, so work goes by lease."""
        return (self.store.url or "").startswith(POSTGRES_SCHEMES)


def load_config(path: Path | None) -> ControllerConfig:
    """Read the config file; no file (and none asked for) means the defaults."""
    if path is None:
        if not DEFAULT_CONFIG.is_file():
            return ControllerConfig()
        path = DEFAULT_CONFIG
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return ControllerConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        # A model validator names the field it is about first: "rules.1.to: no channel ...".
        named = re.match(r"Value error, ([\w.-]+): ", first["msg"])
        inner = tuple(named.group(1).split(".")) if named else ()
        line = line_of(path.read_text(encoding="utf-8"), (*first["loc"], *inner))
        at = f"{path}:{line}" if line else str(path)
        raise ConfigError(f"{at}: {where}: {first['msg']}") from None


def line_of(text: str, loc: tuple[int | str, ...]) -> int | None:
    r"""The line of the TOML table or key an error's location points at (best effort).

    >>> toml = "[store]\nurl = 1\n\n[[rules]]\nto = []\n[[rules]]\nto = ['x']\n"
    >>> line_of(toml, ("store", "url")), line_of(toml, ("rules", 1, "to", 0)), line_of(toml, ())
    (2, 7, None)
    """
    wanted = tuple(str(part) for part in loc)
    best, best_length = None, 0
    table: tuple[str, ...] = ()
    seen: dict[tuple[str, ...], int] = {}
    for number, raw_line in enumerate(text.splitlines(), start=1):
        line = raw_line.split("#", 1)[0].strip()
        if line.startswith("[["):
            name = tuple(part.strip() for part in line.strip("[] ").split("."))
            seen[name] = seen.get(name, -1) + 1
            table = (*name, str(seen[name]))
            path = table
        elif line.startswith("["):
            table = tuple(part.strip() for part in line.strip("[] ").split("."))
            path = table
        elif "=" in line:
            path = (*table, line.split("=", 1)[0].strip().strip("\"'"))
        else:
            continue
        length = len(path)
        if wanted[:length] == path and length > best_length:
            best, best_length = number, length
    return best
