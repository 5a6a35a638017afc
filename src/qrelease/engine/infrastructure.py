"""The first step of a pass: each environment's quantum infrastructure, deployed when it changed.

An environment whose `quantum.infrastructure` names an ARM template (its Azure Quantum
workspace and storage account, in their own resource group) has it deployed by the pass
itself, before any release's gates run: the provisioner deploys only when the template or
its parameters changed, which otherwise costs one GET. A failure holds that environment's
rollouts with the error; other environments carry on.

Each deployment is an `infrastructure` audit event of the environment (its `app` is
empty), outcome `Succeeded`; a failure is one with outcome `Failed` and the error as its
reason, recorded once while the same failure lasts. `details`: `deployment` and
`resource_group` (the ARM deployment), `sha256` (of the template and its parameters) and
`outputs` (the names of the deployment's outputs, never their values).
"""

from __future__ import annotations

from collections.abc import Mapping

from qrelease.deployers.base import DeployError, InfrastructureResult
from qrelease.engine.backends import Backends
from qrelease.engine.record import Recorder
from qrelease.model.environment import Environment
from qrelease.model.events import EventDraft
from qrelease.model.vocabulary import EventKind, EventOutcome

STEP = "infrastructure"


def provision(
    environments: Mapping[str, Environment], backends: Backends, recorder: Recorder, revision: str
) -> dict[str, str]:
    """Ensure each environment's quantum infrastructure; the ones that failed, with why."""
    failures: dict[str, str] = {}
    for name, env in sorted(environments.items()):
        provisioner = backends.provisioner_for(env)
        if provisioner is None:
            continue
        try:
            result = provisioner.ensure_quantum_infrastructure(env)
        except Exception as error:  # one environment's failure must not stop the others
            reason = str(error) if isinstance(error, DeployError) else _unexpected(error)
            failures[name] = f"quantum infrastructure: {reason}"
            if _new_failure(recorder, name, reason):
                recorder.commit(None, [_event(name, EventOutcome.FAILED, revision, reason)])
            continue
        if result.deployed:
            event = _event(name, EventOutcome.SUCCEEDED, revision, result.message, result)
            recorder.commit(None, [event])
    return failures


def _unexpected(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _new_failure(recorder: Recorder, env: str, reason: str) -> bool:
    """False while the environment's last infrastructure event is this very failure."""
    last = next(
        recorder.store.iter_events(
            env=env, actions=[EventKind.INFRASTRUCTURE], descending=True, limit=1
        ),
        None,
    )
    return last is None or (last.outcome, last.reason) != (EventOutcome.FAILED, reason)


def _event(
    env: str,
    outcome: EventOutcome,
    revision: str,
    reason: str,
    result: InfrastructureResult | None = None,
) -> EventDraft:
    details: dict[str, object] = {}
    if result is not None:
        details = {
            "deployment": result.deployment,
            "resource_group": result.resource_group,
            "sha256": result.sha256,
            "outputs": sorted(result.outputs),
        }
    return EventDraft(
        env=env,
        action=str(EventKind.INFRASTRUCTURE),
        revision=revision,
        reason=reason,
        outcome=str(outcome),
        details=details,
    )
