/// A Bell pair: both qubits always agree, each outcome pair half of the time.
/// Base profile: no measurement result is used to decide anything inside the program.
namespace Bell {
    /// Prepares (|00⟩ + |11⟩)/√2 and measures both qubits.
    @EntryPoint()
    operation Main() : Result[] {
        use qubits = Qubit[2];
        H(qubits[0]);
        CNOT(qubits[0], qubits[1]);
        MResetEachZ(qubits)
    }
}
