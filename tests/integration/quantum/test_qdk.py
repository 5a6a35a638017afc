"""The local backend with the real qdk: the example programs, broken programs and bad pins."""

from __future__ import annotations

import os

os.environ.setdefault("QDK_PYTHON_TELEMETRY", "none")

import hashlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from qrelease.model.manifest import Quantum
from qrelease.model.vocabulary import Availability, GateOutcome
from qrelease.quantum.base import EstimateSummary, GateReport, GateResult, ProgramSource
from qrelease.quantum.qdk import QdkBackend, diagnostics_of
from qrelease.quantum.sandbox import GateLimits, GateSandbox
from tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.slow

ROOT = PROJECT_ROOT
BELL = {"[Zero, Zero]": 0.5, "[One, One]": 0.5}
QRNG = {
    f"[{a}, {b}, {c}]": 0.125
    for a in ("Zero", "One")
    for b in ("Zero", "One")
    for c in ("Zero", "One")
}
BUDGET = {"max_physical_qubits": 20_000, "max_runtime": "1ms"}


def example(app: str, name: str) -> ProgramSource:
    """An example program as the controller reads it from the GitOps repo."""
    path = f"manifests/{app}/programs/{name}"
    return ProgramSource(path, (ROOT / path).read_text())


def quantum(
    entry: str,
    target: str,
    profile: str,
    expect: dict[str, float] | None = None,
    estimate: dict[str, Any] | None = None,
    **smoke: Any,
) -> Quantum:
    """The quantum section of a manifest; gates are configured only when given."""
    gates: dict[str, Any] = {}
    if expect is not None:
        gates["smoke"] = {"shots": 1500, "seed": 7, "expect": expect, **smoke}  # QRNG needs 1422
    if estimate is not None:
        gates["estimate"] = estimate
    return Quantum.model_validate(
        {
            "program": "programs/program.qs",
            "entry": entry,
            "target": {"id": target, "profile": profile},
            "gates": gates,
        }
    )


def gate(report: GateReport, name: str) -> GateResult:
    """One gate's result from a report."""
    (result,) = (r for r in report.results if r.gate == name)
    return result


def run(
    program: ProgramSource, config: Quantum, baseline: EstimateSummary | None = None
) -> GateReport:
    """All gates for one release on a fresh backend."""
    return QdkBackend().run_gates(program, config, baseline)


@pytest.fixture(scope="module")
def bell_report() -> GateReport:
    """The Bell example pinned to IonQ's simulator with every gate configured."""
    config = quantum("Bell.Main()", "ionq.simulator", "Base", BELL, BUDGET)
    return run(example("bell-service", "bell.qs"), config)


def test_bell_passes_every_gate(bell_report: GateReport) -> None:
    assert bell_report.passed, bell_report.failures()
    assert [r.outcome for r in bell_report.results] == [GateOutcome.PASSED] * 3
    assert "2 of 29 qubits" in gate(bell_report, "profile").message
    assert bell_report.estimate == EstimateSummary(physical_qubits=441, runtime_ns=3500)
    assert gate(bell_report, "estimate").details["estimator"].startswith("qdk.qre: GateBased")
    assert set(gate(bell_report, "smoke").details["observed"]) == set(BELL)


def test_bell_report_carries_the_qir_and_its_digest(bell_report: GateReport) -> None:
    assert bell_report.qir is not None
    assert '"qir_profiles"="base_profile"' in bell_report.qir
    assert '"required_num_qubits"="2"' in bell_report.qir
    assert bell_report.qir_sha256 == hashlib.sha256(bell_report.qir.encode()).hexdigest()


def test_dynamic_program_pinned_to_base_fails_with_code_and_location() -> None:
    config = quantum("BellReset.Main()", "ionq.simulator", "Base", BELL, BUDGET)
    report = run(example("bell-service", "bell_reset.qs"), config)
    profile = gate(report, "profile")
    assert profile.outcome is GateOutcome.FAILED
    assert "Qdk.Qsc.CapabilitiesCk.UseOfDynamicBool" in profile.message
    assert "manifests/bell-service/programs/bell_reset.qs:11:12" in profile.message
    assert profile.details["diagnostics"][0]["code"] == "Qdk.Qsc.CapabilitiesCk.UseOfDynamicBool"
    for skipped in ("estimate", "smoke"):
        assert gate(report, skipped).outcome is GateOutcome.SKIPPED
        assert gate(report, skipped).message == "not run: profile gate failed"
    assert report.qir is None
    assert report.qir_sha256 is None


