"""The release manifest's health command: only the release's own programs, nothing outside it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from qrelease.cli import main
from qrelease.model.manifest import HealthCheck
from tests.helpers.gitops import GitOpsRepo

MANIFEST = "manifests/qrng/0.1.0.yaml"
EXAMPLE_HEALTH = "command: [qrng, --self-check]"

REFUSED = {
    "reads a system file": (["cat", "/etc/passwd"], "argument 1 '/etc/passwd' is an absolute path"),
    "absolute program": (["/usr/bin/touch", "/x"], "'/usr/bin/touch' is not a console script name"),
    "climbs to a shell": (["../../bin/sh"], "'../../bin/sh' is not a console script name"),
    "relative program path": (["bin/app"], "'bin/app' is not a console script name"),
    "shell syntax": (["app;rm", "-rf"], "'app;rm' is not a console script name"),
    "substitution": (["$(id)"], "'$(id)' is not a console script name"),
    "home": (["~/bin/app"], "'~/bin/app' is not a console script name"),
    "empty program": ([""], "'' is not a console script name"),
    "python script": (["python", "check.py"], "python runs only as [python, -m, <module>, ...]"),
    "python -c": (["python3", "-c", "print(1)"], "python3 runs only as [python3, -m"),
    "python -m path": (["python", "-m", "a/b"], "python runs only as [python, -m"),
    "option value": (["app", "--config=/etc/app.toml"], "'--config=/etc/app.toml' is an absolute"),
    "short option value": (["app", "-o/etc/x"], "'-o/etc/x' is an absolute path"),
    "parent argument": (["app", "../../secrets"], "climbs out of the release with '..'"),
    "parent in a value": (["app", "--out=logs/../../x"], "climbs out of the release with '..'"),
    "home argument": (["app", "~/.ssh/id_rsa"], "is an absolute path"),
    "file url": (["app", "file:///etc/passwd"], "is a file: URL"),
    "control characters": (["app", "a\nb"], "holds control characters"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_command_reaching_outside_the_release_is_refused(case: str) -> None:
    command, message = REFUSED[case]
    with pytest.raises(ValidationError) as refused:
        HealthCheck(command=tuple(command))
    assert refused.value.errors()[0]["loc"] == ("command",)
    assert message in str(refused.value)


ACCEPTED = {
    "console script": ["bell-service", "--self-check"],
    "module of the release": ["python", "-m", "bell_service", "--self-check"],
    "versioned python": ["python3.11", "-m", "bell_service.health"],
    "loopback URL": ["app", "--url", "http://127.0.0.1:8000/healthz"],
    "relative file": ["app", "--config=conf/app.toml"],
    "dots in a value": ["app", "--range=1..2"],
}


@pytest.mark.parametrize("case", sorted(ACCEPTED))
def test_commands_of_the_release_itself_are_accepted(case: str) -> None:
    assert HealthCheck(command=tuple(ACCEPTED[case])).command == tuple(ACCEPTED[case])


def test_module_names_the_module_of_a_python_command_only() -> None:
    assert HealthCheck(command=("python", "-m", "qrng", "--self-check")).module == "qrng"
    assert HealthCheck(command=("qrng", "-m", "x")).module is None


def _validate(repo: GitOpsRepo) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", "--no-compile", "--repo", str(repo.path)])
    return result.exit_code, result.stderr


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("[cat, /etc/passwd]", "argument 1 '/etc/passwd' is an absolute path"),
        ("[/usr/bin/touch, /x]", "'/usr/bin/touch' is not a console script name"),
        ("[../../bin/sh]", "'../../bin/sh' is not a console script name"),
    ],
)
def test_validate_names_file_line_and_field_of_a_command_outside_the_release(
    example_repo: GitOpsRepo, command: str, message: str
) -> None:
    text = example_repo.read(MANIFEST)
    assert EXAMPLE_HEALTH in text
    example_repo.write(MANIFEST, text.replace(EXAMPLE_HEALTH, f"command: {command}"))
    example_repo.commit()
    code, err = _validate(example_repo)
    line = next(n for n, row in enumerate(text.splitlines(), 1) if EXAMPLE_HEALTH in row)
    assert code == 1
    assert f"{MANIFEST}:{line}: classical.health.command: {message}" in err


def test_bundled_health_commands_stay_valid(example_repo: GitOpsRepo) -> None:
    code, err = _validate(example_repo)
    assert code == 0, err


def _quantum(**fields: object) -> dict[str, object]:
    return {"target": {"id": "ionq.simulator", "profile": "Base"}, **fields}


@pytest.mark.parametrize(
    ("fields", "kind"),
    [
        ({"program": "programs/bell.qs", "entry": "Bell.Main()"}, "qsharp"),
        ({"program": "programs/bell.qasm"}, "openqasm"),
        ({"program": "programs/bell_circuit.py", "circuit": "make_circuit"}, "qiskit"),
    ],
)
def test_the_program_kind_follows_the_file_suffix(fields: dict[str, object], kind: str) -> None:
    from qrelease.model.manifest import Quantum

    assert Quantum.model_validate(_quantum(**fields)).kind == kind


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"program": "programs/bell.qs"}, "a Q# program needs an entry"),
        ({"program": "programs/bell.qasm", "entry": "Bell.Main()"}, "OpenQASM 3 program has none"),
        ({"program": "programs/c.py"}, "a Qiskit program needs circuit"),
        ({"program": "programs/c.py", "circuit": "os.system"}, "is not a Python name"),
        ({"program": "programs/b.qasm", "circuit": "make"}, "circuit is for Qiskit programs"),
        ({"program": "programs/b.txt"}, "is not a Q# (.qs), OpenQASM 3 (.qasm) or Qiskit (.py)"),
    ],
)
def test_entry_and_circuit_must_fit_the_program_kind(
    fields: dict[str, object], problem: str
) -> None:
    from qrelease.model.manifest import Quantum

    with pytest.raises(ValidationError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        Quantum.model_validate(_quantum(**fields))


@pytest.mark.parametrize(
    ("gates", "field"),
    [
        ({"smoke": {"seed": 2**63, "expect": {"[Zero]": 1.0}}}, "gates.smoke.seed"),
        ({"estimate": {"max_physical_qubits": 10**13}}, "gates.estimate.max_physical_qubits"),
    ],
)
def test_gate_numbers_beyond_any_real_use_are_refused(gates: dict[str, object], field: str) -> None:
    """A hostile manifest cannot hand qdk a seed or a budget no machine word holds."""
    from qrelease.model.manifest import Quantum

    fields = _quantum(program="programs/bell.qs", entry="Bell.Main()", gates=gates)
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        Quantum.model_validate(fields)


def test_equal_fields_sets_are_shared_and_a_copy_gets_its_own() -> None:
    from qrelease.model.manifest import share_fields_set
    from qrelease.model.observed import ObservedState

    states = [ObservedState(env="dev", app=f"app-{i}", desired="1.0.0") for i in range(3)]
    other = ObservedState(env="dev", app="other")
    shared = list(share_fields_set([*states, other]))
    assert shared[:3] == states
    assert shared[0].__pydantic_fields_set__ is shared[2].__pydantic_fields_set__
    assert shared[0].__pydantic_fields_set__ is not other.__pydantic_fields_set__
    assert other.model_fields_set == {"env", "app"}
    changed = shared[0].model_copy(update={"deployed": "1.0.0"})
    assert changed.model_fields_set == {"env", "app", "desired", "deployed"}
    assert shared[1].model_fields_set == {"env", "app", "desired"}  # the shared set is intact
    assert shared[1].model_dump(exclude_unset=True) == {
        "env": "dev",
        "app": "app-1",
        "desired": "1.0.0",
    }
