"""The quantum gates of one release with `QdkBackend`, against the same raw qdk calls.

The release is the bundled manifests/bell-service/1.0.0.yaml (Base profile, estimate and
smoke gates). The reference does what the gates need from qdk and nothing else, in a fresh
`qdk.Context` for the pinned profile: evaluate the program, compile the entry, estimate its
logical counts with `qdk.qre` on the same architecture, run the seeded shots. qrelease
runs them in its sandboxed gate worker process, so its time includes the round trip. The
second row repeats the comparison while the generated repo's Snapshot is held in memory,
as it is during a controller's pass: costs that grow with the process's heap (qdk's full
garbage collection after a session, say) show up there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from benchmarks.fixtures import PROJECT_ROOT, gitops
from benchmarks.harness import Context, Row, plain, ratio_row
from qrelease.model.manifest import Quantum, ReleaseManifest
from qrelease.quantum.base import GateReport, ProgramSource
from qrelease.source.loader import Loader
from qrelease.source.repo import GitRepo

TARGET = 1.2
MANIFEST = Path("manifests/bell-service/1.0.0.yaml")


def bundled_release() -> tuple[ReleaseManifest, ProgramSource]:
    """The bundled Bell release and its program, as the engine would hand them over."""
    manifest = ReleaseManifest.model_validate(
        yaml.safe_load((PROJECT_ROOT / MANIFEST).read_text(encoding="utf-8"))
    )
    program = f"manifests/{manifest.app}/{manifest.quantum.program}"
    text = (PROJECT_ROOT / program).read_text(encoding="utf-8")
    return manifest, ProgramSource(program, text)


def raw_qdk(manifest: ReleaseManifest, source: str) -> dict[str, Any]:
    """Reference: compile for the profile, estimate, run the seeded shots in a fresh Context."""
    return raw_qdk_gates(manifest.quantum, source)


def raw_qdk_gates(quantum: Quantum, source: str) -> dict[str, Any]:
    """The raw qdk calls the gates need, in a fresh Context for the pinned profile: compile,
    a qdk.qre estimate on the estimate gate's architecture, the seeded shots."""
    import qdk
    from qdk import qsharp
    from qdk.qre import estimate
    from qdk.qre.application import QSharpApplication
    from qdk.qre.models import GateBased, Litinski19Factory, SurfaceCode

    smoke = quantum.gates.smoke
    assert smoke is not None
    context = qdk.Context(target_profile=getattr(qsharp.TargetProfile, quantum.target.profile))
    context.eval(source)
    qir = str(context.compile(quantum.entry))
    counts = context.logical_counts(quantum.entry)
    architecture = GateBased(error_rate=1e-3, gate_time=50, measurement_time=100)
    table = estimate(
        QSharpApplication(counts),
        architecture,
        SurfaceCode.q() * Litinski19Factory.q(),
        max_error=1e-3,
    )
    shots = context.run(quantum.entry, smoke.shots, seed=smoke.seed)
    return {"qir": qir, "estimate": list(table), "shots": shots}


def _passed(report: GateReport) -> GateReport:
    """Fail loudly if the gates did not all pass (then the two sides did different work)."""
    if not report.passed:
        raise AssertionError(f"gates did not pass: {report.failures()}")
    return report


def run(ctx: Context) -> list[Row]:
    """Two rows: the gates alone, then with a loaded snapshot in the same process."""
    from qrelease.quantum.qdk import QdkBackend

    manifest, program = bundled_release()
    backend = QdkBackend()
    smoke = manifest.quantum.gates.smoke
    reference_name = (
        "qdk.Context(profile) + eval + compile + qdk.qre.estimate(logical_counts) "
        f"+ run({smoke.shots if smoke else 0} shots, seed)"
    )
    ours = plain(lambda: _passed(backend.run_gates(program, manifest.quantum, None)))
    reference = plain(lambda: raw_qdk(manifest, program.text))
    note = (
        f"{MANIFEST} ({manifest.quantum.target.profile}); qrelease: "
        "QdkBackend().run_gates (profile, estimate and smoke gates, fresh Context) in the "
        "sandboxed gate worker process (started by the untimed warm-up), request and report "
        "as JSON lines"
    )
    alone = ratio_row(
        ctx,
        "quantum gates of one release",
        TARGET,
        ours,
        reference,
        reference_name=reference_name,
        notes=[note],
        warmup=True,
    )
    data = gitops(ctx)
    with GitRepo(data.path) as repo:
        snapshot = Loader(repo).load(data.commits[-1])
        loaded = ratio_row(
            ctx,
            f"quantum gates, {len(snapshot.manifests):,} manifests loaded in the process",
            TARGET,
            ours,
            reference,
            reference_name=reference_name,
            notes=[
                note,
                "as in a controller pass: the Snapshot of the generated repo stays in memory "
                "while the gates run",
            ],
        )
        del snapshot
    return [alone, loaded]
