"""Package sources of an environment: inside the state dir, or named by the operator's allowlist."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from qrelease.cli import main
from qrelease.model.environment import Environment, VenvDeploy, source_refusal
from tests.helpers.gitops import GitOpsRepo

ENV_FILE = "releases/dev.yaml"
EXAMPLE_SOURCE = "find_links: wheels"

REFUSED = {
    "parent": ("../outside", "climbs out of its directory with '..'"),
    "parent inside": ("wheels/../../outside", "climbs out of its directory with '..'"),
    "bare parent": ("..", "climbs out of its directory with '..'"),
    "home": ("~/wheels", "starting with '~'"),
    "file url": ("file:///srv/wheels", "not a path or an http(s) URL"),
    "ftp url": ("ftp://mirror.example/wheels", "not a path or an http(s) URL"),
    "no host": ("https:///simple", "not a path or an http(s) URL"),
    "bad port": ("https://pypi.example:99999/simple", "not a path or an http(s) URL"),
    "encoded parent": ("https://pypi.example/simple/%2e%2e/x", "encoded '..'"),
    "backslash": ("wheels\\..\\x", "not a path or URL"),
    "empty": ("", "not a path or URL"),
    "newline": ("wheels\n", "not a path or URL"),
}


@pytest.mark.parametrize("field", ["find_links", "index_url"])
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_source_that_can_never_be_safe_is_refused_by_the_model(field: str, case: str) -> None:
    value, message = REFUSED[case]
    with pytest.raises(ValidationError) as refused:
        VenvDeploy.model_validate({field: value})
    assert refused.value.errors()[0]["loc"] == (field,)
    assert message in str(refused.value)


def test_credentials_in_a_refused_url_are_not_repeated() -> None:
    with pytest.raises(ValidationError) as refused:
        VenvDeploy(index_url="ftp://deploy:s3cr3t-t0ken@mirror.example/simple")
    message = refused.value.errors()[0]["msg"]  # what the loader reports (never the input)
    assert "not a path or an http(s) URL" in message and "s3cr3t" not in message


ADMITS = [
    ("/srv/wheels", "/srv/wheels"),
    ("/srv/wheels/team-a", "/srv/wheels"),
    ("/srv/wheels/", "/srv/wheels"),
    ("/srv/wheels/x", "/srv/wheels/"),
    ("https://pypi.org/simple", "https://pypi.org/simple"),
    ("https://pypi.org/simple/", "https://pypi.org/simple"),
    ("https://PyPI.org/simple", "https://pypi.org/simple"),
    ("https://deploy:token@pkgs.example/simple", "https://pkgs.example/simple"),
    ("https://pkgs.example/any/index", "https://pkgs.example"),
]
REFUSES = [
    ("/srv/wheels-evil", "/srv/wheels"),
    ("/srv", "/srv/wheels"),
    ("/etc", "https://pypi.org/simple"),
    ("https://pypi.org.evil/simple", "https://pypi.org"),
    ("https://pypi.org/simpler", "https://pypi.org/simple"),
    ("http://pypi.org/simple", "https://pypi.org/simple"),
    ("https://pypi.org:8443/simple", "https://pypi.org/simple"),
    ("https://evil.example/srv/wheels", "/srv/wheels"),
]


@pytest.mark.parametrize(("value", "allowed"), ADMITS)
def test_an_allowlist_entry_admits_itself_and_what_lies_below_it(value: str, allowed: str) -> None:
    assert source_refusal(value, [allowed]) is None


@pytest.mark.parametrize(("value", "allowed"), REFUSES)
def test_an_allowlist_entry_admits_nothing_beside_it(value: str, allowed: str) -> None:
    assert "is outside the state dir" in str(source_refusal(value, [allowed]))


def test_state_dir_sources_need_no_allowlist_and_others_do() -> None:
    inside = Environment(environment="dev", classical=VenvDeploy(find_links="wheels/extra"))
    assert inside.source_refusals([]) == []
    outside = Environment(
        environment="dev",
        classical=VenvDeploy(find_links="/outside", index_url="https://pypi.org/simple"),
    )
    assert [field for field, _ in outside.source_refusals([])] == [
        "classical.find_links",
        "classical.index_url",
    ]
    assert outside.source_refusals(["/outside", "https://pypi.org/simple"]) == []


def _validate(repo: GitOpsRepo, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["validate", "--no-compile", "--repo", str(repo.path), *args])
    return result.exit_code, result.stdout, result.stderr


def _set_source(repo: GitOpsRepo, line: str) -> int:
    """Replace the dev environment's find_links line and commit; returns its line number."""
    text = repo.read(ENV_FILE)
    assert EXAMPLE_SOURCE in text
    repo.write(ENV_FILE, text.replace(EXAMPLE_SOURCE, line))
    repo.commit()
    return next(n for n, row in enumerate(text.splitlines(), 1) if EXAMPLE_SOURCE in row)


