"""Third-party systems enter through one module each: the CLI must start without them."""

from __future__ import annotations

import subprocess
import sys


def test_cli_import_loads_no_heavy_sdk() -> None:
    code = (
        "import sys, qrelease.cli, qrelease.engine, qrelease.wiring; "
        "heavy = {'textual', 'azure', 'qdk', 'psycopg', 'psycopg_pool', 'apprise', 'jinja2'}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_daemon_loads_apprise_only_when_a_channel_needs_it() -> None:
    code = "import sys, qrelease.daemon, qrelease.notify; print('apprise' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
