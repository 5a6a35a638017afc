"""A Bell pair written with Qiskit.

qrelease executes this module only inside its sandboxed gate worker, calls
`make_circuit()`, converts the circuit to OpenQASM 3 with qdk's Qiskit backend and gates
the result like any other program. The module may import qiskit and the standard library.
"""

from qiskit import QuantumCircuit


def make_circuit() -> QuantumCircuit:
    """H on qubit 0, CNOT 0 -> 1, measure both into c[0] and c[1]."""
    circuit = QuantumCircuit(2, 2, name="bell")
    circuit.h(0)
    circuit.cx(0, 1)
    circuit.measure([0, 1], [0, 1])
    return circuit