def test_dynamic_program_pinned_to_adaptive_ri_passes() -> None:
    config = quantum("BellReset.Main()", "quantinuum.sim.h2-1e", "Adaptive_RI", BELL, BUDGET)
    report = run(example("bell-service", "bell_reset.qs"), config)
    assert report.passed, report.failures()
    assert report.qir is not None
    assert '"qir_profiles"="adaptive_profile"' in report.qir


def test_qrng_is_uniform_by_chi_square() -> None:
    config = quantum("Qrng.Main()", "rigetti.qpu.ankaa-3", "Base", QRNG, method="chi2", shots=800)
    report = run(example("qrng", "qrng.qs"), config)
    assert report.passed, report.failures()
    assert len(gate(report, "smoke").details["observed"]) == 8


def test_estimate_over_budget_fails_and_growth_is_reported() -> None:
    config = quantum("Bell.Main()", "ionq.simulator", "Base", estimate={"max_physical_qubits": 400})
    report = run(example("bell-service", "bell.qs"), config, EstimateSummary(300, 5000))
    estimate = gate(report, "estimate")
    assert estimate.outcome is GateOutcome.FAILED
    assert "physical qubits 441 > budget 400 (+47.0% vs baseline)" in estimate.message
    assert "runtime 3.5 µs (-30.0% vs baseline)" in estimate.message
    assert estimate.details["growth_percent"] == {"qubits": 47.0, "runtime": -30.0}
    assert report.estimate == EstimateSummary(441, 3500)
    assert gate(report, "smoke").outcome is GateOutcome.SKIPPED


TOFFOLIS = """namespace Toffolis {
    operation Main() : Result[] {
        use qs = Qubit[10];
        for i in 0..9 { H(qs[i]); T(qs[i]); Rx(0.3, qs[i]); }
        for i in 0..8 { CCNOT(qs[i], qs[i + 1], qs[(i + 2) % 10]); }
        MResetEachZ(qs)
    }
}"""


def test_the_estimate_is_judged_on_qres_frontier_of_qubits_and_runtime() -> None:
    program = ProgramSource("manifests/t/programs/toffolis.qs", TOFFOLIS)
    unbounded = quantum("Toffolis.Main()", "qdk.sim.base", "Base", estimate={})
    estimate = gate(run(program, unbounded), "estimate")
    frontier = estimate.details["frontier"]
    assert len(frontier) > 1  # more qubits buy a shorter runtime
    qubits = [point["physical_qubits"] for point in frontier]
    runtimes = [point["runtime_ns"] for point in frontier]
    assert qubits == sorted(qubits) and runtimes == sorted(runtimes, reverse=True)
    assert estimate.details["physical_qubits"] == qubits[0]  # no budget: the fewest qubits
    too_few = {"max_physical_qubits": qubits[0] - 1}
    over = gate(
        run(program, quantum("Toffolis.Main()", "qdk.sim.base", "Base", estimate=too_few)),
        "estimate",
    )
    assert over.outcome is GateOutcome.FAILED  # no point of the frontier fits


def test_runtime_budget_is_checked() -> None:
    config = quantum("Qrng.Main()", "ionq.simulator", "Base", estimate={"max_runtime": "0s"})
    estimate = gate(run(example("qrng", "qrng.qs"), config), "estimate")
    assert estimate.outcome is GateOutcome.FAILED
    assert "runtime 7.35 µs > budget 0 ns" in estimate.message


def test_smoke_with_a_wrong_expected_distribution_fails() -> None:
    wrong = {"[Zero, One]": 0.5, "[One, Zero]": 0.5}
    config = quantum("Bell.Main()", "ionq.simulator", "Base", wrong)
    smoke = gate(run(example("bell-service", "bell.qs"), config), "smoke")
    assert smoke.outcome is GateOutcome.FAILED
    assert smoke.details["distance"] == 1.0
    assert "unexpected outcomes: [" in smoke.message


