"""The command line's store options: `--store` on every command, and `qrelease store migrate`.

SQLite files and a real GitOps repo; tests/integration/store/test_postgres.py runs the same
commands against PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from qrelease.cli import main
from qrelease.model.events import EventDraft
from qrelease.model.observed import ObservedState
from qrelease.store import DB_NAME, open_store
from tests.helpers.gitops import GitOpsRepo


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def observed_in(location: str | Path, deployed: str) -> None:
    with open_store(location) as store:
        store.put_observed(ObservedState(env="dev", app="bell-service", deployed=deployed))


def test_store_precedence_is_flag_then_config_then_the_state_dir(
    tmp_path: Path, example_repo: GitOpsRepo
) -> None:
    state, flag_db, config_db = tmp_path / "state", tmp_path / "flag.db", tmp_path / "config.db"
    observed_in(state, "1.0.0")
    observed_in(f"sqlite:///{config_db}", "1.1.0")
    observed_in(f"sqlite:///{flag_db}", "1.2.0")
    config = tmp_path / "controller.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{config_db}"\n')
    base = ("status", "--json", "--repo", str(example_repo.path), "--state", str(state))

    def deployed(*extra: str) -> str:
        code, out, err = cli(*base, *extra)
        assert code == 0, err
        return next(line for line in out.splitlines() if '"deployed": "1.' in line).strip()

    assert deployed() == '"deployed": "1.0.0",'
    assert deployed("--config", str(config)) == '"deployed": "1.1.0",'
    assert deployed("--config", str(config), "--store", f"sqlite:///{flag_db}") == (
        '"deployed": "1.2.0",'
    )


@pytest.mark.parametrize(
    "command", [("status",), ("history",), ("audit", "verify"), ("plan",), ("tui",)]
)
def test_an_unknown_store_scheme_is_a_usage_error(command: tuple[str, ...]) -> None:
    code, _, err = cli(*command, "--store", "mysql://root:Hunter2Secret@db/qrelease")
    assert code == 2
    assert "unsupported store URL scheme 'mysql'" in err and "Hunter2Secret" not in err


def test_an_unreachable_store_fails_without_showing_the_password(
    tmp_path: Path, example_repo: GitOpsRepo
) -> None:
    url = f"postgresql://qrelease:Hunter2Secret@/qrelease?host={tmp_path / 'no-server'}"
    code, out, err = cli("store", "migrate", "--from", str(tmp_path / "state"), "--to", url)
    assert code == 1 and "no such state database" in err
    observed_in(tmp_path / "state", "1.0.0")
    code, out, err = cli("store", "migrate", "--from", str(tmp_path / "state"), "--to", url)
    assert code == 1
    assert err.startswith("postgresql://***@/qrelease?host=")
    assert "not a usable qrelease state database" in err
    assert "Hunter2Secret" not in out + err


def test_store_migrate_copies_a_state_dir_into_a_new_sqlite_file(tmp_path: Path) -> None:
    with open_store(tmp_path / "state") as store:
        for index in range(3):
            store.append(EventDraft(action="deploy", reason=str(index)))
        head = store.verify().head_hash
    target = f"sqlite:///{tmp_path / 'moved' / DB_NAME}"
    code, out, err = cli("store", "migrate", "--from", str(tmp_path / "state"), "--to", target)
    assert code == 0, err
    assert out.startswith(f"copied 3 events (head {head[:12]}), 0 observed rows")
    code, _, err = cli("store", "migrate", "--from", str(tmp_path / "state"), "--to", target)
    assert code == 1 and "not empty (holds events)" in err
