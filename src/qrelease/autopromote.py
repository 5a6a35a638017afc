"""Auto-promotion: an environment with `policy.auto_promote` takes its upstream's release.

The controller does it exactly as a person would: through `Promoter.promote`, so the
same policy checks apply and the result is the same kind of commit, authored by the
controller. It only ever moves forward, and never undoes a rollback still on hold.
"""

from __future__ import annotations

from collections.abc import Callable

from qrelease.model.status import Health
from qrelease.model.types import version_key
from qrelease.promotion import Promoter, PromotionError, Result
from qrelease.source.loader import Snapshot

CONTROLLER_ACTOR = "qrelease-controller <qrelease-controller@localhost>"
Held = Callable[[str, str], bool]


def auto_promote(promoter: Promoter, snapshot: Snapshot, held: Held) -> list[Result]:
    """Promote every release that has soaked upstream into each auto-promoting environment."""
    results = []
    for candidate in candidates(promoter, snapshot):
        env, app, version = candidate
        if held(env, app):
            continue
        reason = f"auto-promotion: {version} is Healthy upstream"
        try:
            result = promoter.promote(app, env, version, reason, actor=CONTROLLER_ACTOR)
        except PromotionError:
            continue
        if not result.refused:
            results.append(result)
    return results


def candidates(promoter: Promoter, snapshot: Snapshot) -> list[tuple[str, str, str]]:
    """(env, app, version) where the upstream runs a newer Healthy release than the pin."""
    found = []
    for name, env in sorted(snapshot.environments.items()):
        if not (env.policy.auto_promote and env.promote_from):
            continue
        for app, pinned in sorted(env.apps.items()):
            state = promoter.store.get_observed(env.promote_from, app)
            if state is None or state.health != Health.HEALTHY or state.deployed is None:
                continue
            if version_key(state.deployed) > version_key(pinned):
                found.append((name, app, state.deployed))
    return found
