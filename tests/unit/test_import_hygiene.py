"""Third-party systems enter through one module each: the CLI must start without them."""

from __future__ import annotations

import subprocess
import sys


def test_cli_import_loads_no_heavy_sdk() -> None:
    code = (
        "import sys, qrelease.cli, qrelease.engine, qrelease.wiring; "
        "heavy = {'textual', 'azure', 'qdk', 'psycopg', 'psycopg_pool'}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
