"""A controller in the states a release manager meets, for the web view's tests.

After `stage_scene` the example repo shows, besides healthy rows: a failed rollout (a gate
failed in dev), a release waiting for approvals (staging), a suspended app (staging) and a
degraded quantum target (prod).
"""

from __future__ import annotations

from qrelease.model.vocabulary import Availability
from tests.helpers.daemon import Api, Rig, synced, wait_for

FAILING_PROGRAM = "manifests/bell-service/programs/bell.qs"
GATE_MESSAGE = "Qdk.Qsc.CapabilitiesCk.UseOfDynamicBool at bell.qs:11:12"
STAGING_POLICY = """policy:
  soak: 10m
  auto_rollback: true
  auto_promote: false
  approvals:
    required: 2
    approvers: [ada@example.com, grace@example.com, alan@example.com]
  suspended:
    qrng: "incident 4711: calibration drift on the target"
"""


def stage_scene(rig: Rig, api: Api) -> None:
    """Drive the running controller of `rig` into the scene above."""
    wait_for("the first pass", lambda: synced(api))
    rig.soaked()
    rig.quantum.failing_programs[FAILING_PROGRAM] = GATE_MESSAGE
    rig.pin("dev", "bell-service", "1.1.0")
    wait_for("the failed rollout", lambda: api.row("dev", "bell-service")["rollout"] == "Failed")
    staging = rig.work.read("releases/staging.yaml")
    head, _, rest = staging.partition("policy:\n")
    _, _, apps = rest.partition("apps:\n")
    rig.work.write("releases/staging.yaml", head + STAGING_POLICY + "apps:\n" + apps)
    rig.work.commit("staging: two approvals, qrng suspended")
    rig.pin("staging", "bell-service", "1.2.0")
    wait_for(
        "the approvals hold", lambda: "approvals" in api.row("staging", "bell-service")["step"]
    )
    wait_for("the suspension", lambda: api.row("staging", "qrng")["health"] == "Suspended")
    rig.quantum.availability["ionq.simulator"] = Availability.DEGRADED
    rig.clock.advance(rig.config().source.resync)
    wait_for(
        "the degraded target",
        lambda: api.row("prod", "bell-service")["availability"] == "Degraded",
    )
