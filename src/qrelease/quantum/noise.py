"""Which noise a smoke test simulates: none, the pinned target's published figures, or the
manifest's own.

`smoke.noise` is `none` (the default: an ideal simulator), `target` (the catalog's figures
for the pinned target, with their source) or `{one_qubit, two_qubit, readout, source}`.
The figures are average error rates: one- and two-qubit gate infidelities and the
state preparation and measurement (SPAM) error. qdk's noisy simulator takes Pauli noise
per gate, so each infidelity r becomes a depolarizing channel whose average infidelity is
r: total Pauli probability 3r/2 on one qubit, 5r/4 on two (a uniform Pauli channel on d
dimensions has average infidelity p·d/(d+1)). The readout error flips measurement
results. A Toffoli, which qdk simulates as one gate, gets the error of its standard
decomposition into 6 CNOTs and 9 one-qubit gates, as three-qubit depolarizing noise.
These are the usual simple models, not a device calibration: crosstalk, leakage, idling
and coherent errors are left out, so a real device does at most this well.
"""

from __future__ import annotations

from dataclasses import dataclass

from qrelease.model.manifest import SmokeGate
from qrelease.quantum import catalog

ONE_QUBIT_GATES = (
    "x", "y", "z", "h", "s", "s_adj", "t", "t_adj", "sx", "sx_adj", "rx", "ry", "rz",
)  # fmt: skip
TWO_QUBIT_GATES = ("cx", "cy", "cz", "rxx", "ryy", "rzz", "swap")
MEASUREMENTS = ("mz", "mresetz")


class NoiseProblem(Exception):
    """`smoke.noise` cannot be honoured (a target without published figures, say)."""


@dataclass(frozen=True)
class NoiseModel:
    """Resolved error rates and where they come from.

    >>> model = NoiseModel(0.0005, 0.004, 0.0039, "catalog")
    >>> round(model.depolarizing_one, 5), round(model.depolarizing_two, 5)
    (0.00075, 0.005)
    """

    one_qubit: float
    two_qubit: float
    readout: float
    source: str

    @property
    def depolarizing_one(self) -> float:
        """Total Pauli error probability per one-qubit gate."""
        return min(0.75, 1.5 * self.one_qubit)

    @property
    def depolarizing_two(self) -> float:
        """Total Pauli error probability per two-qubit gate."""
        return min(15 / 16, 1.25 * self.two_qubit)

    @property
    def depolarizing_toffoli(self) -> float:
        """Total Pauli error probability per Toffoli (6 CNOTs and 9 one-qubit gates)."""
        error = 1 - (1 - self.two_qubit) ** 6 * (1 - self.one_qubit) ** 9
        return min(63 / 64, 9 / 8 * error)

    def as_json(self) -> dict[str, float | str]:
        """The figures, the channel probabilities used and the source, for gate details."""
        return {
            "one_qubit": self.one_qubit,
            "two_qubit": self.two_qubit,
            "readout": self.readout,
            "depolarizing_one": self.depolarizing_one,
            "depolarizing_two": self.depolarizing_two,
            "depolarizing_toffoli": self.depolarizing_toffoli,
            "source": self.source,
        }


def resolve_noise(smoke: SmokeGate, target_id: str) -> NoiseModel | None:
    """The noise a smoke test simulates (None: noiseless); raises NoiseProblem.

    >>> from qrelease.model.manifest import SmokeGate
    >>> smoke = SmokeGate(expect={"Zero": 1.0}, noise="target")
    >>> resolve_noise(smoke, "ionq.qpu.aria-1").two_qubit
    0.004
    >>> resolve_noise(smoke, "ionq.simulator") is None
    True
    """
    noise = smoke.noise
    if noise == "none":
        return None
    if noise != "target":
        assert not isinstance(noise, str)
        return NoiseModel(noise.one_qubit, noise.two_qubit, noise.readout, noise.source)
    spec = catalog.resolve(target_id)
    if spec is None:
        raise NoiseProblem(f"noise: target: {target_id} is not in the catalog")
    if spec.noise is not None:
        figures = spec.noise
        source = f"catalog ({target_id}, checked {figures.checked}): {figures.reference}"
        return NoiseModel(figures.one_qubit, figures.two_qubit, figures.readout, source)
    if spec.noiseless:
        return None
    raise NoiseProblem(
        f"noise: target: the catalog has no published noise figures for {target_id}"
        f" ({spec.note or 'none found'}); give smoke.noise as "
        "{one_qubit: …, two_qubit: …, readout: …, source: …}"
    )


def describe(model: NoiseModel | None, smoke: SmokeGate, target_id: str) -> str:
    """How the shots were simulated, for the gate's message.

    >>> from qrelease.model.manifest import SmokeGate
    >>> describe(None, SmokeGate(expect={"Zero": 1.0}), "ionq.simulator")
    ''
    """
    if model is None:
        if smoke.noise == "target":
            return f" (noiseless: {target_id} is an ideal simulator)"
        return ""
    return (
        f" under noise {model.one_qubit:g}/{model.two_qubit:g}/{model.readout:g}"
        f" (1q/2q/readout error, {'the target' if smoke.noise == 'target' else 'the manifest'})"
    )
