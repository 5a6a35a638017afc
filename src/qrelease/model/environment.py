"""The environment file: which release each app runs in one environment, and how it deploys.

Stored at `releases/<env>.yaml`; the pin lines under `apps:` are what promotion edits.
"""

from __future__ import annotations

import posixpath
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrule as Recurrence
from dateutil.rrule import rrulestr
from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from qrelease.model.manifest import Frozen, has_parent_segment
from qrelease.model.types import DnsName, Duration, SemVer

_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_SOURCE_SCHEMES = ("http", "https")

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def check_package_source(value: str) -> str:
    """Accept a relative path (in the state dir), an absolute path or an http(s) URL.

    >>> check_package_source("wheels")
    'wheels'
    >>> check_package_source("../outside")
    Traceback (most recent call last):
    ValueError: the path climbs out of its directory with '..'
    """
    # whether an absolute path or URL may be used is the operator's call (`source_refusal`);
    # messages never repeat the value, as a URL may carry credentials
    if not value or value != value.strip() or "\\" in value or not value.isprintable():
        raise ValueError("not a path or URL (empty, spaces at an end, backslashes or controls)")
    if has_parent_segment(value):
        raise ValueError("the path climbs out of its directory with '..'")
    if value.startswith("~"):
        raise ValueError("a path starting with '~'; write the absolute path")
    if _URL_SCHEME.match(value):
        url = urlsplit(value)
        if url.scheme.lower() not in _SOURCE_SCHEMES or not url.hostname or not _has_port(value):
            raise ValueError("not a path or an http(s) URL with a host (and a valid port)")
        if has_parent_segment(unquote(url.path)):
            raise ValueError("the URL climbs out of its path with an encoded '..'")
    return value


def _has_port(url: str) -> bool:
    """True when a URL's port, if any, is a number in range."""
    try:
        urlsplit(url).port  # noqa: B018 parsing the port is the check
    except ValueError:
        return False
    return True


PackageSource = Annotated[str, AfterValidator(check_package_source)]


def is_state_dir_source(value: str) -> bool:
    """True for a relative path: it names a directory under the controller's state dir.

    >>> is_state_dir_source("wheels"), is_state_dir_source("/srv/wheels")
    (True, False)
    """
    return not value.startswith("/") and not _URL_SCHEME.match(value)


def _within(value: str, allowed: str) -> bool:
    """True when a checked source is `allowed` or lies below it (a URL or path prefix)."""
    if _URL_SCHEME.match(value) or _URL_SCHEME.match(allowed):
        given, prefix = urlsplit(value), urlsplit(allowed)
        same_server = (given.scheme.lower(), given.hostname, given.port) == (
            prefix.scheme.lower(),
            prefix.hostname,
            prefix.port,
        )
        return same_server and _path_within(given.path or "/", prefix.path or "/")
    return _path_within(value, allowed)


def _path_within(path: str, prefix: str) -> bool:
    """True when `path` is `prefix` or below it, segment by segment."""
    path, prefix = posixpath.normpath(path), posixpath.normpath(prefix)
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def source_refusal(value: str | None, allowed: Sequence[str]) -> str | None:
    """Why a package source may not be used (outside the state dir, not allowed), or None.

    >>> source_refusal("/srv/wheels/extra", ["/srv/wheels"]) is None
    True
    >>> print(source_refusal("https://pypi.org.evil/", ["https://pypi.org"]))
    'https://pypi.org.evil/' is outside the state dir and not in the controller's [sources] allow
    """
    if value is None or is_state_dir_source(value):
        return None
    if any(_within(value, prefix) for prefix in allowed):
        return None
    return f"{value!r} is outside the state dir and not in the controller's [sources] allow"


class VenvDeploy(Frozen):
    """Local per-release virtualenvs under the state dir (the embedded default).

    `find_links` and `index_url` are a path relative to the state dir, or an absolute
    path or http(s) URL that the controller config's `[sources] allow` lists.
    """

    kind: Literal["venv"] = "venv"
    index_url: PackageSource | None = None
    find_links: PackageSource | None = None
    no_index: bool = False
    keep: int = Field(default=5, ge=1, le=100)


