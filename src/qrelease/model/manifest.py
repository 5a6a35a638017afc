"""The release manifest: what one version of an app is, classical and quantum together.

Stored at `manifests/<app>/<version>.yaml`; immutable once an environment has applied it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from datetime import timedelta
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from qrelease.model.types import DnsName, Duration, SemVer

_PACKAGE_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
_PACKAGE_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+!_-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ENTRY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*\(.*\)$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SCRIPT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_PYTHON = re.compile(r"^python(3(\.[0-9]+)?)?$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_PARENT_SEGMENT = re.compile(r"(^|[/\\=:,])\.\.($|[/\\,])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Frozen(BaseModel):
    """Base for every stored value: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


_FROZEN = TypeVar("_FROZEN", bound=Frozen)
_FIELD_SETS: dict[frozenset[str], set[str]] = {}


def share_fields_set(models: Iterable[_FROZEN]) -> Iterator[_FROZEN]:
    """The models, each holding one shared set of its set fields where they are the same.

    pydantic keeps a set of the fields given, per instance: for a stored state of 27
    fields, 2 KiB, more than the rest of the model. Frozen models never add to it (a copy
    copies it first), so equal sets can be one object: 30,000 states save 65 MiB.
    """
    for model in models:
        yield share_fields(model)


def share_fields(model: _FROZEN) -> _FROZEN:
    """One model of `share_fields_set`: the same model, holding the shared set."""
    fields = model.__pydantic_fields_set__
    key = frozenset(fields)
    shared = _FIELD_SETS.get(key)
    if shared is None:
        shared = _FIELD_SETS.setdefault(key, set(fields))
    if shared is not fields:
        object.__setattr__(model, "__pydantic_fields_set__", shared)
    return model


class TargetProfile(StrEnum):
    """QIR target profiles, in increasing capability."""

    BASE = "Base"
    ADAPTIVE_RI = "Adaptive_RI"
    ADAPTIVE_RIF = "Adaptive_RIF"
    ADAPTIVE = "Adaptive"
    UNRESTRICTED = "Unrestricted"

    def can_run(self, required: TargetProfile) -> bool:
        """True when a target offering this profile runs a program compiled for `required`.

        >>> TargetProfile.ADAPTIVE_RI.can_run(TargetProfile.BASE)
        True
        >>> TargetProfile.BASE.can_run(TargetProfile.ADAPTIVE_RI)
        False
        """
        order = list(TargetProfile)
        return order.index(self) >= order.index(required)


class ProgramKind(StrEnum):
    """The language a release's quantum program is written in, told by its file suffix."""

    QSHARP = "qsharp"
    OPENQASM = "openqasm"
    QISKIT = "qiskit"

    @classmethod
    def of(cls, path: str) -> ProgramKind | None:
        """The kind of a program file, or None for a suffix qrelease does not release.

        >>> ProgramKind.of("programs/bell.qasm"), ProgramKind.of("programs/x.txt")
        (<ProgramKind.OPENQASM: 'openqasm'>, None)
        """
        return _PROGRAM_SUFFIXES.get(PurePosixPath(path).suffix)

    @property
    def label(self) -> str:
        """How people name the language.

        >>> ProgramKind.OPENQASM.label
        'OpenQASM 3'
        """
        return {"qsharp": "Q#", "openqasm": "OpenQASM 3", "qiskit": "Qiskit"}[self.value]


_PROGRAM_SUFFIXES = {
    ".qs": ProgramKind.QSHARP,
    ".qasm": ProgramKind.OPENQASM,
    ".py": ProgramKind.QISKIT,
}


def _check_program_path(value: str) -> str:
    path = PurePosixPath(value)
    if not value or path.is_absolute() or value.startswith(("/", "\\")) or "\\" in value:
        raise ValueError(f"{value!r} must be a relative path inside the app's manifest folder")
    if any(part in ("..", "") for part in value.split("/")) or path.parts[0] == ".":
        raise ValueError(f"{value!r} must not contain '..' or empty segments")
    if ProgramKind.of(value) is None:
        raise ValueError(f"{value!r} is not a Q# (.qs), OpenQASM 3 (.qasm) or Qiskit (.py) program")
    return value


ProgramPath = Annotated[str, AfterValidator(_check_program_path)]