def _config(tmp_path: Path, allowed: list[str]) -> str:
    path = tmp_path / "controller.toml"
    entries = ", ".join(f'"{entry}"' for entry in allowed)
    path.write_text(f"[sources]\nallow = [{entries}]\n")
    return str(path)


def test_validate_refuses_an_absolute_find_links_by_default(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    line = _set_source(example_repo, "find_links: /outside")
    code, out, err = _validate(example_repo, "--config", _config(tmp_path, []))
    assert code == 1 and "1 problem(s)" in out
    assert (
        f"{ENV_FILE}:{line}: classical.find_links: '/outside' is outside the state dir and not "
        "in the controller's [sources] allow"
    ) in err


def test_validate_accepts_find_links_the_allowlist_names(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    _set_source(example_repo, "find_links: /outside/team-a")
    code, out, err = _validate(example_repo, "--config", _config(tmp_path, ["/outside"]))
    assert code == 0, err
    assert out.rstrip().endswith(": valid")


def test_validate_refuses_an_index_url_the_allowlist_omits_without_its_credentials(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    line = _set_source(example_repo, "index_url: https://bot:s3cr3t-t0ken@pkgs.example/simple")
    code, _, err = _validate(example_repo, "--config", _config(tmp_path, ["https://pypi.org"]))
    assert code == 1
    assert f"{ENV_FILE}:{line}: classical.index_url: 'https://***@pkgs.example/simple'" in err
    assert "s3cr3t" not in err


def test_validate_refuses_a_parent_path_whatever_the_allowlist_says(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    line = _set_source(example_repo, "find_links: wheels/../../outside")
    code, _, err = _validate(example_repo, "--config", _config(tmp_path, ["/"]))
    assert code == 1
    assert f"{ENV_FILE}:{line}: classical.find_links: the path climbs out" in err


def test_a_relative_allowlist_entry_is_a_config_error(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    config = _config(tmp_path, ["wheels"])
    code, _, err = _validate(example_repo, "--config", config)
    assert code == 1
    assert f"{config}:2: sources.allow.0: Value error, 'wheels' is relative" in err


def test_quantum_health_on_a_local_environment_is_refused_naming_the_field(
    example_repo: GitOpsRepo,
) -> None:
    text = example_repo.read(ENV_FILE)
    policy = "  auto_rollback: true\n"
    assert policy in text
    health = "  quantum_health: {max_failure_rate: 0.2, min_jobs: 10, window: 30m}\n"
    example_repo.write(ENV_FILE, text.replace(policy, policy + health))
    example_repo.commit()
    line = text.splitlines().index("policy:") + 1

    code, _, err = _validate(example_repo)

    assert code == 1
    assert f"{ENV_FILE}:{line}: policy: quantum_health needs quantum.kind: azure" in err


@pytest.mark.parametrize(
    ("health", "field"),
    [
        ({"max_failure_rate": 1.5}, "max_failure_rate"),
        ({"max_failure_rate": 0.2, "min_jobs": 0}, "min_jobs"),
        ({"max_failure_rate": 0.2, "window": "0s"}, ""),
        ({"min_jobs": 10}, "max_failure_rate"),
    ],
)
def test_a_bad_quantum_health_is_refused(health: dict[str, object], field: str) -> None:
    from qrelease.model.environment import QuantumHealth

    with pytest.raises(ValidationError) as refused:
        QuantumHealth.model_validate(health)
    assert refused.value.errors()[0]["loc"] == ((field,) if field else ())


def test_promotion_order_follows_promote_from_chains() -> None:
    """Chains stay together depth first, siblings by name: the column order of every view."""
    from qrelease.model.environment import Environment, promotion_order

    envs = {
        name: Environment(environment=name, promote_from=parent)
        for name, parent in [
            ("prod", "staging"),
            ("dev", None),
            ("perf", "dev"),
            ("staging", "dev"),
            ("sandbox", None),
        ]
    }
    assert promotion_order(envs) == ("dev", "perf", "staging", "prod", "sandbox")
    assert promotion_order(envs, ["gone", "dev"])[-1] == "gone"