class ArmDeploy(Frozen):
    """An Azure Resource Manager deployment of the classical environment.

    `template` is a repo path to an ARM template (JSON); `parameters` are plain values (or
    ARM `{"value": ...}` / `{"reference": ...}` objects). `health_output` names the
    deployment output holding a URL to probe; `location` lets the deployer create the
    resource group when it is missing.
    """

    kind: Literal["arm"]
    subscription: str = Field(min_length=1)
    resource_group: str = Field(min_length=1)
    template: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    location: str | None = None
    health_output: str = Field(default="healthUrl", min_length=1)
    health_timeout: Duration = timedelta(seconds=30)
    deploy_timeout: Duration = timedelta(minutes=30)


class LocalQuantum(Frozen):
    """Quantum gates and target status from the local qdk and the built-in catalog."""

    kind: Literal["local"] = "local"


class AzureQuantum(Frozen):
    """An Azure Quantum workspace whose provider status and targets are used.

    Credentials never live here: `connection_string_env` names an environment variable
    holding the workspace's API-key connection string; without it azure-identity's
    DefaultAzureCredential is used. `verification_target` (an emulator or simulator in
    non-production environments) receives the verification job instead of the pinned
    target. `infrastructure` is a repo path to the ARM template of the workspace and its
    storage account (`storage_account`, derived from the workspace name when absent),
    deployed into `resource_group` only when it changes. Every field is hashable: the
    engine caches target status by this block's value.
    """

    kind: Literal["azure"]
    subscription: str = Field(min_length=1)
    resource_group: str = Field(min_length=1)
    workspace: str = Field(min_length=1)
    location: str = Field(min_length=1)
    max_queue_time: Duration | None = None
    verification_job: bool = False
    verification_target: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9._-]*$"
    )
    verification_timeout: Duration = timedelta(minutes=10)
    verification_shots: int | None = Field(default=None, gt=0, le=1_000_000)
    connection_string_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
    )
    infrastructure: str | None = None
    storage_account: str | None = Field(default=None, pattern=r"^[a-z0-9]{3,24}$")


TargetId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
"""A quantum target id as a pin names it (`ionq.qpu.aria-1`)."""


class DenyWindow(Frozen):
    """A recurring time (UTC) when nothing is promoted into the environment."""

    start: time
    end: time
    days: tuple[Weekday, ...] = WEEKDAYS
    reason: str = ""

    def covers(self, moment: datetime) -> bool:
        """True when `moment` (UTC) falls inside this window."""
        day = WEEKDAYS[moment.weekday()]
        clock = moment.time().replace(tzinfo=None)
        if self.start <= self.end:
            return day in self.days and self.start <= clock < self.end
        previous_day = WEEKDAYS[(moment.weekday() - 1) % 7]
        return (day in self.days and clock >= self.start) or (
            previous_day in self.days and clock < self.end
        )


class Freeze(Frozen):
    """A one-off freeze between two instants, held in UTC."""

    start: datetime
    end: datetime
    reason: str = ""

    @field_validator("start", "end", mode="before")
    @classmethod
    def _a_timestamp(cls, value: object) -> object:
        """An instant is written as a date or timestamp, never as a number of epoch seconds."""
        if isinstance(value, int | float):
            raise ValueError("expected a date or timestamp such as 2026-12-20T00:00:00Z")
        return value

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        """A freeze written without a zone is in UTC, like the deny windows."""
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00:00+05:00 is before the first UTC instant
            raise ValueError(f"{value.isoformat()} is out of range in UTC") from None

    @model_validator(mode="after")
    def _ordered(self) -> Freeze:
        if self.end <= self.start:
            raise ValueError("freeze end must be after its start")
        return self


RRULE_ANCHOR = datetime(2024, 1, 1)
"""Recurring windows count their occurrences from here (in the window's time zone)."""
_TOO_FINE = ("SECONDLY", "MINUTELY")


