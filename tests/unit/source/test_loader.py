"""The loader on real git repos: every kind of bad input, revisions, and the parse cache."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel, field_validator

from qrelease.cli import main
from qrelease.model.manifest import ReleaseManifest
from qrelease.source.loader import Loader, parse_file
from qrelease.source.parsing import ParsedFile
from qrelease.source.repo import GitRepo
from tests.helpers.gitops import GitOpsRepo

GOOD_MANIFEST = "manifests/qrng/0.1.0.yaml"


def validate(repo: GitOpsRepo, *args: str) -> tuple[int, str, str]:
    """Run `qrelease validate` on the repo; (exit code, stdout, stderr).

    Loading is what these tests check; compiling with qdk is tested with the release checks.
    """
    argv = ["validate", "--no-compile", "--repo", str(repo.path), *args]
    result = CliRunner().invoke(main, argv)
    return result.exit_code, result.stdout, result.stderr


def load(repo: GitOpsRepo, rev: str = "HEAD") -> tuple[list[str], int, int]:
    """(error lines, valid manifests, valid environments) at a revision."""
    with GitRepo(repo.path) as git_repo:
        snapshot = Loader(git_repo).load(rev)
    return [str(e) for e in snapshot.errors], len(snapshot.manifests), len(snapshot.environments)


def test_bundled_examples_are_valid(example_repo: GitOpsRepo) -> None:
    code, out, err = validate(example_repo)
    assert code == 0, err
    assert "5 releases, 3 environments: valid" in out


def test_bad_enum_names_file_line_field_and_the_choices(example_repo: GitOpsRepo) -> None:
    path = "manifests/bell-service/1.1.0.yaml"
    text = example_repo.read(path).replace("profile: Base", "profile: Adaptiv")
    example_repo.write(path, text)
    example_repo.commit()
    code, _, err = validate(example_repo)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "Adaptiv" in row)
    assert code == 1
    assert (
        f"{path}:{line}: quantum.target.profile: 'Adaptiv' is not one of Base, Adaptive_RI, "
        "Adaptive_RIF, Adaptive, Unrestricted" in err
    )
    # the staging pin on the broken release is reported too; every other release still loads
    assert "releases/staging.yaml" in err and "is invalid" in err
    _, manifests, environments = load(example_repo)
    assert manifests == 4 and environments == 3


HOSTILE = {
    "not a mapping": ("- just\n- a list\n", ":1: the document must be a mapping"),
    "alias bomb": (
        'a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n'
        "c: [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n",
        ":2: YAML aliases and anchors are not allowed",
    ),
    "duplicate key": ("app: qrng\napp: qrng\n", ":2: app: duplicate key"),
    "not utf-8": (b"app: q\xffrng\n", ":1: not UTF-8"),
    "broken yaml": ("app: [qrng\n", "invalid YAML"),
    "merge key": ("base: {a: 1}\n<<: {b: 2}\n", ":2: YAML merge keys"),
    "empty": ("", ":1: the file is empty"),
    "too large": ("app: qrng\n" + "#" * (1024 * 1024 + 10) + "\n", "limit is 1048576"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_yaml_is_refused_and_the_rest_loads(example_repo: GitOpsRepo, case: str) -> None:
    content, expected = HOSTILE[case]
    example_repo.write("manifests/qrng/0.3.0.yaml", content)
    example_repo.commit()
    code, _, err = validate(example_repo)
    assert code == 1
    assert f"manifests/qrng/0.3.0.yaml{expected}" in err or (
        "manifests/qrng/0.3.0.yaml" in err and expected in err
    )
    assert "Traceback" not in err
    _, manifests, environments = load(example_repo)
    assert (manifests, environments) == (5, 3)


def manifest_with(example_repo: GitOpsRepo, old: str, new: str, version: str = "0.3.0") -> str:
    """Write a copy of a good manifest as a new version with one edit."""
    text = example_repo.read(GOOD_MANIFEST).replace("version: 0.1.0", f"version: {version}")
    assert old in text
    path = f"manifests/qrng/{version}.yaml"
    example_repo.write(path, text.replace(old, new))
    return path


FIELD_ERRORS = {
    "program escapes": ("programs/qrng.qs", "../bell-service/programs/bell.qs", "quantum.program"),
    "absolute program": ("programs/qrng.qs", "/etc/passwd.qs", "quantum.program"),
    "missing program": ("programs/qrng.qs", "programs/nope.qs", "quantum.program"),
    "unknown field": ("description:", "colour: blue\ndescription:", "colour: unknown field"),
    "bad sha": ("version: 0.3.0}", "version: 0.3.0, sha256: abc}", "sha256"),
    "probabilities": ("0.125\n", "0.5\n", "sum to"),
    "bad duration": ("timeout: 30s", "timeout: soon", "classical.health.timeout"),
    "bad app name": ("app: qrng", "app: QRNG_App", "app: 'QRNG_App' is not a DNS label"),
}


@pytest.mark.parametrize("case", sorted(FIELD_ERRORS))
def test_field_errors_name_the_field(example_repo: GitOpsRepo, case: str) -> None:
    old, new, expected = FIELD_ERRORS[case]
    path = manifest_with(example_repo, old, new)
    example_repo.commit()
    code, _, err = validate(example_repo)
    assert code == 1
    problem = next(line for line in err.splitlines() if line.startswith(path))
    assert expected in problem
    _, manifests, _ = load(example_repo)
    assert manifests == 5


def test_version_must_match_file_name(example_repo: GitOpsRepo) -> None:
    text = example_repo.read(GOOD_MANIFEST)
    example_repo.write("manifests/qrng/0.9.0.yaml", text)
    example_repo.commit()
    _, _, err = validate(example_repo)
    assert (
        "manifests/qrng/0.9.0.yaml:4: version: '0.1.0' does not match the file name '0.9.0'" in err
    )


def test_duplicate_release_in_yaml_and_yml(example_repo: GitOpsRepo) -> None:
    example_repo.write("manifests/qrng/0.1.0.yml", example_repo.read(GOOD_MANIFEST))
    example_repo.commit()
    code, _, err = validate(example_repo)
    assert code == 1 and "duplicate release qrng 0.1.0" in err


def test_symlinks_are_refused(example_repo: GitOpsRepo) -> None:
    (example_repo.path / "manifests/qrng/programs/evil.qs").symlink_to("/etc/hostname")
    (example_repo.path / "releases/qa.yaml").symlink_to("dev.yaml")
    example_repo.commit()
    code, _, err = validate(example_repo)
    assert code == 1
    assert "manifests/qrng/programs/evil.qs: symbolic links are not allowed here" in err
    assert "releases/qa.yaml: symbolic links are not allowed here" in err


def test_program_symlink_leaving_the_app_folder_is_not_a_program(
    example_repo: GitOpsRepo,
) -> None:
    link = example_repo.path / "manifests/qrng/programs/b.qs"
    link.symlink_to("../../bell-service/programs/bell.qs")
    manifest_with(example_repo, "programs/qrng.qs", "programs/b.qs")
    example_repo.commit()
    _, _, err = validate(example_repo)
    assert "manifests/qrng/programs/b.qs: symbolic links are not allowed here" in err
    assert (
        "manifests/qrng/0.3.0.yaml:12: quantum.program: manifests/qrng/programs/b.qs does not exist"
        in err
    )


def test_cross_file_rules(example_repo: GitOpsRepo) -> None:
    staging = example_repo.read("releases/staging.yaml")
    example_repo.write("releases/staging.yaml", staging.replace("qrng: 0.2.0", "qrng: 9.9.9"))
    example_repo.write("releases/qa.yaml", "environment: qa\npromote_from: nowhere\napps: {}\n")
    dev = example_repo.read("releases/dev.yaml").replace(
        "environment: dev\n", "environment: dev\npromote_from: prod\n"
    )
    example_repo.write("releases/dev.yaml", dev)
    example_repo.commit()
    code, _, err = validate(example_repo)
    assert code == 1
    pin_line = next(
        i
        for i, r in enumerate(example_repo.read("releases/staging.yaml").splitlines(), 1)
        if "9.9.9" in r
    )
    assert (
        f"releases/staging.yaml:{pin_line}: apps.qrng: no manifest manifests/qrng/9.9.9.yaml" in err
    )
    assert "releases/qa.yaml:2: promote_from: unknown environment 'nowhere'" in err
    assert "releases/dev.yaml:3: promote_from: promotion chain forms a cycle" in err


def test_environment_name_must_match_file(example_repo: GitOpsRepo) -> None:
    example_repo.write("releases/qa.yaml", "environment: prod\n")
    example_repo.commit()
    _, _, err = validate(example_repo)
    assert "releases/qa.yaml:1: environment: 'prod' does not match the file name 'qa'" in err


def test_older_revision_reads_that_revisions_content(example_repo: GitOpsRepo) -> None:
    first = example_repo.head
    dev = example_repo.read("releases/dev.yaml").replace("qrng: 0.2.0", "qrng: 0.1.0")
    example_repo.write("releases/dev.yaml", dev)
    example_repo.commit("pin qrng back")
    with GitRepo(example_repo.path) as git_repo:
        loader = Loader(git_repo)
        assert loader.load(first).environments["dev"].apps["qrng"] == "0.2.0"
        assert loader.load("HEAD").environments["dev"].apps["qrng"] == "0.1.0"
        assert git_repo.changed_paths(first, "HEAD") == ["releases/dev.yaml"]
    code, out, _ = validate(example_repo, "--rev", first)
    assert code == 0 and first[:12] in out


def test_parse_cache_skips_unchanged_blobs(example_repo: GitOpsRepo) -> None:
    with GitRepo(example_repo.path) as git_repo:
        loader = Loader(git_repo)
        loader.load("HEAD")
        assert loader.parse_count == 8
        loader.load("HEAD")
        assert loader.parse_count == 8
        dev = example_repo.read("releases/dev.yaml").replace("qrng: 0.2.0", "qrng: 0.1.0")
        example_repo.write("releases/dev.yaml", dev)
        example_repo.commit()
        loader.load("HEAD")
        assert loader.parse_count == 9


def test_unknown_revision_is_exit_1(example_repo: GitOpsRepo) -> None:
    code, _, err = validate(example_repo, "--rev", "no-such-branch")
    assert code == 1 and "unknown revision 'no-such-branch'" in err


def test_json_output_lists_errors(example_repo: GitOpsRepo) -> None:
    example_repo.write("releases/qa.yaml", "environment: qa\nbogus: 1\n")
    example_repo.commit()
    argv = ["validate", "--no-compile", "--repo", str(example_repo.path), "--json"]
    result = CliRunner().invoke(main, argv)
    data = json.loads(result.stdout)
    assert result.exit_code == 1
    assert data["errors"] == [
        {"path": "releases/qa.yaml", "line": 2, "field": "bogus", "message": "unknown field"}
    ]


def test_batch_read_matches_single_reads_and_names_a_missing_blob(example_repo: GitOpsRepo) -> None:
    from qrelease.source.repo import SourceError

    with GitRepo(example_repo.path) as git_repo:
        entries = git_repo.list_files("HEAD")
        batch = git_repo.read_blobs(e.sha for e in entries)
        assert batch == {e.sha: git_repo.read_blob(e.sha) for e in entries}
        with pytest.raises(SourceError, match=r"0{40} is not a readable blob"):
            git_repo.read_blobs([entries[0].sha, "0" * 40])


def test_parse_cache_stays_flat_over_many_loads(example_repo: GitOpsRepo) -> None:
    with GitRepo(example_repo.path) as git_repo:
        loader = Loader(git_repo)
        loader.load("HEAD")
        revisions = []
        for index in range(12):
            version = ("0.1.0", "0.2.0")[index % 2]
            dev = example_repo.read("releases/dev.yaml").splitlines()
            dev = [f"  qrng: {version}" if line.startswith("  qrng:") else line for line in dev]
            example_repo.write("releases/dev.yaml", "\n".join(dev) + f"\n# {index}\n")
            revisions.append(example_repo.commit())
            loader.load("HEAD")
        # the 8 files of the newest tree, plus the one parse the last load replaced
        assert loader.cached_parses == 8 + 1
        assert loader.parse_count == 8 + 12
        loader.load(revisions[-2])  # flipping back to the revision before re-parses nothing
        loader.load(revisions[-1])
        assert loader.parse_count == 8 + 12


def _edits(repo: GitOpsRepo) -> list[tuple[str, Callable[[], None]]]:
    """A sequence of commits that each exercise one way a load can change."""
    bell = "manifests/bell-service"

    def pin(env: str, app: str, version: str) -> None:
        lines = repo.read(f"releases/{env}.yaml").splitlines()
        lines = [f"  {app}: {version}" if line.startswith(f"  {app}:") else line for line in lines]
        repo.write(f"releases/{env}.yaml", "\n".join(lines) + "\n")

    def rm(path: str) -> None:
        (repo.path / path).unlink()

    def symlink(path: str, target: str) -> None:
        (repo.path / path).unlink()
        (repo.path / path).symlink_to(target)

    def copy(src: str, dst: str) -> None:
        repo.write(dst, repo.read(src))

    def edit(path: str, old: str, new: str) -> None:
        repo.write(path, repo.read(path).replace(old, new))

    def new_release() -> None:
        edit_src = repo.read(f"{bell}/1.2.0.yaml").replace("version: 1.2.0", "version: 1.3.0")
        repo.write(f"{bell}/1.3.0.yaml", edit_src)

    return [
        ("pin moves", lambda: pin("dev", "qrng", "0.1.0")),
        ("duplicate .yml", lambda: copy(f"{bell}/1.1.0.yaml", f"{bell}/1.1.0.yml")),
        ("duplicate gone", lambda: rm(f"{bell}/1.1.0.yml")),
        ("program deleted", lambda: rm(f"{bell}/programs/bell.qs")),
        (
            "program back",
            lambda: repo.write(f"{bell}/programs/bell.qs", "operation Main() : Unit {}"),
        ),
        ("manifest invalid", lambda: edit(f"{bell}/1.0.0.yaml", "profile: Base", "profile: Nope")),
        ("pin an invalid one", lambda: pin("dev", "bell-service", "1.0.0")),
        ("manifest fixed", lambda: edit(f"{bell}/1.0.0.yaml", "profile: Nope", "profile: Base")),
        ("pin a missing one", lambda: pin("staging", "qrng", "9.9.9")),
        ("it appears", lambda: copy("manifests/qrng/0.2.0.yaml", "manifests/qrng/9.9.9.yaml")),
        ("with the right name", lambda: edit("manifests/qrng/9.9.9.yaml", "0.2.0", "9.9.9")),
        ("new release", new_release),
        ("manifest becomes a symlink", lambda: symlink(f"{bell}/1.3.0.yaml", "1.2.0.yaml")),
        ("env file broken", lambda: repo.write("releases/prod.yaml", "environment: [")),
        ("env renamed", lambda: copy("releases/staging.yaml", "releases/qa.yaml")),
        ("env fixed", lambda: copy("releases/staging.yaml", "releases/prod.yaml")),
        ("file in a subfolder", lambda: copy("releases/dev.yaml", "releases/sub/dev.yaml")),
        ("hostile tag", lambda: edit("releases/dev.yaml", "soak: 0s", "soak: !!set {a}")),
        ("subfolder gone", lambda: shutil.rmtree(repo.path / "releases/sub")),
        ("app folder removed", lambda: shutil.rmtree(repo.path / "manifests/qrng")),
    ]


def test_an_incremental_load_equals_a_fresh_full_load_after_every_kind_of_change(
    example_repo: GitOpsRepo,
) -> None:
    with GitRepo(example_repo.path) as git_repo:
        loader = Loader(git_repo)
        loader.load("HEAD")
        revisions = [example_repo.head]
        for name, change in _edits(example_repo):
            change()
            revisions.append(example_repo.commit(name))
            incremental = loader.load("HEAD")
            with GitRepo(example_repo.path) as fresh:
                assert incremental == Loader(fresh).load("HEAD"), name
        assert loader.parse_count < 8 + 2 * len(revisions)  # only changed files were parsed
        for revision in reversed(revisions):  # backwards, through every change undone
            with GitRepo(example_repo.path) as fresh:
                assert loader.load(revision) == Loader(fresh).load(revision)


def test_a_load_after_history_was_rewritten_lists_the_tree_again(
    example_repo: GitOpsRepo,
) -> None:
    with GitRepo(example_repo.path) as git_repo:
        loader = Loader(git_repo)
        first = example_repo.head
        example_repo.write("releases/qa.yaml", "environment: qa\n")
        gone = example_repo.commit("qa")
        loader.load(gone)
        example_repo.git("reset", "--hard", "--quiet", first)
        example_repo.git("reflog", "expire", "--expire=now", "--all")
        example_repo.git("gc", "--quiet", "--prune=now")
        example_repo.write("releases/qa2.yaml", "environment: qa2\n")
        rewritten = example_repo.commit("qa2")
        assert git_repo.changed_entries(gone, rewritten) is None
        snapshot = loader.load(rewritten)
        assert sorted(snapshot.environments) == ["dev", "prod", "qa2", "staging"]


def test_read_ref_agrees_with_git_for_loose_and_packed_refs(example_repo: GitOpsRepo) -> None:
    from qrelease.source.repo import SourceError

    with GitRepo(example_repo.path) as git_repo:
        assert git_repo.read_ref("refs/heads/main") == example_repo.head
        assert git_repo.resolve("refs/heads/main") == example_repo.head
        example_repo.git("pack-refs", "--all")
        assert git_repo.read_ref("refs/heads/main") == example_repo.head
        assert git_repo.resolve("refs/heads/main") == example_repo.head
        tree = example_repo.git("rev-parse", "HEAD^{tree}")
        (example_repo.path / ".git" / "refs" / "heads" / "odd").write_text(tree + "\n")  # a tree
        with pytest.raises(SourceError, match="unknown revision 'refs/heads/odd'"):
            git_repo.resolve("refs/heads/odd")
        with pytest.raises(SourceError):
            git_repo.read_ref("refs/heads/nope")


# What used to raise out of the loader (and so stopped every app in every environment) is a
# problem of its own file; the hostile files here are a release and an environment that
# nothing pins or uses.
UNPINNED = "manifests/qrng/0.3.0.yaml"
UNUSED_ENV = "releases/qa.yaml"
QA = "environment: qa\nclassical: {{kind: venv}}\npolicy:\n  soak: {soak}\n  freezes:\n{freezes}"
A_FREEZE = "    - {{start: {start}, end: 2027-01-04T00:00:00Z}}\n"
NO_FREEZE = "    []\n"
CRASHES = {
    "impossible date": (
        UNPINNED,
        ("description:", "description: 2026-02-30\nx:"),
        ":5: description: '2026-02-30' is not a valid timestamp (day is out of range for month)",
    ),
    "freeze in month 13": (
        UNUSED_ENV,
        {"soak": "0s", "freezes": A_FREEZE.format(start="2026-13-01")},
        ":6: policy.freezes[0].start: '2026-13-01' is not a valid timestamp "
        "(month must be in 1..12)",
    ),
    "!!float xyz": (
        UNPINNED,
        ("max_distance: 0.01", "max_distance: !!float xyz"),
        ":21: quantum.gates.smoke.max_distance: 'xyz' is not a valid float",
    ),
    "!!int xyz": (
        UNPINNED,
        ("shots: 1000", "shots: !!int xyz"),
        ":18: quantum.gates.smoke.shots: 'xyz' is not a valid int",
    ),
    "!!bool xyz": (
        UNUSED_ENV,
        {"soak": "0s", "freezes": "    - !!bool xyz\n"},
        ":6: policy.freezes[0]: 'xyz' is not a valid bool",
    ),
    "450 levels": (
        UNPINNED,
        ("seed: 3", "seed: " + "[" * 450 + "]" * 450),
        ":19: quantum.gates.smoke.seed[0][0][0]",
    ),
    "999 levels": (
        UNPINNED,
        ("description:", "description: " + "{a: " * 999 + "1" + "}" * 999 + "\nx:"),
        ":5: description.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a",
    ),
    "4,301 digits": (
        UNPINNED,
        ("seed: 3", "seed: " + "7" * 4301),
        ":19: quantum.gates.smoke.seed: integer of 4,301 characters; the limit is 100",
    ),
    "99999999999999d": (
        UNUSED_ENV,
        {"soak": "99999999999999d", "freezes": NO_FREEZE},
        ":4: policy.soak: '99999999999999d' is longer than the limit of 3650d",
    ),
    ".inf seconds": (
        UNPINNED,
        ("timeout: 30s", "timeout: .inf"),
        ":10: classical.health.timeout: inf is not a finite number of seconds",
    ),
    "python object on a sequence": (
        UNPINNED,
        ("entry: Qrng.Main()", "entry: !!python/object/apply:os.system [echo hi]"),
        ":13: quantum.entry: YAML tag '!!python/object/apply:os.system' is not allowed",
    ),
    "!!set on a mapping": (
        UNUSED_ENV,
        {"soak": "0s", "freezes": "    - !!set {a, b}\n"},
        ":6: policy.freezes[0]: YAML tag '!!set' is not allowed",
    ),
    "NUL": (
        UNPINNED,
        ("entry: Qrng.Main()", "entry: Qrng.Ma\0in()"),
        ":13: invalid YAML: unacceptable character #x0000: control characters are not allowed",
    ),
}


def write_hostile(repo: GitOpsRepo, path: str, edit: tuple[str, str] | dict[str, str]) -> None:
    """Write the unpinned release (a copy of qrng 0.2.0 with one edit) or the unused environment."""
    if isinstance(edit, dict):
        repo.write(path, QA.format(**edit))
        return
    text = repo.read("manifests/qrng/0.2.0.yaml").replace("version: 0.2.0", "version: 0.3.0")
    assert edit[0] in text
    repo.write(path, text.replace(edit[0], edit[1], 1))


@pytest.mark.parametrize("case", sorted(CRASHES))
def test_what_used_to_crash_the_loader_is_one_problem_of_its_file(
    example_repo: GitOpsRepo, case: str
) -> None:
    path, edit, expected = CRASHES[case]
    write_hostile(example_repo, path, edit)
    example_repo.commit()
    code, out, err = validate(example_repo)
    assert (code, err.count("\n")) == (1, 1), err
    assert err.startswith(path + (expected if expected.startswith(":") else "")), err
    assert expected in err and "Traceback" not in err
    assert out.endswith("5 releases, 3 environments: 1 problem(s)\n")


def test_status_shows_every_app_while_a_file_is_hostile(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    write_hostile(example_repo, UNPINNED, ("shots: 1000", "shots: !!int xyz"))
    write_hostile(
        example_repo, UNUSED_ENV, {"soak": "0s", "freezes": A_FREEZE.format(start="2026-02-30")}
    )
    example_repo.commit()
    args = ["status", "--repo", str(example_repo.path), "--state", str(tmp_path / "state")]
    result = CliRunner().invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {(row["env"], row["app"]) for row in rows} == {
        (env, app) for env in ("dev", "staging", "prod") for app in ("bell-service", "qrng")
    }


def test_a_huge_value_is_quoted_in_about_two_hundred_characters(example_repo: GitOpsRepo) -> None:
    write_hostile(example_repo, UNPINNED, ("entry: Qrng.Main()", "entry: " + "x" * 1_000_000))
    write_hostile(example_repo, UNUSED_ENV, {"soak": "0s", "freezes": NO_FREEZE})
    qa = example_repo.read(UNUSED_ENV).replace("kind: venv", "kind: " + "v" * 900_000)
    example_repo.write(UNUSED_ENV, qa)
    example_repo.commit()
    _, _, err = validate(example_repo)
    entry, kind = err.splitlines()
    assert entry.startswith(f"{UNPINNED}:13: quantum.entry: 'xxxxxxxx")
    assert entry.endswith("xxxx' is not a Q# call expression such as Bell.Main()")
    assert kind.startswith(f"{UNUSED_ENV}:2: classical.kind: 'vvvvv")
    assert kind.endswith("vvvv' is not one of venv, arm")
    assert len(entry) < len(UNPINNED) + 300 and len(kind) < len(UNUSED_ENV) + 300


def test_a_file_reports_at_most_fifty_problems_and_how_many_more(example_repo: GitOpsRepo) -> None:
    keys = "".join(f"unknown_{index}: {index}\n" for index in range(20_000))
    example_repo.write(UNUSED_ENV, "environment: qa\n" + keys)
    example_repo.commit()
    code, out, err = validate(example_repo)
    lines = err.splitlines()
    assert code == 1 and len(lines) == 51
    assert lines[0] == f"{UNUSED_ENV}:2: unknown_0: unknown field"
    assert lines[49] == f"{UNUSED_ENV}:51: unknown_49: unknown field"
    assert lines[50] == f"{UNUSED_ENV}:52: and 19,950 more problems"
    assert "5 releases, 3 environments" in out


MISPLACED = [
    "releases/sub/dev.yaml",
    "releases/dev/dev.yaml",
    "releases/notes.md",
    "releases/dev.yaml.orig",
    "manifests/x.yaml",
    "manifests/0.1.0.yaml",
]


def test_files_the_loader_does_not_read_are_reported(example_repo: GitOpsRepo) -> None:
    for path in MISPLACED:
        example_repo.write(path, example_repo.read("releases/dev.yaml"))
    allowed = ["manifests/.gitkeep", "releases/.gitkeep", "manifests/qrng/README.md"]
    allowed += ["manifests/qrng/programs/helpers/data.yaml"]
    for path in allowed:
        example_repo.write(path, "anything: at all\n")
    example_repo.commit()
    code, out, err = validate(example_repo)
    assert code == 1 and "5 releases, 3 environments" in out
    reported = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in err.splitlines()}
    assert sorted(reported) == sorted(MISPLACED)
    assert reported["releases/sub/dev.yaml"] == (
        "not read: environment files are releases/<env>.yaml, without subfolders"
    )
    assert reported["manifests/x.yaml"] == (
        "not read: manifests are manifests/<app>/<version>.yaml, in a folder per app"
    )
    assert reported["releases/notes.md"] == (
        "not read: environment files are releases/<env>.yaml (or .yml)"
    )


def test_a_program_beside_its_manifest_is_found(example_repo: GitOpsRepo) -> None:
    example_repo.write(
        "manifests/qrng/qrng.qs", example_repo.read("manifests/qrng/programs/qrng.qs")
    )
    manifest_with(example_repo, "programs/qrng.qs", "qrng.qs")
    example_repo.commit()
    code, out, err = validate(example_repo)
    assert code == 0, err
    assert "6 releases" in out


def test_an_upstream_whose_file_is_broken_is_not_called_unknown(example_repo: GitOpsRepo) -> None:
    example_repo.write("releases/dev.yaml", "environment: dev\napps: !!set {qrng}\n")
    example_repo.commit()
    _, out, err = validate(example_repo)
    assert err == "releases/dev.yaml:2: apps: YAML tag '!!set' is not allowed\n"
    assert "5 releases, 2 environments: 1 problem(s)" in out


def test_a_freeze_is_a_utc_instant_never_a_number(example_repo: GitOpsRepo) -> None:
    freezes = A_FREEZE.format(start=1767225600) + A_FREEZE.format(start="0001-01-01T00:00:00+05:00")
    write_hostile(example_repo, UNUSED_ENV, {"soak": "0s", "freezes": freezes})
    example_repo.commit()
    _, _, err = validate(example_repo)
    assert err.splitlines() == [
        f"{UNUSED_ENV}:6: policy.freezes[0].start: expected a date or timestamp such as "
        "2026-12-20T00:00:00Z",
        f"{UNUSED_ENV}:7: policy.freezes[1].start: 0001-01-01T00:00:00+05:00 is out of range "
        "in UTC",
    ]
    local = A_FREEZE.format(start="2026-12-20T01:00:00+01:00")
    write_hostile(example_repo, UNUSED_ENV, {"soak": "0s", "freezes": local})
    example_repo.commit()
    with GitRepo(example_repo.path) as git_repo:
        freeze = Loader(git_repo).load().environments["qa"].policy.freezes[0]
    assert freeze.start == datetime(2026, 12, 20, tzinfo=UTC) and freeze.start.tzinfo is UTC


def test_a_validator_that_raises_past_pydantic_is_a_problem_of_its_file() -> None:
    class Exploding(BaseModel):
        value: int

        @field_validator("value")
        @classmethod
        def _overflow(cls, value: int) -> int:
            raise OverflowError("a validator bug, not the file's")

    parsed = parse_file(b"value: 1\n", Exploding)
    assert parsed.model is None
    assert parsed.problems == (
        (1, "", 'could not be validated: OverflowError: "a validator bug, not the file\'s"'),
    )


# -- the state dir's parse cache, shared by every process -----------------------------------


def cached_load(repo: GitOpsRepo, state: Path, rev: str = "HEAD") -> Loader:
    """A fresh loader (as a new CLI process has) that loaded `rev` through the state's cache."""
    from qrelease.store import open_parse_cache

    with GitRepo(repo.path) as git_repo, open_parse_cache(state) as cache:
        loader = Loader(git_repo, cache=cache)
        loader.snapshot = loader.load(rev)  # type: ignore[attr-defined]  # kept for the test
    return loader


