"""The quantum gates of a whole plan, run first and side by side: check everything before
changing anything.

Before any release of a pass is installed, every Deploy's gates run on the quantum
backends' pool of sandboxed workers (`Backends.gate_workers` at a time). A rollout then
finds its gate report ready; a failed gate stops that release only, and nothing of any
release was installed while the gates of the others were still unknown. A backend that
keeps results by content (the local qdk backend) answers a release that ran before, in
this pass or any other, from its cache. An environment whose policy says `reuse_review`
takes a release's verdicts from review (`ReviewedGates`) instead, when a trusted review of
exactly that release passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from qrelease.engine.backends import Backends
from qrelease.engine.observe import environment_of
from qrelease.evidence import release_digest
from qrelease.model.environment import AzureQuantum, Environment
from qrelease.model.vocabulary import EventKind
from qrelease.planning.planner import Action
from qrelease.planning.upstream import GATE_EVENTS_SCANNED, newest_gates
from qrelease.quantum.base import EstimateSummary, GateReport, ProgramSource
from qrelease.quantum.pricing import BudgetAware, SpendLedger, spend_of
from qrelease.source.loader import Snapshot, program_path
from qrelease.source.repo import GitRepo
from qrelease.source.signatures import TrustedKeys
from qrelease.store.base import StateStore
from qrelease.verdicts import ReviewRecord, newest_review, read_reviews, reviewed_report


@dataclass(frozen=True)
class PreparedGates:
    """The outcome of one release's gates: a report, or the error that stopped them."""

    report: GateReport | None = None
    error: Exception | None = None


def program_of(repo: GitRepo, snapshot: Snapshot, action: Action) -> ProgramSource:
    """The program of the release an action deploys, read from Git."""
    assert action.manifest is not None  # the planner only deploys valid releases
    path = program_path(action.manifest.app, action.manifest.quantum.program)
    return ProgramSource(path, repo.read_blob(snapshot.programs[path]).decode())


def baseline_of(store: StateStore, action: Action) -> EstimateSummary | None:
    """The resource estimate of the release running now, from its newest estimate gate."""
    running = action.from_version
    if running is None:
        return None
    events = store.iter_events(
        env=action.env,
        app=action.app,
        actions=[EventKind.GATE],
        descending=True,
        limit=GATE_EVENTS_SCANNED,
    )
    for line in newest_gates(events, running):
        if "physical_qubits" in line.details:
            details = line.details
            return EstimateSummary(int(details["physical_qubits"]), int(details["runtime_ns"]))
    return None


def month_spend(store: StateStore, env: str, currency: str, now: datetime) -> float:
    """What the environment's verification jobs cost since the start of `now`'s month (UTC)."""
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    total = 0.0
    for event in store.iter_events(env=env, actions=[EventKind.GATE], since=start):
        if event.details.get("gate") != "verification":
            continue
        spent = spend_of(event.details)
        if spent is not None and spent[1] == currency:
            total += spent[0]
    return total


def ledgers(
    deploys: Sequence[Action], snapshot: Snapshot, store: StateStore, now: datetime
) -> dict[str, SpendLedger]:
    """A spend ledger for each environment with a `policy.quantum_budget` that deploys."""
    out: dict[str, SpendLedger] = {}
    for name in sorted({action.env for action in deploys}):
        budget = environment_of(snapshot, name).policy.quantum_budget
        if budget is not None:
            spent = month_spend(store, name, budget.currency, now)
            out[name] = SpendLedger(budget, spent, now.astimezone(UTC).strftime("%Y-%m"))
    return out


class ReviewedGates:
    """The gate verdicts review recorded in Git, for environments whose policy reuses them.

    A review counts only with signed-commit verification on (a good signature by a trusted
    key: anyone who may push a ref could otherwise skip the gates), only for the release
    it names (same digest: manifest and program blob), only when it passed, holds a result
    for the profile gate and every gate the manifest configures, and its stored QIR hashes
    to the digest it names. An Azure environment that submits verification jobs runs its
    gates anyway. Anything else: the gates run as usual.
    """

    def __init__(self, repo: GitRepo, snapshot: Snapshot, keys: TrustedKeys | None) -> None:
        self._repo, self._snapshot, self._keys = repo, snapshot, keys
        self._records: list[ReviewRecord] | None = None

    def report_for(self, env: Environment, action: Action) -> GateReport | None:
        """The reviewed report standing in for this Deploy's gates, or None to run them."""
        manifest = action.manifest
        if not env.policy.reuse_review or manifest is None:
            return None
        if self._keys is None or not self._keys.enabled:
            return None
        if isinstance(env.quantum, AzureQuantum) and env.quantum.verification_job:
            return None
        if self._records is None:
            self._records = read_reviews(self._repo, self._keys)
        digest = release_digest(self._snapshot, manifest)
        review = newest_review(self._records, manifest.app, manifest.version, digest)
        if review is None or not review.passed:
            return None
        try:
            report = reviewed_report(self._repo, review)
        except ValueError:
            return None  # a damaged or altered record is not evidence: the gates run
        gates = manifest.quantum.gates
        wanted = {"profile"} | {name for name in ("estimate", "smoke") if getattr(gates, name)}
        if not report.passed or not wanted <= {result.gate for result in report.results}:
            return None
        origin = f"from review {review.commit[:12]} by {review.reviewer}"
        results = tuple(
            replace(
                result,
                message=f"{result.message} ({origin})".strip(),
                details={**result.details, "review": review.commit, "reviewer": review.reviewer},
            )
            for result in report.results
        )
        return replace(report, results=results)


def run_plan_gates(
    deploys: Sequence[Action],
    snapshot: Snapshot,
    repo: GitRepo,
    backends: Backends,
    store: StateStore,
    now: datetime,
    reviewed: ReviewedGates | None = None,
) -> dict[tuple[str, str], PreparedGates]:
    """Every Deploy's gates, `backends.gate_workers` at a time, before anything is installed.

    Backends that submit billed jobs price them against the environment's budget, with
    what this month has spent so far (one ledger per environment for the whole pass).
    A Deploy whose verdicts review already gave (`reviewed`) runs no gate.
    """
    taken: dict[tuple[str, str], PreparedGates] = {}
    if reviewed is not None:
        for action in deploys:
            report = reviewed.report_for(environment_of(snapshot, action.env), action)
            if report is not None:
                taken[action.key] = PreparedGates(report)
    deploys = [action for action in deploys if action.key not in taken]
    work = [
        (action, program_of(repo, snapshot, action), baseline_of(store, action))
        for action in deploys
    ]
    budgets = ledgers(deploys, snapshot, store, now)

    def one(item: tuple[Action, ProgramSource, EstimateSummary | None]) -> PreparedGates:
        action, program, baseline = item
        assert action.manifest is not None
        quantum = backends.quantum_for(environment_of(snapshot, action.env))
        if action.env in budgets and isinstance(quantum, BudgetAware):
            quantum = quantum.with_budget(budgets[action.env])
        try:
            return PreparedGates(quantum.run_gates(program, action.manifest.quantum, baseline))
        except Exception as error:  # recorded as that release's failure by its rollout
            return PreparedGates(error=error)

    workers = max(1, min(backends.gate_workers, len(work)))
    if workers == 1:
        outcomes = [one(item) for item in work]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="qrelease-gates") as pool:
            outcomes = list(pool.map(one, work))
    ran = {action.key: outcome for (action, _, _), outcome in zip(work, outcomes, strict=True)}
    return taken | ran
