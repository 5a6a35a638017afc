"""The controller's TOML configuration: the `[store]` section."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from qrelease.config import ConfigError, load_config


def test_the_store_url_defaults_to_the_state_dir_and_is_read_from_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "controller.toml"
    path.write_text("")
    assert load_config(path).store.url is None
    path.write_text('[store]\nurl = "postgresql://qrelease@db.example:5432/qrelease"\n')
    assert load_config(path).store.url == "postgresql://qrelease@db.example:5432/qrelease"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[store]\nurl = "mysql://root@db/qrelease"\n', "unsupported store URL scheme 'mysql'"),
        ('[store]\nhost = "db"\n', "Extra inputs are not permitted"),
    ],
)
def test_a_bad_store_section_names_the_file_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "controller.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(f"{path}: store.")
    assert message in str(raised.value)


def test_the_monitor_section_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "controller.toml"
    path.write_text('[monitor]\ninterval = "30s"\nmax_jobs = 50\n')
    monitor = load_config(path).monitor
    assert (monitor.interval, monitor.max_jobs, monitor.max_refresh) == (
        timedelta(seconds=30),
        50,
        100,
    )
    path.write_text("[monitor]\nmax_jobs = 0\n")
    with pytest.raises(ConfigError, match=r"controller.toml: monitor.max_jobs: "):
        load_config(path)
