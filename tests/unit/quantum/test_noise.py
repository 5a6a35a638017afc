"""Which noise a smoke test simulates, and how published error rates become qdk's channels."""

from __future__ import annotations

import pytest

from qrelease.model.manifest import SmokeGate
from qrelease.quantum.noise import NoiseProblem, describe, resolve_noise

EXPECT = {"[Zero, Zero]": 0.5, "[One, One]": 0.5}


def smoke(noise: object) -> SmokeGate:
    return SmokeGate.model_validate({"expect": EXPECT, "noise": noise})


def test_none_is_noiseless_and_the_default() -> None:
    assert resolve_noise(SmokeGate(expect=EXPECT), "ionq.qpu.aria-1") is None
    assert resolve_noise(smoke("none"), "ionq.qpu.aria-1") is None


def test_target_takes_the_catalogs_published_figures_with_their_source() -> None:
    model = resolve_noise(smoke("target"), "quantinuum.qpu.h2-1")
    assert model is not None
    assert (model.one_qubit, model.two_qubit, model.readout) == (1.8e-5, 1.0e-3, 1.6e-3)
    assert "arXiv:2305.03828" in model.source and "checked 2026-12-03" in model.source
    # average infidelity r -> uniform Pauli channel with total probability r·(d+1)/d
    assert model.depolarizing_one == pytest.approx(1.5 * 1.8e-5)
    assert model.depolarizing_two == pytest.approx(1.25 * 1.0e-3)
    assert "under noise 1.8e-05/0.001/0.0016" in describe(model, smoke("target"), "x")


def test_an_ideal_simulator_target_is_noiseless_and_says_so() -> None:
    assert resolve_noise(smoke("target"), "ionq.simulator") is None
    assert "ideal simulator" in describe(None, smoke("target"), "ionq.simulator")


def test_a_target_without_published_figures_is_refused() -> None:
    with pytest.raises(NoiseProblem, match=r"no published noise figures for ionq\.qpu\.forte-1"):
        resolve_noise(smoke("target"), "ionq.qpu.forte-1")


def test_figures_in_the_manifest_are_used_as_given() -> None:
    figures = {"one_qubit": 0.001, "two_qubit": 0.02, "readout": 0.01, "source": "bench 42"}
    model = resolve_noise(smoke(figures), "ionq.qpu.forte-1")
    assert model is not None and model.source == "bench 42" and model.two_qubit == 0.02
    with pytest.raises(ValueError, match=r"less than or equal to 0\.5"):
        smoke({"one_qubit": 0.9, "two_qubit": 0.0, "readout": 0.0})