def _pattern(regex: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


class Package(Frozen):
    """One Python distribution of the release, pinned exactly."""

    name: Annotated[str, _pattern(_PACKAGE_NAME, "a Python package name")]
    version: Annotated[str, _pattern(_PACKAGE_VERSION, "an exact package version")]
    sha256: Annotated[str, _pattern(_SHA256, "a lowercase hex sha256")] | None = None


def has_parent_segment(value: str) -> bool:
    """True when a path (or a `key=path` argument) climbs out through a `..` segment.

    >>> has_parent_segment("--config=../../etc/x"), has_parent_segment("v1..v2")
    (True, False)
    """
    return bool(_PARENT_SEGMENT.search(value))


def _argument_problem(argument: str) -> str | None:
    """Why a health command argument could reach outside the release, or None."""
    if _CONTROL.search(argument):
        return "holds control characters"
    values = [argument, argument.partition("=")[2]]
    if argument.startswith("-") and not argument.startswith("--"):
        values.append(argument[2:])  # a short option with its value attached: -o/etc/x
    if any(value.startswith(("/", "\\", "~")) for value in values):
        return "is an absolute path"
    if any(value.lower().startswith("file:") for value in values):
        return "is a file: URL"
    if has_parent_segment(argument):
        return "climbs out of the release with '..'"
    return None


def _check_health_command(command: tuple[str, ...]) -> tuple[str, ...]:
    """Refuse a command that names its program by path or reaches outside the release."""
    program = command[0]  # a console script name (found in the venv at deploy time) or python
    if not _SCRIPT_NAME.fullmatch(program):
        raise ValueError(
            f"{program!r} is not a console script name: the program must be one of the "
            "release's console scripts (a name, no path or shell syntax) or python -m <module>"
        )
    if _PYTHON.fullmatch(program) and (
        len(command) < 3 or command[1] != "-m" or not _MODULE.fullmatch(command[2])
    ):
        raise ValueError(
            f"{program} runs only as [{program}, -m, <module>, ...] with a module of the "
            "release's packages"
        )
    for position, argument in enumerate(command[1:], start=1):
        problem = _argument_problem(argument)
        if problem:
            raise ValueError(
                f"argument {position} {argument!r} {problem}; health commands stay inside "
                "the release"
            )
    return command


class HealthCheck(Frozen):
    """A command run inside the release's virtualenv; exit 0 means healthy.

    >>> HealthCheck(command=("bell-service", "--self-check")).command[0]
    'bell-service'
    """

    command: Annotated[tuple[str, ...], Field(min_length=1), AfterValidator(_check_health_command)]
    timeout: Duration = timedelta(seconds=30)

    @property
    def module(self) -> str | None:
        """The module a `[python, -m, <module>, ...]` command runs, else None.

        >>> HealthCheck(command=("python", "-m", "bell_service", "--self-check")).module
        'bell_service'
        """
        return self.command[2] if _PYTHON.fullmatch(self.command[0]) else None


class Classical(Frozen):
    """The classical side of a release: packages and how to tell they work."""

    packages: tuple[Package, ...] = Field(min_length=1)
    health: HealthCheck | None = None

    @model_validator(mode="after")
    def _unique_packages(self) -> Classical:
        names = [p.name.lower().replace("_", "-") for p in self.packages]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"package listed twice: {', '.join(dupes)}")
        return self


class TargetPin(Frozen):
    """The quantum target a release is pinned to and the profile it is compiled for."""

    id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[a-z0-9][a-z0-9._-]*$")]
    profile: TargetProfile


class EstimateGate(Frozen):
    """Resource-estimate budget; each limit is optional."""

    max_physical_qubits: int | None = Field(default=None, gt=0, le=10**12)
    max_runtime: Duration | None = None


class NoiseFigures(Frozen):
    """Error rates a smoke test simulates: average one- and two-qubit gate infidelities and
    the readout (SPAM) error, with where they come from."""

    one_qubit: float = Field(ge=0.0, le=0.5)
    two_qubit: float = Field(ge=0.0, le=0.5)
    readout: float = Field(ge=0.0, le=0.5)
    source: str = Field(default="", max_length=500)