def test_same_seed_gives_the_same_histogram() -> None:
    program = example("qrng", "qrng.qs")
    seven = quantum("Qrng.Main()", "ionq.simulator", "Base", QRNG, seed=7, shots=300)
    eight = quantum("Qrng.Main()", "ionq.simulator", "Base", QRNG, seed=8, shots=300)
    first, again, other = (gate(run(program, c), "smoke") for c in (seven, seven, eight))
    assert first.details["observed"] == again.details["observed"]
    assert first.details["observed"] != other.details["observed"]


def test_shots_in_several_blocks_add_up_and_match_in_and_out_of_the_sandbox() -> None:
    config = quantum("Qrng.Main()", "ionq.simulator", "Base", QRNG, shots=2500)  # 3 blocks
    in_process = QdkBackend(isolated=False)
    here = gate(in_process.run_gates(example("qrng", "qrng.qs"), config, None), "smoke")
    assert sum(here.details["observed"].values()) == 2500
    sandboxed = gate(run(example("qrng", "qrng.qs"), config), "smoke")
    assert sandboxed.details["observed"] == here.details["observed"]


# -- the sandbox: a runaway program fails its own gates and nothing else -----------------

FOREVER = """namespace Forever {
    operation Main() : Result {
        use q = Qubit();
        mutable n = 0;
        while n >= 0 { set n += 1; }
        M(q)
    }
}
"""


def test_a_program_that_never_ends_is_stopped_at_the_time_limit_and_the_next_runs() -> None:
    sandbox = GateSandbox(GateLimits(seconds=5.0))
    backend = QdkBackend(sandbox)
    try:
        config = quantum("Forever.Main()", "ionq.simulator", "Base", BELL)
        report = backend.run_gates(
            ProgramSource("manifests/x/programs/f.qs", FOREVER), config, None
        )
        (stopped,) = report.results
        assert (stopped.gate, stopped.outcome) == ("sandbox", GateOutcome.FAILED)
        assert "longer than 5 s" in stopped.message and not report.passed
        bell = quantum("Bell.Main()", "ionq.simulator", "Base", BELL, BUDGET)
        assert backend.run_gates(example("bell-service", "bell.qs"), bell, None).passed
        assert sandbox.started == 2  # the stuck worker was killed and a fresh one started
    finally:
        sandbox.close()


WIDE = """namespace Wide {
    operation Main() : Result {
        let big = Repeated(1, 400000000);
        use q = Qubit();
        if big[Length(big) - 1] == 1 { X(q); }
        MResetZ(q)
    }
}
"""


def test_an_orphaned_worker_in_a_runaway_program_ends_itself_after_its_limit() -> None:
    import signal
    import subprocess
    import sys

    from qrelease.quantum.sandbox import WORKER_MODULE, request_json

    argv = [sys.executable, "-m", WORKER_MODULE, "1024", "1"]  # alarm at 1 s + the margin
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as worker:
        assert worker.stdin is not None and worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
        config = quantum("Forever.Main()", "ionq.simulator", "Base", BELL)
        program = ProgramSource("manifests/x/programs/f.qs", FOREVER)
        worker.stdin.write(request_json(program, config, None) + "\n")
        worker.stdin.flush()  # and nobody is left to kill it at the time limit
        assert worker.wait(timeout=60) == -signal.SIGALRM


def test_a_program_that_outgrows_the_memory_limit_fails_its_gates() -> None:
    sandbox = GateSandbox(GateLimits(seconds=120.0, memory_mib=1024))
    try:
        config = quantum("Wide.Main()", "ionq.simulator", "Base", {"One": 1.0}, shots=1)
        program = ProgramSource("manifests/x/programs/wide.qs", WIDE)
        report = QdkBackend(sandbox).run_gates(program, config, None)
        assert not report.passed
        problems = " ".join(r.message for r in report.failures())
        assert "memory" in problems, problems
    finally:
        sandbox.close()


def test_a_worker_that_dies_between_releases_is_replaced() -> None:
    sandbox = GateSandbox()
    try:
        bell = quantum("Bell.Main()", "ionq.simulator", "Base", BELL, BUDGET)
        assert QdkBackend(sandbox).run_gates(example("bell-service", "bell.qs"), bell, None).passed
        assert sandbox._process is not None
        sandbox._process.kill()
        sandbox._process.wait()
        report = QdkBackend(sandbox).run_gates(example("bell-service", "bell.qs"), bell, None)
        assert report.passed and sandbox.started == 2
    finally:
        sandbox.close()


