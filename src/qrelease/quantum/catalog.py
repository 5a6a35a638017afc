"""Known Azure Quantum targets, so a release pin can be checked before anything is submitted.

A pin names a target and the QIR profile the program is compiled for. Whether that pin can
work is decided here, without network access: the target must offer at least the pinned
profile and at least as many qubits as the program needs. The figures below are the
catalog's defaults, taken from the providers' public Azure Quantum documentation; a backend
that can ask the service (`azure.py`) passes what the service reports, which overrides them.
"""

from __future__ import annotations

from dataclasses import dataclass

from qrelease.model.manifest import TargetProfile
from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum.base import GateResult


@dataclass(frozen=True)
class TargetSpec:
    """What a target offers: the highest QIR profile it runs and how many qubits it has.

    >>> TARGETS["ionq.qpu.aria-1"].qubits
    25
    """

    target_id: str
    provider: str
    profile: TargetProfile
    qubits: int | None
    source: str = "catalog"


def _spec(target_id: str, profile: TargetProfile, qubits: int) -> TargetSpec:
    """A catalog entry whose provider is the first segment of its id."""
    return TargetSpec(target_id, target_id.split(".", 1)[0], profile, qubits)


_BASE = TargetProfile.BASE
_ADAPTIVE_RI = TargetProfile.ADAPTIVE_RI

# Catalog defaults (public provider figures); the Azure service's report overrides them.
TARGETS: dict[str, TargetSpec] = {
    spec.target_id: spec
    for spec in (
        _spec("ionq.simulator", _BASE, 29),
        _spec("ionq.qpu.aria-1", _BASE, 25),
        _spec("ionq.qpu.aria-2", _BASE, 25),
        _spec("ionq.qpu.forte-1", _BASE, 36),
        # The QVM publishes no hard limit; 40 is this catalog's working default.
        _spec("rigetti.sim.qvm", _BASE, 40),
        _spec("rigetti.qpu.ankaa-3", _BASE, 84),
        _spec("rigetti.qpu.cepheus-1-36q", _BASE, 36),
        _spec("quantinuum.sim.h2-1sc", _ADAPTIVE_RI, 56),
        _spec("quantinuum.sim.h2-1e", _ADAPTIVE_RI, 56),
        _spec("quantinuum.qpu.h2-1", _ADAPTIVE_RI, 56),
        _spec("quantinuum.sim.h2-2sc", _ADAPTIVE_RI, 56),
        _spec("quantinuum.sim.h2-2e", _ADAPTIVE_RI, 56),
        _spec("quantinuum.qpu.h2-2", _ADAPTIVE_RI, 56),
    )
}


def known_ids() -> list[str]:
    """The catalog's target ids, sorted.

    >>> known_ids()[:2]
    ['ionq.qpu.aria-1', 'ionq.qpu.aria-2']
    """
    return sorted(TARGETS)


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
    if reported_profile is None:
        if known is None:
            return None
        if reported_qubits is None:
            return known
        return TargetSpec(target_id, known.provider, known.profile, reported_qubits, "service")
    provider = known.provider if known else target_id.split(".", 1)[0]
    fallback_qubits = known.qubits if known else None
    qubits = reported_qubits if reported_qubits is not None else fallback_qubits
    return TargetSpec(target_id, provider, reported_profile, qubits, "service")


def pin_problems(
    target_id: str,
    profile: TargetProfile,
    qubits_needed: int | None,
    *,
    reported_profile: TargetProfile | None = None,
    reported_qubits: int | None = None,
) -> list[str]:
    """Why a program compiled for `profile` needing `qubits_needed` cannot run on the target.

    >>> pin_problems("ionq.qpu.aria-1", TargetProfile.ADAPTIVE_RI, 2)
    ['target ionq.qpu.aria-1 runs the Base profile, not Adaptive_RI (catalog)']
    >>> pin_problems("quantinuum.qpu.h2-1", TargetProfile.BASE, 2)
    []
    """
    spec = resolve(target_id, reported_profile=reported_profile, reported_qubits=reported_qubits)
    if spec is None:
        return [f"unknown target {target_id!r}; known targets: {', '.join(known_ids())}"]
    problems: list[str] = []
    if not spec.profile.can_run(profile):
        problems.append(
            f"target {target_id} runs the {spec.profile} profile, not {profile} ({spec.source})"
        )
    if qubits_needed is not None and spec.qubits is not None and qubits_needed > spec.qubits:
        problems.append(
            f"program needs {qubits_needed} qubits; target {target_id} has {spec.qubits}"
            f" ({spec.source})"
        )
    return problems


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
    problems = pin_problems(
        target_id,
        profile,
        qubits_needed,
        reported_profile=reported_profile,
        reported_qubits=reported_qubits,
    )
    spec = resolve(target_id, reported_profile=reported_profile, reported_qubits=reported_qubits)
    details = {"target": target_id, "profile": str(profile), "qubits_needed": qubits_needed}
    if spec is not None:
        details |= {"target_profile": str(spec.profile), "target_qubits": spec.qubits}
    if problems:
        return GateResult("profile", GateOutcome.FAILED, "; ".join(problems), details)
    return GateResult("profile", GateOutcome.PASSED, describe_fit(spec, qubits_needed), details)


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