class RecurringWindow(Frozen):
    """A window that recurs by an RFC 5545 rule (as Kargo's), in its own time zone.

    Each occurrence starts at an instance of `rrule` (read in `timezone`, counted from
    RRULE_ANCHOR) and lasts `duration`. A `deny` window stops changes while it lasts; when
    an environment has `allow` windows, changes go live only inside one of them.

    >>> w = RecurringWindow(rrule="FREQ=WEEKLY;BYDAY=FR;BYHOUR=16", duration="8h",
    ...                     timezone="Europe/Berlin")
    >>> friday, saturday = datetime(2026, 12, 4, 17, tzinfo=UTC), datetime(2026, 12, 5, tzinfo=UTC)
    >>> w.covers(friday), w.covers(saturday)
    (True, False)
    """

    kind: Literal["deny", "allow"] = "deny"
    rrule: str = Field(min_length=1, max_length=500)
    duration: Duration
    timezone: str = "UTC"
    reason: str = ""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not an IANA time zone (such as Europe/Berlin)"
            ) from None
        return value

    @model_validator(mode="after")
    def _checked(self) -> RecurringWindow:
        if self.duration <= timedelta(0):
            raise ValueError("a window's duration must be positive")
        upper = self.rrule.upper()
        if any(f"FREQ={freq}" in upper for freq in _TOO_FINE):
            raise ValueError("rrule: recurring windows repeat hourly at the finest")
        try:
            self.rule()
        except (ValueError, TypeError) as error:
            raise ValueError(f"rrule: {error}") from None
        return self

    def rule(self) -> Recurrence:
        """The recurrence, anchored in the window's time zone."""
        anchor = RRULE_ANCHOR.replace(tzinfo=ZoneInfo(self.timezone))
        parsed = rrulestr(self.rrule, dtstart=anchor)
        if not isinstance(parsed, Recurrence):
            raise ValueError("give one RRULE (no RDATE or EXRULE sets)")
        return parsed

    def occurrence(self, moment: datetime) -> tuple[datetime, datetime] | None:
        """The (start, end) of the occurrence covering `moment`, merged with overlapping ones."""
        start = self.rule().before(moment, inc=True)
        if start is None or moment >= start + self.duration:
            return None
        return start, self.end_from(start)

    def covers(self, moment: datetime) -> bool:
        """True while an occurrence lasts."""
        return self.occurrence(moment) is not None

    def next_start(self, moment: datetime) -> datetime | None:
        """The first occurrence starting after `moment`."""
        found: datetime | None = self.rule().after(moment)
        return found

    def end_from(self, start: datetime) -> datetime:
        """When the occurrence starting at `start` ends, merged with the ones that overlap it."""
        end = start + self.duration
        rule = self.rule()
        following = rule.after(start)
        while following is not None and following <= end:
            end = max(end, following + self.duration)
            following = rule.after(following)
        return end


