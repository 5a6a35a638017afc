"""One masking rule for every message that leaves qrelease: each form of secret, once."""

from __future__ import annotations

import pytest

from qrelease.redaction import REDACTED, SENSITIVE_KEY, redact, redact_url


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("fatal: unable to access 'https://bot:hunter22@git.example/r.git/'", "hunter22"),
        ("clone http://user:pw-Secret@127.0.0.1:8080/x.git failed", "pw-Secret"),
        ("ssh://deploy:s3cr3t!@host/x plain", "s3cr3t!"),
        ("cannot clone bot:hunter22@git.example:org/repo.git", "hunter22"),
        ("cannot clone bot:hun@ter/2:2@git.example:org/repo.git", "ter/2:2"),
        ("cannot clone bot:hunter22@[::1]:org/repo.git", "hunter22"),
        ("fatal: unable to access 'https://bot:p@ss/w:rd@git.example/r.git/'", "ss/w:rd"),
        ("uv: Failed to fetch: https://__token__:pypi-AgEI@pkgs.example/simple/x/", "pypi-AgEI"),
        ("Endpoint=https://q/;ApiKey=abc123def;", "abc123def"),
        ("DefaultEndpointsProtocol=https;AccountKey=a2V5Zm9v==;", "a2V5Zm9v=="),
        ("GET https://b.blob/c?sv=2&sig=Zm9vYmFy%3D&se=1", "Zm9vYmFy%3D"),
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2ln", "eyJhbGciOi.eyJzdWIi.c2ln"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ('{"client_secret": "cs-9f8e7d"}', "cs-9f8e7d"),
        ("password=correct-horse", "correct-horse"),
    ],
)
def test_every_form_of_secret_is_masked(text: str, hidden: str) -> None:
    cleaned = redact(text)
    assert hidden not in cleaned and REDACTED in cleaned


def test_known_secret_values_are_masked_wherever_they_appear() -> None:
    assert redact("the webhook secret is Zq9-long", ["Zq9-long", None, "ab"]) == (
        "the webhook secret is ***"
    )
    assert redact("ab stays", ["ab"]) == "ab stays"  # too short to mask safely


def test_urls_without_credentials_and_plain_scp_addresses_are_left_alone() -> None:
    for text in (
        "https://pkgs.example/simple/x/",
        "git@github.com:org/repo.git",
        "file:///srv/gitops.git",
        "ionq.qpu.aria-1 is Available",
    ):
        assert redact(text) == text
    assert redact_url("https://t@h/x") == "https://***@h/x"


def test_sensitive_keys_are_recognised_by_name() -> None:
    for key in ("secret", "X-Api-Key", "Authorization", "db_password", "session_token"):
        assert SENSITIVE_KEY.search(key)
    assert not SENSITIVE_KEY.search("revision")


def test_every_place_that_masks_uses_this_module() -> None:
    from qrelease.azure import common
    from qrelease.daemon import logs
    from qrelease.deployers import venv
    from qrelease.source import workspace

    assert common.redact is logs.redact is venv.redact is redact
    assert workspace.redact_url is redact_url
