"""The target catalog: where every figure comes from, lifecycles, and pin checks."""

from __future__ import annotations

from datetime import date

import pytest

from qrelease.model.manifest import TargetProfile
from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum import catalog
from qrelease.quantum.catalog import Lifecycle


def test_every_entry_says_where_its_figures_come_from_and_when_they_were_checked() -> None:
    for spec in catalog.TARGETS.values():
        assert spec.reference, spec.target_id
        assert spec.checked <= date(2026, 12, 31), spec.target_id
        assert spec.provider == spec.target_id.split(".", 1)[0]
        if spec.noise is not None:
            assert spec.noise.reference
            assert 0 < spec.noise.one_qubit < spec.noise.two_qubit < 0.1
        if spec.status is not Lifecycle.ACTIVE:
            assert spec.note, f"{spec.target_id} must say why it is {spec.status}"


def test_the_catalog_follows_the_providers() -> None:
    targets = catalog.TARGETS
    assert targets["rigetti.qpu.ankaa-3"].status is Lifecycle.DEPRECATED
    assert targets["rigetti.qpu.cepheus-1-36q"].status is Lifecycle.RETIRED
    assert targets["rigetti.qpu.cepheus-1-108q"].qubits == 108
    assert targets["ionq.qpu.forte-enterprise-1"].qubits == 36
    assert {t for t in targets if t.startswith("pasqal.")} >= {
        "pasqal.qpu.fresnel",
        "pasqal.sim.emu-mps",
    }


@pytest.mark.parametrize("profile", list(TargetProfile))
def test_every_profile_has_a_local_simulator(profile: TargetProfile) -> None:
    (spec,) = [s for s in catalog.TARGETS.values() if s.kind == "local" and s.profile is profile]
    assert spec.target_id.startswith("qdk.sim.")
    assert spec.local_only and spec.noiseless
    assert catalog.pin_problems(spec.target_id, profile, 40) == []


def test_catalog_pin_checks() -> None:
    assert catalog.pin_problems("quantinuum.sim.h2-1e", TargetProfile.ADAPTIVE_RI, 2) == []
    assert catalog.pin_problems("quantinuum.sim.h2-1e", TargetProfile.BASE, 56) == []
    (too_capable,) = catalog.pin_problems("ionq.simulator", TargetProfile.ADAPTIVE_RI, 2)
    assert "runs the Base profile, not Adaptive_RI" in too_capable
    (too_big,) = catalog.pin_problems("ionq.qpu.aria-1", TargetProfile.BASE, 30)
    assert "needs 30 qubits; target ionq.qpu.aria-1 has 25" in too_big
    (no_qir,) = catalog.pin_problems("pasqal.qpu.fresnel", TargetProfile.BASE, 2)
    assert "runs no QIR" in no_qir


def test_a_retired_pin_is_refused_and_a_deprecated_one_is_a_warning() -> None:
    (retired,) = catalog.pin_problems("rigetti.qpu.cepheus-1-36q", TargetProfile.BASE, 2)
    assert "is retired" in retired and "3.7.0" in retired
    assert catalog.check_pin("ionq.qpu.aria-2", TargetProfile.BASE, 2).outcome is (
        GateOutcome.FAILED
    )
    assert catalog.pin_problems("rigetti.qpu.ankaa-3", TargetProfile.BASE, 2) == []
    (warning,) = catalog.pin_findings("rigetti.qpu.ankaa-3", TargetProfile.BASE, 2)
    assert warning.warning and "policy.acknowledge_deprecated" in warning.message
    passed = catalog.check_pin("rigetti.qpu.ankaa-3", TargetProfile.BASE, 2)
    assert passed.outcome is GateOutcome.PASSED and "deprecated" in passed.message


def test_an_unknown_target_suggests_the_close_ones() -> None:
    result = catalog.check_pin("ionq.qpu.aria-9", TargetProfile.BASE, 2)
    assert result.outcome is GateOutcome.FAILED
    assert "unknown target 'ionq.qpu.aria-9'; did you mean ionq.qpu.aria-1" in result.message
    assert "ionq.qpu.aria-2" not in result.message  # retired ids are never suggested


def test_service_reported_figures_override_the_catalog() -> None:
    reported = {"reported_profile": TargetProfile.ADAPTIVE_RI, "reported_qubits": 4}
    assert catalog.pin_problems("acme.qpu.one", TargetProfile.BASE, 2, **reported) == []
    (problem,) = catalog.pin_problems("ionq.simulator", TargetProfile.BASE, 5, **reported)
    assert "has 4 (service)" in problem
    shrunk = catalog.resolve("ionq.simulator", reported_qubits=11)
    assert shrunk is not None
    assert (shrunk.profile, shrunk.qubits, shrunk.source) == (TargetProfile.BASE, 11, "service")
