"""Two release managers promote different versions at the same moment: no update is lost.

Each round starts two real `qrelease promote` processes on one bare remote, each with its
own state dir (two people, two machines). Whichever wins, the branch must show exactly the
promotions that exited 0, in order, each replacing the pin the one before it set; a loser
exits 1 naming the commit that beat it. `--force` skips the policy checks, which have no
controller history to judge here and are not what races.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from qrelease.source.pinlog import pin_commits
from qrelease.source.repo import GitRepo
from tests.helpers.gitops import GIT_ENV, GitOpsRepo

ROUNDS = 20
VERSIONS = ("1.0.0", "1.1.0", "1.2.0")
CLI_TIMEOUT = 300.0
PUSHED = re.compile(r"promote bell-service (\S+) -> (\S+) in prod: ([0-9a-f]{12}) pushed")
PROMOTE = (sys.executable, "-m", "qrelease", "promote", "bell-service", "--to", "prod")
PROMOTE += ("--reason", "race", "--force")
NAMED = re.compile(r"set by ([0-9a-f]{12}) ")


@dataclass(frozen=True)
class Promotion:
    """What one `qrelease promote` process said and how it exited."""

    version: str
    code: int
    stdout: str
    stderr: str


def race(bare: Path, states: Path, versions: list[str], home: Path) -> list[Promotion]:
    """Start one promote process per version at once and wait for all of them."""
    env = {**os.environ, **GIT_ENV, "HOME": str(home), "QDK_PYTHON_TELEMETRY": "none"}
    processes = {
        version: subprocess.Popen(
            [*PROMOTE, "--version", version, "--repo", str(bare), "--state", str(states / version)],
            cwd=home,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for version in versions
    }
    ended = []
    for version, process in processes.items():
        stdout, stderr = process.communicate(timeout=CLI_TIMEOUT)
        ended.append(Promotion(version, process.returncode, stdout, stderr))
    return ended


def prod_pin(bare: Path) -> str:
    text = subprocess.run(
        ["git", "--git-dir", str(bare), "show", "main:releases/prod.yaml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return text.split("bell-service: ")[1].split()[0]


def test_racing_promote_processes_lose_no_update(example_repo: GitOpsRepo, tmp_path: Path) -> None:
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(example_repo.path), str(bare)], check=True)
    reported: list[tuple[str, str, str]] = []  # (commit prefix, from, to) of every exit 0
    conflicts = 0
    for round_number in range(ROUNDS):
        pinned = prod_pin(bare)
        ended = race(bare, tmp_path, [v for v in VERSIONS if v != pinned], tmp_path)
        won = [p for p in ended if p.code == 0]
        lost = [p for p in ended if p.code != 0]
        assert won and all(p.code == 1 for p in lost), (round_number, ended)
        pushed = [PUSHED.search(p.stdout) for p in won]
        assert all(pushed), (round_number, ended)
        by_from = {m.group(1): (m.group(3), m.group(1), m.group(2)) for m in pushed if m}
        chain, current = [], pinned  # one winner, or two that ran one after the other
        while current in by_from:
            chain.append(by_from.pop(current))
            current = chain[-1][2]
        assert chain and not by_from, (round_number, ended)
        reported += chain
        for loser in lost:
            named = NAMED.search(loser.stderr)
            assert named and named.group(1) == chain[0][0], (round_number, loser)
            conflicts += 1
    with GitRepo(bare) as repo:
        history = [
            (change.commit[:12], change.from_version, change.to_version)
            for change in reversed(pin_commits(repo, "main"))
            if (change.env, change.app) == ("prod", "bell-service") and change.from_version
        ]
    assert history == reported  # every exit-0 promotion on the branch, in order; nothing else
    assert conflicts  # the processes did race (timing decides how often)