def test_a_second_process_parses_nothing_and_a_changed_blob_is_parsed_again(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    first = cached_load(example_repo, state)
    assert (first.parse_count, first.cache_hits) == (8, 0)
    again = cached_load(example_repo, state)
    assert (again.parse_count, again.cache_hits) == (0, 8)
    path = "manifests/qrng/0.2.0.yaml"
    example_repo.write(path, example_repo.read(path).replace("shots: ", "shots: 1"))
    example_repo.commit("more shots")
    changed = cached_load(example_repo, state)
    assert (changed.parse_count, changed.cache_hits) == (1, 7)
    with GitRepo(example_repo.path) as git_repo:
        fresh = Loader(git_repo).load("HEAD")
    assert changed.snapshot == fresh  # type: ignore[attr-defined]


def test_a_cached_release_is_decoded_only_when_its_manifest_is_asked_for(
    example_repo: GitOpsRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    cached_load(example_repo, state)
    snapshot = cached_load(example_repo, state).snapshot  # type: ignore[attr-defined]
    with GitRepo(example_repo.path) as git_repo:
        fresh = Loader(git_repo).load("HEAD")
    expected = dict(fresh.manifests.items())  # decoded before counting starts
    decoded: list[tuple[str, str]] = []
    real = ParsedFile.manifest

    def counting(self: ParsedFile) -> ReleaseManifest | None:
        if self.model is None and self.facts is not None:
            decoded.append((self.facts.app, self.facts.version))
        return real(self)

    monkeypatch.setattr(ParsedFile, "manifest", counting)
    assert snapshot.pins() == fresh.pins() and set(snapshot.manifests) == set(fresh.manifests)
    assert ("qrng", "0.2.0") in snapshot.manifests and snapshot.versions("qrng")
    assert decoded == []  # targets, keys and versions come without a model
    assert snapshot.manifest("qrng", "0.2.0") == expected[("qrng", "0.2.0")]
    assert decoded == [("qrng", "0.2.0")]
    assert snapshot.manifest("qrng", "0.2.0") is snapshot.manifest("qrng", "0.2.0")  # kept
    release = snapshot.release("bell-service", "1.0.0")
    assert release is not None and release.target == "ionq.simulator"
    assert decoded == [("qrng", "0.2.0")]  # a release's target needs no manifest either
    assert dict(snapshot.manifests.items()) == expected
    assert sorted(decoded) == sorted(expected)  # each decoded once


def test_a_cached_parse_reports_the_same_problems_with_their_lines(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    path = "manifests/bell-service/1.1.0.yaml"
    text = example_repo.read(path).replace("profile: Base", "profile: Adaptiv")
    text = text.replace("app: bell-service", "app: bell-servic")
    example_repo.write(path, text)
    example_repo.commit()
    state = ["--state", str(tmp_path / "state")]
    cold = validate(example_repo, *state)
    warm = validate(example_repo, *state)
    assert cold == warm and cold[0] == 1
    assert f"{path}:{_line_of(text, 'Adaptiv')}: quantum.target.profile" in warm[2]


def test_a_valid_manifest_in_the_wrong_place_is_located_after_a_cached_parse(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    text = example_repo.read("manifests/qrng/0.2.0.yaml")
    example_repo.write("manifests/qrng/9.9.9.yaml", "# moved\n\n" + text)
    example_repo.commit()
    state = ["--state", str(tmp_path / "state")]
    cold, warm = validate(example_repo, *state), validate(example_repo, *state)
    line = _line_of("# moved\n\n" + text, "version:")
    assert cold == warm
    assert f"manifests/qrng/9.9.9.yaml:{line}: version: '0.2.0' does not match" in warm[2]


def test_a_cache_entry_that_does_not_decode_is_parsed_again(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    import sqlite3

    from qrelease.store.parsecache import CACHE_DIR, CACHE_FILE

    state = tmp_path / "state"
    cached_load(example_repo, state)
    with sqlite3.connect(state / CACHE_DIR / CACHE_FILE) as connection:
        # a well-formed row (its checksum matches) whose value is not a parse
        connection.execute(
            "UPDATE parses SET value = x'80', checksum = ? WHERE rowid = 1",
            (__import__("hashlib").blake2b(b"\x80", digest_size=16).digest(),),
        )
    connection.close()
    again = cached_load(example_repo, state)
    assert (again.parse_count, again.cache_hits) == (1, 7)
    assert cached_load(example_repo, state).parse_count == 0


def test_a_corrupt_cache_file_is_rebuilt_and_the_load_is_unchanged(
    example_repo: GitOpsRepo, tmp_path: Path
) -> None:
    from qrelease.store.parsecache import CACHE_DIR, CACHE_FILE

    state = tmp_path / "state"
    cached_load(example_repo, state)
    cache = state / CACHE_DIR / CACHE_FILE
    cache.write_bytes(b"\x00garbage" * 4096)
    for extra in ("-wal", "-shm"):
        Path(f"{cache}{extra}").unlink(missing_ok=True)
    code, out, err = validate(example_repo, "--state", str(state))
    assert code == 0 and "5 releases, 3 environments: valid" in out, err
    assert cached_load(example_repo, state).parse_count == 0  # rebuilt by that run


def _line_of(text: str, needle: str) -> int:
    return next(i for i, row in enumerate(text.splitlines(), 1) if needle in row)
