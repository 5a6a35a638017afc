// A three-qubit GHZ state: (|000> + |111>) / sqrt(2), measured.
// qrelease compiles it with qdk for the pinned profile, estimates it, and runs the
// smoke test on the simulator, exactly as it does for Q#. Only the standard includes
// (stdgates.inc, qelib1.inc) are allowed: qrelease reads nothing else from disk.
OPENQASM 3.0;
include "stdgates.inc";

qubit[3] q;
bit[3] c;

h q[0];
cx q[0], q[1];
cx q[1], q[2];
c = measure q;
