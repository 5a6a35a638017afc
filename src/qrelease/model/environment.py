"""The environment file: which release each app runs in one environment, and how it deploys.

Stored at `releases/<env>.yaml`; the pin lines under `apps:` are what promotion edits.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from qrelease.model.manifest import Frozen
from qrelease.model.types import DnsName, Duration, SemVer

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class VenvDeploy(Frozen):
    """Local per-release virtualenvs under the state dir (the embedded default)."""

    kind: Literal["venv"] = "venv"
    index_url: str | None = None
    find_links: str | None = None
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


class Policy(Frozen):
    """How releases move through this environment."""

    soak: Duration = timedelta(0)
    auto_rollback: bool = True
    auto_promote: bool = False
    prune: bool = False
    windows: tuple[DenyWindow, ...] = ()
    freezes: tuple[Freeze, ...] = ()


class Environment(Frozen):
    """One environment (releases/<env>.yaml)."""

    environment: DnsName
    promote_from: DnsName | None = None
    classical: Annotated[VenvDeploy | ArmDeploy, Field(discriminator="kind")] = VenvDeploy()
    quantum: Annotated[LocalQuantum | AzureQuantum, Field(discriminator="kind")] = LocalQuantum()
    policy: Policy = Policy()
    apps: dict[DnsName, SemVer] = Field(default_factory=dict)
