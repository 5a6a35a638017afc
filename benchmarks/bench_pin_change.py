"""One-pin-change pass: `Engine.plan` after a commit that moves one pin, against raw git + planner.

Every app in every environment is deployed and current (a seeded MemoryDeployer and a real
Store holding Healthy observed state), the loader is warm from the previous revision, and
each repetition plans the next commit of the generated history, which changes one pin.
The reference reads only what changed (`git diff --name-only` + `cat-file --batch` +
CSafeLoader + the same models) and calls the same pure planner with observed state it
already holds in memory. Installs are not part of this row (nothing is applied).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

from benchmarks import rawgit
from benchmarks.fixtures import gitops
from benchmarks.harness import Context, Row, plain, ratio_row
from qrelease.deployers.memory import MemoryDeployer
from qrelease.engine import Backends, Engine
from qrelease.model.events import ObservedState
from qrelease.model.status import ActionKind, Availability, Health, Sync
from qrelease.planning.planner import Desired, Plan, Seen, plan
from qrelease.quantum.memory import MemoryQuantum
from qrelease.source.loader import Snapshot
from qrelease.source.repo import GitRepo
from qrelease.store.sqlite import Store

TARGET = 1.5
SEEDED_AT = datetime(2024, 1, 1, tzinfo=UTC)
REFERENCE = (
    "git diff --name-only old new + one cat-file --batch of the changed file(s) + CSafeLoader "
    "+ same models + the same planner.plan() over observed state held in memory"
)


def observed_states(snapshot: Snapshot) -> list[ObservedState]:
    """Healthy, synced observed state for every pinned (env, app) of a snapshot."""
    return [
        ObservedState(
            env=env,
            app=app,
            desired=version,
            deployed=version,
            sync=Sync.SYNCED,
            health=Health.HEALTHY,
            target="ionq.simulator",
            availability=Availability.AVAILABLE,
            revision=snapshot.revision,
            updated_at=SEEDED_AT,
            healthy_since=SEEDED_AT,
        )
        for env, model in sorted(snapshot.environments.items())
        for app, version in sorted(model.apps.items())
    ]


def seed(deployer: MemoryDeployer, store: Store, states: list[ObservedState]) -> None:
    """Make every app current in the deployer and Healthy in the store."""
    with store.transaction():
        for state in states:
            deployer.seed(state.env, state.app, current=state.deployed)
            store.put_observed(state)


def raw_desired(state: rawgit.RawState) -> Iterator[Desired]:
    """The planner's input from the reference's models, in the engine's order."""
    for _name, env in sorted(state.environments.items()):
        for app, version in sorted(env.apps.items()):
            yield Desired(env, app, version, state.manifests.get((app, version)))


def changes(the_plan: Plan) -> list[tuple[str, str, ActionKind]]:
    """What a plan would change, to check both sides decided the same."""
    return [(a.env, a.app, a.kind) for a in the_plan.changes]


class PinChange:
    """Both sides, each walking the same chain of one-pin commits."""

    def __init__(self, ctx: Context, store: Store, repo: GitRepo, chain: tuple[str, ...]) -> None:
        data = gitops(ctx)
        self.repo_path = data.path
        self.chain = chain
        self.deployer = MemoryDeployer()
        backends = Backends(lambda env: self.deployer, lambda env: MemoryQuantum())
        self.engine = Engine(repo, store, backends)
        snapshot, _ = self.engine.plan(chain[0])  # warms the loader at the base revision
        states = observed_states(snapshot)
        seed(self.deployer, store, states)
        self.raw = rawgit.load(self.repo_path, chain[0])
        self.seen = {
            (s.env, s.app): Seen(s, s.deployed, None, Availability.AVAILABLE) for s in states
        }
        self.ours: list[list[tuple[str, str, ActionKind]]] = []
        self.theirs: list[list[tuple[str, str, ActionKind]]] = []

    def plan_ours(self) -> None:
        """qrelease: Engine.plan at the next commit."""
        _snapshot, the_plan = self.engine.plan(self.chain[len(self.ours) + 1])
        self.ours.append(changes(the_plan))

    def plan_reference(self) -> None:
        """Reference: read the diff, update the models in memory, call the planner."""
        old, new = self.chain[len(self.theirs)], self.chain[len(self.theirs) + 1]
        rawgit.apply_change(self.repo_path, self.raw, old, new)
        desired = list(raw_desired(self.raw))
        the_plan = plan(new, desired, self.seen, self.raw.environments)
        self.theirs.append(changes(the_plan))


def run(ctx: Context) -> list[Row]:
    """One row: the pass that plans a one-pin change."""
    data = gitops(ctx)
    reps = min(ctx.reps, len(data.commits) - 2)
    chain = data.commits[-(reps + 2) :]  # one spare commit for the profile of a miss
    state_dir = ctx.workdir / "pin-change"
    state_dir.mkdir()
    with GitRepo(data.path) as repo, Store.open(state_dir / "qrelease.db") as store:
        bench = PinChange(ctx, store, repo, chain)
        row = ratio_row(
            replace(ctx, reps=reps),
            f"one-pin-change pass, {data.apps:,} apps x 3 envs",
            TARGET,
            plain(bench.plan_ours),
            plain(bench.plan_reference),
            reference_name=REFERENCE,
        )
    if bench.ours[: len(bench.theirs)] != bench.theirs:
        raise AssertionError(f"the plans differ: {bench.ours} != {bench.theirs}")
    notes = (
        "qrelease: Engine.plan(rev), loader warm from the previous revision; "
        f"{data.apps * 3:,} (env, app) observed via MemoryDeployer + the real SQLite Store; "
        "MemoryQuantum for target status",
        "covers the diff/parse/validate/plan sub-steps of issue 8's row; NOT covered: the "
        "fetch (needs the daemon, not built yet); installs excluded (nothing is applied)",
        f"both sides planned the same changes at each of {len(bench.theirs)} commits",
    )
    return [replace(row, notes=notes + row.notes)]