def test_syntax_error_is_a_failed_gate_with_its_place() -> None:
    text = "namespace Broken {\n    operation Main() : Result {\n        use q = Qubit()\n"
    text += "        M(q)\n    }\n}\n"
    program = ProgramSource("manifests/broken/programs/broken.qs", text)
    report = run(program, quantum("Broken.Main()", "ionq.simulator", "Base", BELL))
    profile = gate(report, "profile")
    assert profile.outcome is GateOutcome.FAILED
    assert profile.message.startswith(
        "manifests/broken/programs/broken.qs:4:9: Qdk.Qsc.Parse.Token: syntax error"
    )


def test_every_type_error_is_reported() -> None:
    text = "namespace T { operation Main() : Result { let x : Int = 1.0; let y : Bool = 2; Zero } }"
    report = run(ProgramSource("t.qs", text), quantum("T.Main()", "ionq.simulator", "Base"))
    diagnostics = gate(report, "profile").details["diagnostics"]
    assert [d["where"] for d in diagnostics] == ["t.qs:1:57", "t.qs:1:77"]
    assert all(d["code"] == "Qdk.Qsc.TypeCk.TyMismatch" for d in diagnostics)


def test_missing_entry_points_at_the_entry_expression() -> None:
    config = quantum("Bell.Nope()", "ionq.simulator", "Base")
    profile = gate(run(example("bell-service", "bell.qs"), config), "profile")
    assert profile.outcome is GateOutcome.FAILED
    assert "entry Bell.Nope():1:1: Qdk.Qsc.Resolve.NotFound" in profile.message


def test_qdk_internal_panic_is_a_failed_gate_and_qdk_keeps_working() -> None:
    text = 'namespace P { operation Main() : Result { fail "boom"; } }'
    report = run(ProgramSource("p.qs", text), quantum("P.Main()", "ionq.simulator", "Base", BELL))
    assert gate(report, "profile").outcome is GateOutcome.FAILED
    assert "qdk internal error" in gate(report, "profile").message
    config = quantum("Bell.Main()", "ionq.simulator", "Base", BELL)
    assert run(example("bell-service", "bell.qs"), config).passed


def test_runtime_error_in_simulation_fails_the_smoke_gate() -> None:
    text = "namespace L {\n operation Main() : Result {\n use (a, b) = (Qubit(), Qubit());\n"
    text += " X(b);\n M(a)\n }\n}\n"
    report = run(ProgramSource("l.qs", text), quantum("L.Main()", "ionq.simulator", "Base", BELL))
    assert gate(report, "profile").outcome is GateOutcome.PASSED
    smoke = gate(report, "smoke")
    assert smoke.outcome is GateOutcome.FAILED
    assert "l.qs:3:25: Qdk.Qsc.Eval.ReleasedQubitNotZero" in smoke.message


def test_unknown_target_fails_the_profile_gate() -> None:
    config = quantum("Bell.Main()", "acme.qpu.one", "Base", BELL)
    report = run(example("bell-service", "bell.qs"), config)
    profile = gate(report, "profile")
    assert profile.outcome is GateOutcome.FAILED
    assert "unknown target 'acme.qpu.one' (qrelease targets lists the catalog)" in profile.message
    assert report.qir is not None


def test_program_wider_than_the_target_fails_the_profile_gate() -> None:
    text = "namespace Ghz { operation Main() : Result[] { use qs = Qubit[30]; H(qs[0]);"
    text += " for i in 1..29 { CNOT(qs[0], qs[i]); } MResetEachZ(qs) } }"
    config = quantum("Ghz.Main()", "ionq.qpu.aria-1", "Base", {"[]": 1.0})
    profile = gate(run(ProgramSource("ghz.qs", text), config), "profile")
    assert profile.outcome is GateOutcome.FAILED
    assert "program needs 30 qubits; target ionq.qpu.aria-1 has 25" in profile.message


def test_unconfigured_gates_are_skipped() -> None:
    report = run(
        example("bell-service", "bell.qs"), quantum("Bell.Main()", "ionq.simulator", "Base")
    )
    assert [r.outcome for r in report.results] == [
        GateOutcome.PASSED,
        GateOutcome.SKIPPED,
        GateOutcome.SKIPPED,
    ]
    assert report.passed


