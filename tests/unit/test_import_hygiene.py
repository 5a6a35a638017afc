"""Third-party systems enter through one module each, and a command loads only what it uses.

Each check runs in a fresh interpreter and looks at `sys.modules` afterwards, so nothing
another test imported can hide or fake a load.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from qrelease.cli import COMMANDS
from tests.helpers.cli import Cli
from tests.helpers.gitops import GitOpsRepo

HEAVY_SDKS = {"textual", "azure", "qdk", "psycopg", "psycopg_pool", "apprise", "jinja2"}
"""Never loaded by the CLI, the engine or the wiring until an environment needs them."""
NOT_FOR_VERSION = {
    "git",
    "pydantic",
    "pydantic_core",
    "yaml",
    "ruamel",
    "httpx",
    "sqlite3",
    "structlog",
    "uvicorn",
    "starlette",
    "rich",
    "semver",
    "dateutil",
}
"""What `qrelease --version`, `--help` and `completion` must not import (they need none)."""
NOT_FOR_STATUS = HEAVY_SDKS | {
    "httpx",
    "uvicorn",
    "starlette",
    "structlog",
    "prometheus_client",
    "rich",
    "ruamel",
    "qrelease.engine",
    "qrelease.promotion",
    "qrelease.deployers",
    "qrelease.quantum",
    "qrelease.daemon",
    "qrelease.tui",
}
"""What `qrelease status` must not import: it reads Git and the store, nothing else."""


def loaded_after(code: str) -> set[str]:
    """The modules (top-level and qrelease packages) loaded after running `code`."""
    probe = (
        f"{code}\n"
        "import sys, json\n"
        "names = {m.split('.')[0] for m in sys.modules}\n"
        "names |= {'.'.join(m.split('.')[:2]) for m in sys.modules if m.startswith('qrelease.')}\n"
        "print(json.dumps(sorted(names)))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(done.stdout.splitlines()[-1]))


def run_cli(*args: str) -> str:
    """Python code running `qrelease ARGS` in-process, its exit swallowed."""
    return (
        "from qrelease.cli import main\n"
        f"try:\n    main({list(args)!r})\nexcept SystemExit:\n    pass\n"
    )


def test_cli_import_loads_no_heavy_sdk() -> None:
    loaded = loaded_after("import qrelease.cli, qrelease.engine, qrelease.wiring")
    assert loaded & HEAVY_SDKS == set()


def test_version_help_and_completion_load_click_alone() -> None:
    for args in (["--version"], ["--help"], ["completion", "bash"], ["status", "--help"]):
        assert loaded_after(run_cli(*args)) & NOT_FOR_VERSION == set(), args


def test_every_command_module_defers_its_imports() -> None:
    """Loading every command (as `--help` and completion do) costs click and our modules."""
    modules = sorted({target.partition(":")[0] for target in COMMANDS.values()})
    loaded = loaded_after("\n".join(f"import {module}" for module in modules))
    assert loaded & NOT_FOR_VERSION == set()


def test_status_loads_git_and_the_store_but_nothing_that_deploys(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    cli = Cli(example_repo.path, tmp_path / "state")
    cli.record_all()
    code = run_cli("status", "--repo", str(cli.repo), "--state", str(cli.state))
    loaded = loaded_after(code)
    assert {"git", "pydantic", "sqlite3", "qrelease.store"} <= loaded  # it did the work
    assert loaded & NOT_FOR_STATUS == set()


def test_the_daemon_loads_apprise_only_when_a_channel_needs_it() -> None:
    assert "apprise" not in loaded_after("import qrelease.daemon, qrelease.notify")