class SmokeGate(Frozen):
    """Seeded shots on the local simulator compared with the expected distribution.

    `method: tvd` fails a program whose distribution is `max_distance` or further from
    `expect` with probability `power`, and a right one with probability at most `alpha`,
    once `shots` reaches what the design needs (`qrelease validate` says how many).
    `method: chi2` takes `max_distance` as its significance level and judges its power
    against a deviation of `detect` (a total variation distance). `noise` simulates the
    shots without noise (`none`), with the pinned target's published error rates from the
    catalog (`target`), or with the figures given.
    """

    shots: int = Field(default=1000, gt=0, le=1_000_000)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    expect: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]] = Field(min_length=1)
    max_distance: float = Field(default=0.1, gt=0.0, le=1.0)
    method: Literal["tvd", "chi2"] = "tvd"
    alpha: float = Field(default=0.05, gt=0.0, lt=0.5)
    power: float = Field(default=0.95, gt=0.5, lt=1.0)
    detect: float = Field(default=0.1, gt=0.0, le=0.5)
    noise: Literal["none", "target"] | NoiseFigures = "none"

    @model_validator(mode="after")
    def _sums_to_one(self) -> SmokeGate:
        total = sum(self.expect.values())
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"expected probabilities sum to {total:g}, not 1")
        return self


class Gates(Frozen):
    """Quantum gates configured for this release (the profile gate always runs)."""

    estimate: EstimateGate | None = None
    smoke: SmokeGate | None = None


class Quantum(Frozen):
    """The quantum side of a release: a program pinned to a target and profile.

    A Q# program (`.qs`) names its `entry`; an OpenQASM 3 program (`.qasm`) is run whole
    and has none; a Qiskit program (`.py`, a Python module) names its `circuit`: a
    `QuantumCircuit` in the module, or a function of no arguments that returns one.

    >>> pin = {"id": "ionq.simulator", "profile": "Base"}
    >>> Quantum(program="programs/bell.qasm", target=pin).kind
    <ProgramKind.OPENQASM: 'openqasm'>
    """

    program: ProgramPath
    entry: Annotated[str, _pattern(_ENTRY, "a Q# call expression such as Bell.Main()")] | None = (
        None
    )
    circuit: Annotated[str, _pattern(_IDENTIFIER, "a Python name such as make_circuit")] | None = (
        None
    )
    target: TargetPin
    gates: Gates = Gates()

    @model_validator(mode="after")
    def _entry_fits_kind(self) -> Quantum:
        kind = self.kind
        if kind is ProgramKind.QSHARP and self.entry is None:
            raise ValueError("a Q# program needs an entry, such as entry: Bell.Main()")
        if kind is not ProgramKind.QSHARP and self.entry is not None:
            raise ValueError(f"entry is for Q# programs; a {kind.label} program has none")
        if kind is ProgramKind.QISKIT and self.circuit is None:
            raise ValueError(
                "a Qiskit program needs circuit: the name of its QuantumCircuit, or of a "
                "function that returns one"
            )
        if kind is not ProgramKind.QISKIT and self.circuit is not None:
            raise ValueError(f"circuit is for Qiskit programs (.py), not {self.kind.label} ones")
        return self

    @property
    def kind(self) -> ProgramKind:
        """The program's language, from its file suffix."""
        kind = ProgramKind.of(self.program)
        assert kind is not None  # the path validator refused any other suffix
        return kind

    @property
    def start(self) -> str:
        """What runs: the Q# entry, the Qiskit circuit's name, or "" for OpenQASM (the whole file).

        >>> Quantum(program="p/c.py", circuit="make", target={"id": "a", "profile": "Base"}).start
        'make'
        """
        return self.entry or self.circuit or ""


class ReleaseManifest(Frozen):
    """One version of one app (manifests/<app>/<version>.yaml)."""

    app: DnsName
    version: SemVer
    description: str = ""
    classical: Classical
    quantum: Quantum

    @property
    def key(self) -> tuple[str, str]:
        """(app, version)."""
        return (self.app, self.version)

    @property
    def target(self) -> str:
        """The id of the target the release is pinned to (as `planning.Release` asks)."""
        return self.quantum.target.id

    def manifest(self) -> ReleaseManifest:
        """The manifest itself (a manifest is a `planning.Release` already decoded)."""
        return self