def test_concurrent_releases_do_not_share_interpreter_state() -> None:
    bell = (
        example("bell-service", "bell.qs"),
        quantum("Bell.Main()", "ionq.simulator", "Base", BELL),
    )
    qrng = (example("qrng", "qrng.qs"), quantum("Qrng.Main()", "ionq.simulator", "Base", QRNG))
    with ThreadPoolExecutor(max_workers=4) as pool:
        reports = list(pool.map(lambda job: run(*job), [bell, qrng] * 3))
    assert all(report.passed for report in reports), [r.failures() for r in reports]


def test_target_status_comes_from_the_catalog() -> None:
    backend = QdkBackend()
    forte = backend.target_status("ionq.qpu.forte-1")
    assert (forte.availability, forte.profile, forte.qubits) == (Availability.AVAILABLE, "Base", 36)
    unknown = backend.target_status("quantinuum.qpu.h2-9")
    assert unknown.availability is Availability.UNKNOWN
    assert "did you mean quantinuum.qpu.h2-2 or quantinuum.qpu.h2-1" in unknown.message
    retired = backend.target_status("rigetti.qpu.cepheus-1-36q")
    assert retired.availability is Availability.UNAVAILABLE
    assert retired.message.startswith("retired: removed from the Azure SDK")


def test_diagnostics_without_a_code_keep_the_first_line() -> None:
    (diagnostic,) = diagnostics_of("something odd\nmore", "x.qs", "X.Main()")
    assert diagnostic.render() == "qdk: something odd"


def test_neighbouring_seeds_draw_independent_shots() -> None:
    coin = ProgramSource(
        "coin.qs", "operation Main() : Result { use q = Qubit(); H(q); MResetZ(q) }"
    )

    def zeros(seed: int) -> int:
        expect = {"Zero": 0.5, "One": 0.5}
        config = quantum("Main()", "ionq.simulator", "Base", expect, seed=seed, shots=1000)
        observed = gate(run(coin, config), "smoke").details["observed"]
        return int(observed.get("Zero", 0))

    # seeded as qdk does (shot i with seed + i), seeds 7 and 8 share 999 of 1,000 shots and
    # their counts differ by at most one; hashed block seeds draw independent samples
    assert abs(zeros(7) - zeros(8)) > 1
    assert zeros(7) == zeros(7)  # still reproducible


ECHO = """namespace Echo {
    /// Three qubits flipped to One, then 40 CNOT pairs that cancel out: ideally always
    /// [One, One, One]; on a device, every CNOT adds its error.
    operation Main() : Result[] {
        use qs = Qubit[3];
        ApplyToEach(X, qs);
        for _ in 1..20 {
            CNOT(qs[0], qs[1]); CNOT(qs[0], qs[1]);
            CNOT(qs[1], qs[2]); CNOT(qs[1], qs[2]);
        }
        MResetEachZ(qs)
    }
}"""


def test_a_program_that_only_works_without_noise_fails_under_the_targets_noise() -> None:
    program = ProgramSource("manifests/echo/programs/echo.qs", ECHO)
    expect = {"[One, One, One]": 1.0}

    def smoke(noise: object) -> GateResult:
        config = quantum("Echo.Main()", "ionq.qpu.aria-1", "Base", expect, noise=noise)
        return gate(run(program, config), "smoke")

    noiseless = smoke("none")
    assert noiseless.outcome is GateOutcome.PASSED, noiseless.message
    assert noiseless.details["distance"] == 0.0 and noiseless.details["noise"] is None
    noisy = smoke("target")  # IonQ Aria's published 99.6% two-qubit fidelity
    assert noisy.outcome is GateOutcome.FAILED, noisy.message
    assert noisy.details["distance"] > 0.15
    assert noisy.details["noise"]["two_qubit"] == 0.004
    assert "provider-ionq" in noisy.details["noise"]["source"]
    assert "under noise 0.0005/0.004/0.0039 (1q/2q/readout error, the target)" in noisy.message
    gentle = {"one_qubit": 1e-5, "two_qubit": 1e-4, "readout": 1e-4, "source": "a better QPU"}
    assert smoke(gentle).outcome is GateOutcome.PASSED  # figures in the manifest are used


def test_noise_target_without_published_figures_fails_the_smoke_gate() -> None:
    config = quantum("Bell.Main()", "ionq.qpu.forte-1", "Base", BELL, noise="target")
    smoke = gate(run(example("bell-service", "bell.qs"), config), "smoke")
    assert smoke.outcome is GateOutcome.FAILED
    assert "no published noise figures for ionq.qpu.forte-1" in smoke.message


