/// A three-bit quantum random number generator: every 3-bit string equally likely.
/// Base profile: qubits in superposition are measured once, nothing branches on a result.
namespace Qrng {
    /// Puts three qubits in |+⟩ and measures them, giving one of 8 outcomes with p = 1/8.
    @EntryPoint()
    operation Main() : Result[] {
        use qubits = Qubit[3];
        ApplyToEach(H, qubits);
        MResetEachZ(qubits)
    }
}
