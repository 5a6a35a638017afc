"""The controller's TOML configuration: `[store]`, `[notifications]`, `[web]`; where errors are."""

from __future__ import annotations

import re
import tomllib
from datetime import timedelta
from pathlib import Path

import pytest

from qrelease.config import ConfigError, ControllerConfig, load_config


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
    assert str(raised.value).startswith(f"{path}:2: store.")
    assert message in str(raised.value)


def test_the_documented_notification_and_web_examples_are_valid_when_uncommented() -> None:
    example = Path(__file__).parents[2] / "controller" / "controller.toml"
    assert load_config(example).notifications.channels == {}  # all commented out
    text = example.read_text()
    tail = text[text.index("\n[notifications]\n") :]
    uncommented = re.sub(r"^# (\[|\w+ = )", r"\1", tail, flags=re.MULTILINE)
    config = ControllerConfig.model_validate(tomllib.loads(uncommented))
    assert sorted(config.notifications.channels) == [
        "audit-hook",
        "github",
        "oncall-mail",
        "ops-chat",
        "release-team",
    ]
    assert config.notifications.rules[0].envs == ("staging", "prod")
    assert config.web.token_env == "QRELEASE_WEB_TOKEN"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            '[notifications.channels.ops]\nkind = "slack"\nurl_env = "S"\n\n'
            '[[notifications.rules]]\non = ["deploy-failed"]\nto = ["ops"]\n\n'
            "[[notifications.rules]]\n"
            'on = ["hold"]\nto = ["pager"]\n',
            11,
            "notifications: Value error, rules.1.to: no channel named 'pager' (channels: ops)",
        ),
        (
            '[[notifications.rules]]\non = ["deploy-exploded"]\nto = ["x"]\n',
            2,
            "notifications.rules.0.on.0: Input should be 'deploy-succeeded'",
        ),
        (
            '[notifications.channels.hook]\nkind = "webhook"\nurl = "https://u:pw@hooks.example"\n',
            3,
            "notifications.channels.hook.url: Value error, credentials do not belong in the URL",
        ),
        (
            '[notifications.channels.hook]\nkind = "webhook"\nurl = "https://hooks.example"\n',
            1,
            "notifications.channels.hook: Value error, a webhook channel needs secret_env",
        ),
        ("[web]\nremote = true\n", 1, "web: Value error, remote = true needs token_env"),
    ],
)
def test_a_bad_notifications_or_web_section_names_file_line_and_field(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "controller.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value).startswith(f"{path}:{line}: {message}")


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
    with pytest.raises(ConfigError, match=r"controller.toml:\d+: monitor.max_jobs: "):
        load_config(path)