LOOP = """namespace Loop {
    /// Repeat-until-success: a loop on a measurement result needs Adaptive or Unrestricted.
    operation Main() : Result[] {
        use (coin, flag) = (Qubit(), Qubit());
        mutable tries = 0;
        repeat { H(coin); set tries += 1; } until M(coin) == One or tries > 20;
        Reset(coin);
        X(flag);
        [MResetZ(flag)]
    }
}"""


def test_local_simulator_targets_take_programs_no_azure_target_runs() -> None:
    program = ProgramSource("manifests/loop/programs/loop.qs", LOOP)
    expect = {"[One]": 1.0}
    adaptive = run(program, quantum("Loop.Main()", "qdk.sim.adaptive", "Adaptive", expect))
    assert adaptive.passed, adaptive.failures()
    assert "compiled for Adaptive; fits qdk.sim.adaptive" in gate(adaptive, "profile").message
    # qdk 1.33 cannot generate QIR for Unrestricted: said plainly, not a cryptic qdk message
    unrestricted = quantum("Loop.Main()", "qdk.sim.unrestricted", "Unrestricted", expect)
    profile = gate(run(program, unrestricted), "profile")
    assert profile.outcome is GateOutcome.FAILED
    assert "generates no QIR for the Unrestricted profile" in profile.message
    assert "qdk.sim.adaptive" in profile.message


# -- OpenQASM 3 and Qiskit programs --------------------------------------------------------

GHZ = {"[Zero, Zero, Zero]": 0.5, "[One, One, One]": 0.5}
LANGUAGES = "examples/languages/manifests"


def language_example(app: str, name: str) -> ProgramSource:
    """A program of the languages example, under the repo path a GitOps repo would give it."""
    path = f"manifests/{app}/programs/{name}"
    return ProgramSource(path, (ROOT / LANGUAGES / app / "programs" / name).read_text())


def other_kind(
    program: str, expect: dict[str, float], profile: str = "Base", **extra: Any
) -> Quantum:
    """The quantum section of an OpenQASM (`.qasm`) or Qiskit (`.py`, with `circuit`) release."""
    smoke = {"shots": 1000, "seed": 7, "expect": expect}
    return Quantum.model_validate(
        {
            "program": program,
            "target": {
                "id": "ionq.simulator" if profile == "Base" else "quantinuum.sim.h2-1e",
                "profile": profile,
            },
            "gates": {"estimate": {"max_physical_qubits": 30_000}, "smoke": smoke},
            **extra,
        }
    )


def test_an_openqasm_program_goes_through_every_gate_like_q_sharp() -> None:
    program = language_example("ghz-qasm", "ghz.qasm")
    report = run(program, other_kind("programs/ghz.qasm", GHZ))
    assert report.passed, report.results
    assert gate(report, "profile").message.startswith("OpenQASM 3 compiled for Base")
    assert gate(report, "profile").details["program_kind"] == "openqasm"
    assert gate(report, "estimate").outcome is GateOutcome.PASSED
    assert gate(report, "smoke").details["distance"] < 0.061
    assert report.qir is not None and "ENTRYPOINT" in report.qir
    assert report.qir_sha256 == hashlib.sha256(report.qir.encode()).hexdigest()


def test_an_openqasm_syntax_error_is_reported_at_its_line() -> None:
    program = language_example("ghz-qasm", "ghz.qasm")
    broken = ProgramSource(program.path, program.text.replace("cx q[0], q[1];", "cx q[0], q[1]"))
    report = run(broken, other_kind("programs/ghz.qasm", GHZ))
    line = 1 + program.text.splitlines().index("cx q[1], q[2];")
    assert gate(report, "profile").outcome is GateOutcome.FAILED
    assert f"{program.path}:{line}:1: Qdk.Qasm.Parser.Token" in gate(report, "profile").message
    assert gate(report, "smoke").outcome is GateOutcome.SKIPPED


