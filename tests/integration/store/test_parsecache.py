"""Processes sharing one parse cache: concurrent cold loads, then a warm one that parses nothing."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from qrelease.examples.scaffold import initial_files
from qrelease.store.parsecache import CACHE_DIR, CACHE_FILE
from tests.helpers.gitops import GitOpsRepo, make_repo

APPS = 150
LOAD = """
import json, sys
from qrelease.source.loader import Loader
from qrelease.source.repo import GitRepo
from qrelease.store import open_parse_cache
with GitRepo(sys.argv[1]) as repo, open_parse_cache(sys.argv[2]) as cache:
    loader = Loader(repo, cache=cache)
    snapshot = loader.load(sys.argv[3])
print(json.dumps({
    "parsed": loader.parse_count,
    "hits": loader.cache_hits,
    "manifests": sorted("/".join(key) for key in snapshot.manifests),
    "errors": [str(error) for error in snapshot.errors],
}))
"""


def many_apps(path: Path) -> GitOpsRepo:
    """The bundled examples plus APPS copies of qrng, each pinned in dev."""
    files = initial_files(example=True)
    manifest = files["manifests/qrng/0.2.0.yaml"].decode()
    program = files["manifests/qrng/programs/qrng.qs"]
    dev = files["releases/dev.yaml"].decode()
    for index in range(APPS):
        app = f"copy-{index:03d}"
        files[f"manifests/{app}/0.2.0.yaml"] = manifest.replace("app: qrng", f"app: {app}").encode()
        files[f"manifests/{app}/programs/qrng.qs"] = program
        dev += f"  {app}: 0.2.0\n"
    files["manifests/copy-007/0.2.0.yaml"] += b"bogus: 1\n"  # one invalid release
    files["releases/dev.yaml"] = dev.encode()
    return make_repo(path, files)


def loads(repo: GitOpsRepo, state: Path, rev: str, count: int) -> list[dict[str, object]]:
    """`count` processes loading `rev` through the same cache at the same time."""
    argv = [sys.executable, "-c", LOAD, str(repo.path), str(state), rev]
    running = [subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    outputs = [process.communicate(timeout=300)[0] for process in running]
    assert all(process.returncode == 0 for process in running)
    return [json.loads(output) for output in outputs]


def test_concurrent_processes_share_the_cache_and_agree(tmp_path: Path) -> None:
    repo = many_apps(tmp_path / "gitops")
    files = APPS + 8
    state = tmp_path / "state"
    cold = loads(repo, state, "HEAD", 4)
    assert all(run["manifests"] == cold[0]["manifests"] for run in cold)
    assert all(run["errors"] == cold[0]["errors"] for run in cold)
    assert "copy-007" not in str(cold[0]["manifests"]) and "bogus" in str(cold[0]["errors"])
    assert all(run["parsed"] + run["hits"] == files for run in cold)  # type: ignore[operator]

    dev = repo.read("releases/dev.yaml").replace("copy-001: 0.2.0\n", "")
    repo.write("releases/dev.yaml", dev)
    new = repo.commit("unpin one")
    mixed = loads(repo, state, new, 2) + loads(repo, state, "HEAD~1", 2)
    assert [run["parsed"] for run in mixed[2:]] == [0, 0]
    assert all(run["parsed"] <= 1 for run in mixed)  # type: ignore[operator]

    warm = loads(repo, state, new, 1)[0]
    assert (warm["parsed"], warm["hits"]) == (0, files)
    assert warm["errors"] == mixed[0]["errors"]
    with sqlite3.connect(state / CACHE_DIR / CACHE_FILE) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert connection.execute("SELECT count(*) FROM parses").fetchone() == (files + 1,)
    connection.close()
