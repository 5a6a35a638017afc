/// A Bell pair made with mid-circuit measurement and a classically controlled correction.
/// Branching on a measurement result needs the Adaptive_RI profile; Base targets refuse it.
namespace BellReset {
    /// Measures a |+⟩ qubit, copies the outcome onto a second qubit by a conditional X,
    /// then measures both: the pair always agrees, "[Zero, Zero]" and "[One, One]" half each.
    @EntryPoint()
    operation Main() : Result[] {
        use (control, target) = (Qubit(), Qubit());
        H(control);
        let first = M(control);
        if first == One {
            X(target);
        }
        let second = MResetZ(target);
        Reset(control);
        [first, second]
    }
}