class Approvals(Frozen):
    """N of M: how many of the listed approvers must approve a release before it goes live.

    Approvers are named as they sign: the principal of their key in the controller's
    allowed-signers file when signed-commit verification is on, else their commit e-mail.
    """

    required: int = Field(ge=1, le=100)
    approvers: tuple[str, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _enough(self) -> Approvals:
        listed = len(set(self.approvers))
        if self.required > listed:
            raise ValueError(f"required is {self.required} but {listed} approvers are listed")
        return self


class Bake(Frozen):
    """After a release goes live, its health check runs every `interval` for `duration`."""

    duration: Duration
    interval: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _positive(self) -> Bake:
        if self.interval <= timedelta(0) or self.duration <= timedelta(0):
            raise ValueError("bake duration and interval must be positive")
        return self


class QuantumBudget(Frozen):
    """What this environment's verification jobs may cost: per job and per calendar month
    (UTC), in `currency`. `usd_per_hqc` is the USD price of a Quantinuum HQC under the
    environment's contract (HQCs are sold by subscription, so no public price exists)."""

    per_job: float | None = Field(default=None, ge=0)
    per_month: float | None = Field(default=None, ge=0)
    currency: Literal["USD", "EUR"] = "USD"
    usd_per_hqc: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _a_limit(self) -> QuantumBudget:
        if self.per_job is None and self.per_month is None:
            raise ValueError("give per_job, per_month or both")
        return self


class QuantumHealth(Frozen):
    """The live release's quantum jobs as a health signal (Azure Quantum environments).

    Over the jobs of the live release that ended in the last `window`, more than
    `max_failure_rate` of them Failed (Cancelled ones count neither way), judged once at
    least `min_jobs` Succeeded or Failed: the release is Degraded, and with
    `auto_rollback` switched back, as when its health check fails.
    """

    max_failure_rate: float = Field(ge=0, le=1)
    min_jobs: int = Field(default=10, ge=1, le=1_000_000)
    window: Duration = timedelta(minutes=30)

    @model_validator(mode="after")
    def _positive(self) -> QuantumHealth:
        if self.window <= timedelta(0):
            raise ValueError("window must be positive")
        return self


class Policy(Frozen):
    """How releases move through this environment.

    `suspended` maps an app to why it is suspended: the controller never changes it.
    `overriders` are allowed-signers lines (`principal key`): with signed-commit
    verification on, only a commit signed by one of them may override failed checks.
    `acknowledge_deprecated` maps a deprecated quantum target to why this environment may
    still take releases pinned to it (otherwise the plan holds them). `quantum_budget`
    caps what its verification jobs may cost; a job over it is refused before submission.
    `quantum_health` makes the live release's failing quantum jobs a health signal.
    `reuse_review` takes the gate verdicts `qrelease check --record` kept in Git for the
    very same release (manifest, program blob and compiled QIR) instead of running the
    gates again; only with signed-commit verification on, and never in place of an Azure
    verification job (a review submits none).
    """

    soak: Duration = timedelta(0)
    auto_rollback: bool = True
    auto_promote: bool = False
    prune: bool = False
    windows: tuple[DenyWindow | RecurringWindow, ...] = ()
    freezes: tuple[Freeze, ...] = ()
    approvals: Approvals | None = None
    suspended: dict[DnsName, str] = Field(default_factory=dict)
    overriders: tuple[str, ...] = ()
    bake: Bake | None = None
    acknowledge_deprecated: dict[TargetId, str] = Field(default_factory=dict)
    quantum_budget: QuantumBudget | None = None
    quantum_health: QuantumHealth | None = None
    reuse_review: bool = False


class Environment(Frozen):
    """One environment (releases/<env>.yaml)."""

    environment: DnsName
    promote_from: DnsName | None = None
    classical: Annotated[VenvDeploy | ArmDeploy, Field(discriminator="kind")] = VenvDeploy()
    quantum: Annotated[LocalQuantum | AzureQuantum, Field(discriminator="kind")] = LocalQuantum()
    policy: Policy = Policy()
    apps: dict[DnsName, SemVer] = Field(default_factory=dict)

    @field_validator("policy")
    @classmethod
    def _jobs_are_watched(cls, policy: Policy, info: ValidationInfo) -> Policy:
        """quantum_health judges jobs read from a workspace; a local environment has none."""
        quantum = info.data.get("quantum")
        if policy.quantum_health is not None and not isinstance(quantum, AzureQuantum):
            raise ValueError(
                "quantum_health needs quantum.kind: azure (qrelease reads the jobs from the"
                " workspace; jobs on the local simulator are not monitored)"
            )
        return policy

    def source_refusals(self, allowed: Sequence[str]) -> list[tuple[str, str]]:
        """(field, problem) for each package source that `[sources] allow` does not admit."""
        if not isinstance(self.classical, VenvDeploy):
            return []
        sources = {"find_links": self.classical.find_links, "index_url": self.classical.index_url}
        refusals = [(name, source_refusal(value, allowed)) for name, value in sources.items()]
        return [(f"classical.{name}", problem) for name, problem in refusals if problem]


def promotion_order(
    environments: Mapping[str, Environment], seen: Iterable[str] = ()
) -> tuple[str, ...]:
    """Environments in promotion order (each right after the one it promotes from), then
    any other name in `seen` (environments with rows but no valid file).

    Chains stay contiguous (depth first), siblings go by name, and environments caught in a
    cycle (which validation reports) come last.

    >>> dev = Environment(environment="dev")
    >>> prod = Environment(environment="prod", promote_from="staging")
    >>> staging = Environment(environment="staging", promote_from="dev")
    >>> promotion_order({"prod": prod, "dev": dev, "staging": staging}, ["old"])
    ('dev', 'staging', 'prod', 'old')
    """
    children: dict[str | None, list[str]] = defaultdict(list)
    for name in sorted(environments):
        parent = environments[name].promote_from
        children[parent if parent in environments else None].append(name)
    order: list[str] = []
    stack = list(reversed(children[None]))
    while stack:
        name = stack.pop()
        order.append(name)
        stack.extend(reversed(children[name]))
    rest = sorted((set(environments) | set(seen)) - set(order))
    return (*order, *rest)
