"""Suspending and resuming edit `policy.suspended` and leave every other byte alone."""

from __future__ import annotations

import pytest
import yaml

from qrelease.source.pins import PinEditError, clear_suspended, set_suspended

PROD = (
    "# prod\n"
    "environment: prod\n"
    "policy:\n"
    "  soak: 1h   # an hour upstream\n"
    "  windows:\n"
    '    - {days: [fri], start: "16:00", end: "23:59", reason: no Friday-evening releases}\n'
    "apps:\n"
    "  bell-service: 1.0.0\n"
    "  qrng: 0.1.0\n"
)


def test_suspend_adds_the_key_under_policy_and_resume_removes_it_byte_for_byte() -> None:
    once = set_suspended(PROD, "bell-service", 'incident #4711: "noisy" qubits')
    assert once == PROD.replace(
        "apps:\n",
        '  suspended:\n    bell-service: "incident #4711: \\"noisy\\" qubits"\napps:\n',
    )
    parsed = yaml.load(once, Loader=yaml.CSafeLoader)
    assert parsed["policy"]["suspended"] == {"bell-service": 'incident #4711: "noisy" qubits'}
    twice = set_suspended(once, "qrng", "vendor outage")
    assert yaml.load(twice, Loader=yaml.CSafeLoader)["policy"]["suspended"]["qrng"] == (
        "vendor outage"
    )
    assert clear_suspended(clear_suspended(twice, "bell-service"), "qrng") == PROD
    assert clear_suspended(twice, "qrng") == once


def test_suspend_writes_a_policy_block_when_the_file_has_none_and_keeps_indentation() -> None:
    bare = "environment: dev\napps:\n  qrng: 0.1.0"  # no trailing newline either
    edited = set_suspended(bare, "qrng", "why\nnot")
    assert (
        edited
        == 'environment: dev\napps:\n  qrng: 0.1.0\npolicy:\n  suspended:\n    qrng: "why not"\n'
    )
    wide = "environment: dev\npolicy:\n    soak: 1h\napps:\n    qrng: 0.1.0\n"
    assert set_suspended(wide, "qrng", "r") == wide.replace(
        "    soak: 1h\n", '    soak: 1h\n    suspended:\n        qrng: "r"\n'
    )


def test_edits_that_cannot_be_made_safely_say_why() -> None:
    once = set_suspended(PROD, "bell-service", "incident")
    with pytest.raises(PinEditError, match="bell-service is already suspended: incident"):
        set_suspended(once, "bell-service", "again")
    with pytest.raises(PinEditError, match="qrng is not suspended"):
        clear_suspended(once, "qrng")
    flow = PROD.replace("  soak: 1h", "  suspended: {qrng: x}\n  soak: 1h")
    with pytest.raises(PinEditError, match="flow style"):
        set_suspended(flow, "bell-service", "incident")
