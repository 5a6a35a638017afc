"""Known quantum targets, so a release pin can be checked before anything is submitted.

A pin names a target and the QIR profile the program is compiled for. Whether that pin can
work is decided here, without network access: the target must exist and not be retired,
offer at least the pinned profile and at least as many qubits as the program needs.

Every entry says where its figures come from (`reference`) and when they were last
checked against it (`checked`). The Azure targets come from the providers' pages in
Microsoft's Azure Quantum documentation (the MicrosoftDocs/quantum-docs repository at
commit bdaf622 of 2026-08-21) and the target lists of the azure-quantum SDK 3.13.0; noise
figures from the pages or papers named in each entry. A target is `deprecated` once its
provider has withdrawn it from the documentation but the service may still run it (the
plan holds a change to it unless the environment acknowledges that), and `retired` once
it is gone (pinning it is a validation error). Where the two sources disagree, the entry
says so in its note. A backend that can ask the service (`azure/quantum.py`) passes what
the service reports, which overrides the profile and qubits here.

The `qdk.sim.*` targets are local simulators, one per profile, clearly named as such: a
program written for Adaptive_RIF, Adaptive or Unrestricted (which no Azure target runs
today) can go to an environment whose quantum side is `{kind: local}`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Literal

from qrelease.model.manifest import TargetProfile
from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum.base import GateResult

CHECKED = date(2026, 12, 3)
"""When the figures below were last compared with their references."""

_DOCS = "https://learn.microsoft.com/azure/quantum/"
_DOCS_REPO = "MicrosoftDocs/quantum-docs@bdaf622"
_SDK = "azure-quantum 3.13.0"
_IONQ_PAGE = f"{_DOCS}provider-ionq ({_DOCS_REPO}, articles/provider-ionq.md)"
_RIGETTI_PAGE = f"{_DOCS}provider-rigetti ({_DOCS_REPO}, articles/provider-rigetti.md)"
_QUANTINUUM_PAGE = f"{_DOCS}provider-quantinuum ({_DOCS_REPO}, articles/provider-quantinuum.md)"
_PASQAL_PAGE = f"{_DOCS}provider-pasqal ({_DOCS_REPO}, articles/provider-pasqal.md)"
_TARGET_LIST = f"{_DOCS}qc-target-list ({_DOCS_REPO}, articles/qc-target-list.md)"


class Lifecycle(StrEnum):
    """Whether a target can be pinned: active, deprecated (held unless acknowledged), retired."""

    ACTIVE = "active"
    DEPRECATED = "deprecated"
    RETIRED = "retired"


Kind = Literal["qpu", "emulator", "simulator", "syntax-checker", "local"]


@dataclass(frozen=True)
class NoiseFigures:
    """Published average error rates of a target's operations, and where they come from.

    `one_qubit` and `two_qubit` are average gate infidelities; `readout` is the state
    preparation and measurement (SPAM) error.
    """

    one_qubit: float
    two_qubit: float
    readout: float
    reference: str
    checked: date = CHECKED


@dataclass(frozen=True)
class TargetSpec:
    """What a target offers and where the catalog's figures for it come from.

    `profile` is None for targets that run no QIR at all (Pasqal's take Pulser sequences).
    `source` says whose figures are in use: the catalog's, or the service's report.

    >>> TARGETS["ionq.qpu.aria-1"].qubits
    25
    """

    target_id: str
    provider: str
    profile: TargetProfile | None
    qubits: int | None
    source: str = "catalog"
    kind: Kind = "qpu"
    status: Lifecycle = Lifecycle.ACTIVE
    reference: str = ""
    checked: date = CHECKED
    note: str = ""
    noise: NoiseFigures | None = None

    @property
    def noiseless(self) -> bool:
        """True for targets whose results carry no hardware noise (ideal simulators)."""
        return self.kind in ("simulator", "syntax-checker", "local")

    @property
    def local_only(self) -> bool:
        """True for the qdk simulators, which no Azure workspace offers."""
        return self.kind == "local"


_ARIA = NoiseFigures(
    one_qubit=0.0005,  # 99.95% (SPAM corrected)
    two_qubit=0.004,  # 99.6%
    readout=0.0039,  # SPAM 99.61%
    reference=f"{_IONQ_PAGE}, 'System fidelity' of IonQ Aria",
)
_H2 = NoiseFigures(
    one_qubit=1.8e-5,
    two_qubit=1.0e-3,
    readout=1.6e-3,
    reference="S. A. Moses et al., A Race Track Trapped-Ion Quantum Processor, "
    "arXiv:2305.03828 (Phys. Rev. X 13, 041052), abstract: H2 average infidelities",
)
_HELIOS = NoiseFigures(
    one_qubit=2.5e-5,
    two_qubit=7.9e-4,
    readout=3.3e-4,
    reference="M. S. Allman et al., Helios: A 98-qubit trapped-ion quantum computer, "
    "arXiv:2511.05465, abstract: average infidelities over all operational zones",
)


def _spec(
    target_id: str,
    profile: TargetProfile,
    qubits: int,
    reference: str,
    *,
    kind: Kind = "qpu",
    status: Lifecycle = Lifecycle.ACTIVE,
    note: str = "",
    noise: NoiseFigures | None = None,
) -> TargetSpec:
    """A catalog entry whose provider is the first segment of its id."""
    provider = target_id.split(".", 1)[0]
    return TargetSpec(
        target_id,
        provider,
        profile,
        qubits,
        kind=kind,
        status=status,
        reference=reference,
        note=note,
        noise=noise,
    )


def _pasqal(target: str, qubits: int, kind: Kind) -> TargetSpec:
    note = "analog neutral-atom target: takes Pulser sequences, not QIR, so no Q# program runs"
    return TargetSpec(target, "pasqal", None, qubits, kind=kind, reference=_PASQAL_PAGE, note=note)


def _local(profile: TargetProfile) -> TargetSpec:
    name = profile.value.lower().replace("_", "-")
    note = "local simulator: for environments with quantum: {kind: local} only"
    if profile is TargetProfile.UNRESTRICTED:
        note += "; qdk 1.33 generates no QIR for Unrestricted, so no release can pass its gates"
    return TargetSpec(
        f"qdk.sim.{name}",
        "qdk",
        profile,
        None,
        kind="local",
        reference="qdk's local sparse-state simulator (this machine; no Azure workspace)",
        note=note,
    )


_RI, _RIF = TargetProfile.ADAPTIVE_RI, TargetProfile.ADAPTIVE_RIF
_H2_NOTE = "qc-target-list.md gives fewer qubits (20-32); the provider page's 56 is used"
_HELIOS_REF = f"{_SDK} (azure/quantum/target/quantinuum.py: target and default Adaptive_RIF)"
_HELIOS_NOTE = "not yet on the provider page; 98 qubits from arXiv:2511.05465"

_BASE = TargetProfile.BASE
_NO_FIGURES = "the provider page publishes no fidelity figures"

TARGETS: dict[str, TargetSpec] = {
    spec.target_id: spec
    for spec in (
        _spec("ionq.simulator", _BASE, 29, _IONQ_PAGE, kind="simulator"),
        _spec("ionq.qpu.aria-1", _BASE, 25, _IONQ_PAGE, noise=_ARIA),
        _spec(
            "ionq.qpu.aria-2",
            _BASE,
            25,
            _IONQ_PAGE,
            status=Lifecycle.RETIRED,
            note="removed from the provider page on 2025-09-29 (quantum-docs 393af20f) and "
            f"absent from {_SDK}'s IonQ targets",
        ),
        _spec("ionq.qpu.forte-1", _BASE, 36, _IONQ_PAGE, note=_NO_FIGURES),
        _spec("ionq.qpu.forte-enterprise-1", _BASE, 36, _IONQ_PAGE, note=_NO_FIGURES),
        _spec(
            "rigetti.sim.qvm",
            _BASE,
            30,
            _RIGETTI_PAGE,
            kind="simulator",
            note="the provider page gives no qubit count; 30 from qc-target-list.md",
        ),
        _spec("rigetti.qpu.cepheus-1-108q", _BASE, 108, _RIGETTI_PAGE, note=_NO_FIGURES),
        _spec(
            "rigetti.qpu.ankaa-3",
            _BASE,
            84,
            _RIGETTI_PAGE,
            status=Lifecycle.DEPRECATED,
            note="deprecated by the provider in 2026-04: removed from the provider page on "
            "2026-04-09 (quantum-docs c0ab35ed) and from azure-quantum 3.9.0",
        ),
        _spec(
            "rigetti.qpu.cepheus-1-36q",
            _BASE,
            36,
            _RIGETTI_PAGE,
            status=Lifecycle.RETIRED,
            note="removed from the Azure SDK in azure-quantum 3.7.0 and from the provider "
            "page on 2026-04-09 (quantum-docs c0ab35ed)",
        ),
        _spec("quantinuum.sim.h2-1sc", _RI, 56, _QUANTINUUM_PAGE, kind="syntax-checker"),
        _spec("quantinuum.sim.h2-2sc", _RI, 56, _QUANTINUUM_PAGE, kind="syntax-checker"),
        _spec(
            "quantinuum.sim.h2-1e",
            _RI,
            56,
            _QUANTINUUM_PAGE,
            kind="emulator",
            note=_H2_NOTE,
            noise=_H2,
        ),
        _spec(
            "quantinuum.sim.h2-2e",
            _RI,
            56,
            _QUANTINUUM_PAGE,
            kind="emulator",
            note=_H2_NOTE,
            noise=_H2,
        ),
        _spec("quantinuum.qpu.h2-1", _RI, 56, _QUANTINUUM_PAGE, note=_H2_NOTE, noise=_H2),
        _spec("quantinuum.qpu.h2-2", _RI, 56, _QUANTINUUM_PAGE, note=_H2_NOTE, noise=_H2),
        _spec("quantinuum.qpu.helios-1", _RIF, 98, _HELIOS_REF, note=_HELIOS_NOTE, noise=_HELIOS),
        _spec(
            "quantinuum.sim.helios-1sc",
            _RIF,
            98,
            _HELIOS_REF,
            kind="syntax-checker",
            note=_HELIOS_NOTE,
        ),
        _spec(
            "quantinuum.sim.helios-1e",
            _RIF,
            98,
            _HELIOS_REF,
            kind="emulator",
            note=_HELIOS_NOTE,
            noise=_HELIOS,
        ),
        _pasqal("pasqal.sim.emu-sv", 25, "emulator"),
        _pasqal("pasqal.sim.emu-mps", 80, "emulator"),
        _pasqal("pasqal.sim.emu-free", 12, "emulator"),
        _pasqal("pasqal.qpu.fresnel", 100, "qpu"),
        _pasqal("pasqal.qpu.fresnel-can1", 100, "qpu"),
        *(_local(profile) for profile in TargetProfile),
    )
}
"""The catalog: every Azure Quantum target the references list, and the local simulators."""

TARGET_LIST_REFERENCE = _TARGET_LIST


def known_ids() -> list[str]:
    """The catalog's target ids, sorted.

    >>> known_ids()[:2]
    ['ionq.qpu.aria-1', 'ionq.qpu.aria-2']
    """
    return sorted(TARGETS)


def usable_ids() -> list[str]:
    """The ids a release may be pinned to (not retired), sorted."""
    return sorted(i for i, spec in TARGETS.items() if spec.status is not Lifecycle.RETIRED)


def resolve(
    target_id: str,
    *,
    reported_profile: TargetProfile | None = None,
    reported_qubits: int | None = None,
) -> TargetSpec | None:
    """The target's spec: service-reported figures where given, catalog defaults otherwise.

    >>> resolve("ionq.simulator", reported_qubits=11).qubits
    11
    >>> resolve("acme.qpu.x") is None
    True
    """
    known = TARGETS.get(target_id)
    if reported_profile is None and reported_qubits is None:
        return known
    if known is None:
        if reported_profile is None:
            return None
        known = TargetSpec(target_id, target_id.split(".", 1)[0], None, None, kind="qpu")
    profile = reported_profile or known.profile
    qubits = reported_qubits if reported_qubits is not None else known.qubits
    return TargetSpec(
        target_id,
        known.provider,
        profile,
        qubits,
        "service",
        known.kind,
        known.status,
        known.reference,
        known.checked,
        known.note,
        known.noise,
    )


@dataclass(frozen=True)
class PinFinding:
    """One thing wrong (or worth a warning) with a pin, and the pin field it is about."""

    field: Literal["id", "profile"]
    message: str
    warning: bool = False


def pin_findings(
    target_id: str,
    profile: TargetProfile,
    qubits_needed: int | None,
    *,
    reported_profile: TargetProfile | None = None,
    reported_qubits: int | None = None,
) -> list[PinFinding]:
    """Why a program compiled for `profile` needing `qubits_needed` cannot (or should not) run.

    >>> [f.message for f in pin_findings("ionq.qpu.aria-2", TargetProfile.BASE, 2)][0][:38]
    'target ionq.qpu.aria-2 is retired (rem'
    """
    spec = resolve(target_id, reported_profile=reported_profile, reported_qubits=reported_qubits)
    if spec is None:
        return [PinFinding("id", _unknown(target_id))]
    findings = []
    if spec.status is Lifecycle.RETIRED:
        findings.append(PinFinding("id", f"target {target_id} is retired ({spec.note})"))
    elif spec.status is Lifecycle.DEPRECATED:
        text = (
            f"target {target_id} is deprecated ({spec.note}); plan holds changes to it unless "
            "the environment lists it in policy.acknowledge_deprecated"
        )
        findings.append(PinFinding("id", text, warning=True))
    if spec.profile is None:
        findings.append(PinFinding("profile", f"target {target_id} runs no QIR: {spec.note}"))
    elif not spec.profile.can_run(profile):
        text = f"target {target_id} runs the {spec.profile} profile, not {profile} ({spec.source})"
        findings.append(PinFinding("profile", text))
    if qubits_needed is not None and spec.qubits is not None and qubits_needed > spec.qubits:
        text = (
            f"program needs {qubits_needed} qubits; target {target_id} has {spec.qubits}"
            f" ({spec.source})"
        )
        findings.append(PinFinding("id", text))
    return findings


def _unknown(target_id: str) -> str:
    """`unknown target 'x'` with the closest known ids, if any look alike."""
    close = difflib.get_close_matches(target_id, usable_ids(), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return f"unknown target {target_id!r}{hint} (qrelease targets lists the catalog)"


def pin_problems(
    target_id: str,
    profile: TargetProfile,
    qubits_needed: int | None,
    *,
    reported_profile: TargetProfile | None = None,
    reported_qubits: int | None = None,
) -> list[str]:
    """The findings that stop a release (warnings left out).

    >>> pin_problems("ionq.qpu.aria-1", TargetProfile.ADAPTIVE_RI, 2)
    ['target ionq.qpu.aria-1 runs the Base profile, not Adaptive_RI (catalog)']
    >>> pin_problems("quantinuum.qpu.h2-1", TargetProfile.BASE, 2)
    []
    """
    findings = pin_findings(
        target_id,
        profile,
        qubits_needed,
        reported_profile=reported_profile,
        reported_qubits=reported_qubits,
    )
    return [finding.message for finding in findings if not finding.warning]


def check_pin(
    target_id: str,
    profile: TargetProfile,
    qubits_needed: int | None,
    *,
    reported_profile: TargetProfile | None = None,
    reported_qubits: int | None = None,
) -> GateResult:
    """The pin check as a "profile" gate result: Failed with every problem, else Passed.

    >>> check_pin("quantinuum.sim.h2-1e", TargetProfile.ADAPTIVE_RI, 2).outcome
    <GateOutcome.PASSED: 'Passed'>
    """
    findings = pin_findings(
        target_id,
        profile,
        qubits_needed,
        reported_profile=reported_profile,
        reported_qubits=reported_qubits,
    )
    problems = [finding.message for finding in findings if not finding.warning]
    spec = resolve(target_id, reported_profile=reported_profile, reported_qubits=reported_qubits)
    details = {"target": target_id, "profile": str(profile), "qubits_needed": qubits_needed}
    if spec is not None:
        details |= {
            "target_profile": None if spec.profile is None else str(spec.profile),
            "target_qubits": spec.qubits,
            "target_status": str(spec.status),
        }
    if problems:
        return GateResult("profile", GateOutcome.FAILED, "; ".join(problems), details)
    warnings = "".join(f"; {finding.message}" for finding in findings if finding.warning)
    message = describe_fit(spec, qubits_needed) + warnings
    return GateResult("profile", GateOutcome.PASSED, message, details)


def describe_fit(spec: TargetSpec | None, qubits_needed: int | None) -> str:
    """One line saying how a program fits its target.

    >>> describe_fit(TARGETS["ionq.simulator"], 2)
    'fits ionq.simulator (Base, 2 of 29 qubits, catalog)'
    """
    if spec is None:
        return "target unknown"
    needed = "?" if qubits_needed is None else str(qubits_needed)
    of = "unknown" if spec.qubits is None else str(spec.qubits)
    return f"fits {spec.target_id} ({spec.profile}, {needed} of {of} qubits, {spec.source})"