def test_an_openqasm_capability_error_names_the_line_and_the_profile_gate_fails() -> None:
    text = (
        'OPENQASM 3.0;\ninclude "stdgates.inc";\nqubit[2] q;\nbit[2] c;\nh q[0];\n'
        "c[0] = measure q[0];\nif (c[0]) { x q[1]; }\nc[1] = measure q[1];\n"
    )
    program = ProgramSource("manifests/a/programs/reset.qasm", text)
    expect = {"[Zero, Zero]": 0.5, "[One, One]": 0.5}
    on_base = run(program, other_kind("programs/reset.qasm", expect))
    message = gate(on_base, "profile").message
    assert f"{program.path}:7:5: Qdk.Qsc.CapabilitiesCk.UseOfDynamicBool" in message
    on_adaptive = run(program, other_kind("programs/reset.qasm", expect, profile="Adaptive_RI"))
    assert on_adaptive.passed, on_adaptive.results


def test_an_openqasm_include_outside_the_standard_ones_is_refused_unread(tmp_path: Path) -> None:
    secret = tmp_path / "secret.inc"
    secret.write_text("the contents of a file on the controller's host\n")
    text = (
        f'OPENQASM 3.0;\ninclude "stdgates.inc";\ninclude "{secret}";\n'
        "qubit q;\nbit c;\nc = measure q;\n"
    )
    report = run(
        ProgramSource("manifests/a/programs/x.qasm", text),
        other_kind("programs/x.qasm", {"Zero": 1.0}),
    )
    message = gate(report, "profile").message
    assert "manifests/a/programs/x.qasm:3:1" in message and "only the standard includes" in message
    assert "contents of a file" not in message


def test_a_qiskit_circuit_is_converted_in_the_worker_and_gated() -> None:
    program = language_example("bell-qiskit", "bell_circuit.py")
    config = other_kind("programs/bell_circuit.py", BELL, circuit="make_circuit")
    report = run(program, config)
    assert report.passed, report.results
    assert gate(report, "profile").message.startswith("Qiskit compiled for Base")
    assert gate(report, "profile").details["qiskit"].count(".") == 2


def test_a_qiskit_module_that_prints_does_not_break_the_worker_protocol() -> None:
    program = language_example("bell-qiskit", "bell_circuit.py")
    noisy = ProgramSource(program.path, program.text + "\nprint('hello from the module')\n")
    config = other_kind("programs/bell_circuit.py", BELL, circuit="make_circuit")
    assert run(noisy, config).passed


@pytest.mark.parametrize(
    ("change", "code", "where"),
    [
        (("circuit.h(0)", "circuit.hh(0)"), "Python.AttributeError", ":14:1"),
        (("def make_circuit", "def make_circuit(:"), "Python.SyntaxError", ":11:"),
        (("return circuit", "return 42"), "Qiskit.Circuit", "circuit make_circuit"),
    ],
)
def test_a_broken_qiskit_module_fails_the_profile_gate_at_its_line(
    change: tuple[str, str], code: str, where: str
) -> None:
    program = language_example("bell-qiskit", "bell_circuit.py")
    broken = ProgramSource(program.path, program.text.replace(*change))
    config = other_kind("programs/bell_circuit.py", BELL, circuit="make_circuit")
    message = gate(run(broken, config), "profile").message
    assert code in message and where in message


def test_qiskit_programs_are_refused_outside_the_sandboxed_worker() -> None:
    program = language_example("bell-qiskit", "bell_circuit.py")
    config = other_kind("programs/bell_circuit.py", BELL, circuit="make_circuit")
    report = QdkBackend(isolated=False).run_gates(program, config, None)
    assert (
        "Qiskit programs run only in the sandboxed gate worker" in gate(report, "profile").message
    )


def test_the_controller_process_never_imports_qiskit() -> None:
    code = (
        "import sys\n"
        "from qrelease.quantum.qdk import QdkBackend\n"
        "from qrelease.quantum.base import ProgramSource\n"
        "from qrelease.model.manifest import Quantum, TargetProfile\n"
        f"path = {str(ROOT / LANGUAGES / 'bell-qiskit/programs/bell_circuit.py')!r}\n"
        "program = ProgramSource('manifests/b/programs/bell_circuit.py', open(path).read())\n"
        "config = Quantum.model_validate({'program': 'programs/bell_circuit.py', 'circuit': "
        "'make_circuit', 'target': {'id': 'ionq.simulator', 'profile': 'Base'}})\n"
        "backend = QdkBackend()\n"
        "assert backend.run_gates(program, config, None).passed\n"
        "assert backend.compile(program, 'make_circuit', TargetProfile.BASE).ok\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'qiskit'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
