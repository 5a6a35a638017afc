"""Auto-promotion: an environment with `policy.auto_promote` takes its upstream's release.

A step of the controller's pass, handed the pass's snapshot and rows. It promotes exactly
as a person would, through `Promoter.promote`, so the same policy checks apply and the
result is the same kind of commit, authored by the controller. It only ever moves
forward, and never undoes a rollback still on hold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from qrelease.model.types import version_key
from qrelease.planning.upstream import Running, healthy_release
from qrelease.promotion.promote import Promoter, PromotionError, Result
from qrelease.source.loader import Snapshot

CONTROLLER_ACTOR = "qrelease-controller <qrelease-controller@localhost>"
Held = Callable[[str, str], bool]


def auto_promote(
    promoter: Promoter,
    snapshot: Snapshot,
    rows: Mapping[tuple[str, str], Running],
    held: Held,
) -> list[Result]:
    """Promote every release that has soaked upstream into each auto-promoting environment."""
    promoter.use_snapshot(snapshot)
    results = []
    for env, app, version in candidates(snapshot, rows):
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


def candidates(
    snapshot: Snapshot, rows: Mapping[tuple[str, str], Running]
) -> list[tuple[str, str, str]]:
    """(env, app, version) where the upstream runs a newer Healthy release than the pin."""
    found = []
    for name, env in sorted(snapshot.environments.items()):
        if not (env.policy.auto_promote and env.promote_from):
            continue
        for app, pinned in sorted(env.apps.items()):
            if app in env.policy.suspended:
                continue  # the controller leaves a suspended app alone, and so does this
            upstream = healthy_release(rows.get((env.promote_from, app)))
            if upstream is not None and version_key(upstream) > version_key(pinned):
                found.append((name, app, upstream))
    return found
