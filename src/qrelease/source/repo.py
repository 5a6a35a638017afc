"""Read a GitOps repo at any revision without a checkout, through the git CLI.

GitPython's object API walks trees in Python and is 10-100x slower than git itself, so
bulk reads go through `repo.git` passthrough: `ls-tree` for listings, `diff --name-only`
for changes, and GitPython's persistent `cat-file --batch` process for blob contents.
Call `close()` (or use the context manager) so long-running processes don't leak it.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import git

TRACKED_ROOTS = ("manifests", "releases")
SYMLINK_MODE = "120000"
GITLINK_MODE = "160000"


class SourceError(Exception):
    """The repository or a revision cannot be read; the message says which and why."""


@dataclass(frozen=True, slots=True)
class TreeEntry:
    """One file in a tree listing (`git ls-tree -r -l`)."""

    mode: str
    sha: str
    size: int
    path: str

    @property
    def is_symlink(self) -> bool:
        """True for a symbolic link (never followed)."""
        return self.mode == SYMLINK_MODE

    @property
    def is_regular(self) -> bool:
        """True for an ordinary file blob."""
        return self.mode in ("100644", "100755")


class GitRepo:
    """A local git repository (bare or not) read through the git CLI."""

    def __init__(self, path: Path | str) -> None:
        try:
            self._repo = git.Repo(path)
        except (git.exc.NoSuchPathError, git.exc.InvalidGitRepositoryError):
            raise SourceError(f"{path}: not a git repository") from None
        self.path = Path(self._repo.git_dir if self._repo.bare else self._repo.working_dir)
        self._batch_lock = threading.Lock()  # the persistent cat-file process serves one caller

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the persistent git processes and release file handles."""
        with self._batch_lock:
            self._repo.git.clear_cache()
        self._repo.close()

    @property
    def git(self) -> git.Git:
        """The raw git command passthrough, for the writer."""
        return self._repo.git

    def resolve(self, rev: str) -> str:
        """The full commit id a revision names."""
        if _is_sha(rev) and self._object_type(rev) == "commit":
            return rev  # the persistent batch-check answers without starting a git process
        if rev.startswith("refs/heads/"):
            sha = self._ref_file_value(rev)  # the ref files, read in process
            if sha is not None and self._object_type(sha) == "commit":
                return sha
        return self._rev_parse(rev)

    def _rev_parse(self, rev: str) -> str:
        try:
            return str(
                self._repo.git.rev_parse("--verify", "--end-of-options", f"{rev}^{{commit}}")
            )
        except git.exc.GitCommandError:
            raise SourceError(f"unknown revision {rev!r}") from None

    def read_ref(self, ref: str) -> str:
        """The commit a full ref name points at, read from the ref files without running git.

        A loose ref file wins over `packed-refs`, as in git; anything unusual (a symbolic
        ref, a tag object) falls back to `resolve`.
        """
        return self._ref_file_value(ref) or self._rev_parse(ref)

    def _ref_file_value(self, ref: str) -> str | None:
        """The object id in a ref's loose file or its `packed-refs` line, if plainly there."""
        git_dir = Path(self._repo.git_dir)
        loose = git_dir / ref
        if loose.is_file():
            value = loose.read_text(encoding="ascii", errors="replace").strip()
            return value if _is_sha(value) else None
        packed = git_dir / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8", errors="replace").splitlines():
                sha, _, name = line.partition(" ")
                if name == ref and _is_sha(sha):
                    return sha
        return None

    def list_files(self, rev: str, roots: Iterable[str] = TRACKED_ROOTS) -> list[TreeEntry]:
        """Every file under `roots` at `rev`, with mode, blob id and size."""
        output = self._repo.git.ls_tree("-r", "-l", "-z", "--full-tree", rev, "--", *roots)
        return [_tree_entry(record) for record in output.split("\0") if record]

    def read_blob(self, sha: str) -> bytes:
        """The contents of one blob, through the persistent `cat-file --batch` process."""
        with self._batch_lock:
            _hexsha, kind, _size, data = self._repo.git.get_object_data(sha)
        kind_name = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind_name != "blob":
            raise SourceError(f"{sha} is a {kind!r}, not a blob")
        return bytes(data)

    def read_blobs(self, shas: Iterable[str]) -> dict[str, bytes]:
        """Many blobs through one `git cat-file --batch` run (requests written by a thread)."""
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return {}
        argv = ["git", "--git-dir", str(self._repo.git_dir), "cat-file", "--batch"]
        with subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        ) as process:
            assert process.stdin is not None and process.stdout is not None
            writer = threading.Thread(target=_feed, args=(process.stdin, wanted), daemon=True)
            writer.start()
            try:
                return {sha: _read_one(process.stdout, sha) for sha in wanted}
            except BaseException:
                process.kill()  # unblocks the writer if git stopped reading
                raise
            finally:
                writer.join()

    def changed_paths(self, old: str, new: str, roots: Iterable[str] = TRACKED_ROOTS) -> list[str]:
        """Paths under `roots` that differ between two revisions."""
        output = self._repo.git.diff("--name-only", "-z", "--no-renames", old, new, "--", *roots)
        return [path for path in output.split("\0") if path]

    def changed_entries(
        self, old: str, new: str, roots: Iterable[str] = TRACKED_ROOTS
    ) -> dict[str, TreeEntry | None] | None:
        """Files under `roots` that differ between two commits: path -> new entry, None if gone.

        One `git diff-tree` (plumbing: no user diff config applies) plus the sizes of the
        new blobs from the persistent `cat-file --batch-check`. None when `old` is no longer
        in the object database (history was rewritten and collected).
        """
        try:
            output = self._repo.git.diff_tree(
                "-r", "-z", "--raw", "--no-renames", "--no-abbrev", old, new, "--", *roots
            )
        except git.exc.GitCommandError:
            return None
        fields = output.split("\0")
        changes: dict[str, TreeEntry | None] = {}
        for meta, path in zip(fields[0::2], fields[1::2], strict=False):
            _old_mode, mode, _old_sha, sha, status = meta.lstrip(":").split()
            if status == "D":
                changes[path] = None
            else:
                changes[path] = TreeEntry(mode=mode, sha=sha, size=self._size(mode, sha), path=path)
        return changes

    def _size(self, mode: str, sha: str) -> int:
        """A blob's size, as `ls-tree -l` reports it (0 for a submodule's commit)."""
        if mode == GITLINK_MODE:
            return 0
        with self._batch_lock:
            _hexsha, _kind, size = self._repo.git.get_object_header(sha)
        return int(size)

    def _object_type(self, sha: str) -> str | None:
        """An object's type from the persistent `cat-file --batch-check`; None if missing."""
        with self._batch_lock:
            try:
                _hexsha, kind, _size = self._repo.git.get_object_header(sha)
            except ValueError:  # GitPython raises this for a "missing" answer
                return None
        return kind.decode() if isinstance(kind, bytes) else str(kind)

    def show_file(self, rev: str, path: str) -> bytes | None:
        """A file's bytes at a revision, or None when it does not exist there."""
        try:
            sha = self._repo.git.rev_parse("--verify", "--quiet", f"{rev}:{path}")
        except git.exc.GitCommandError:
            return None
        return self.read_blob(str(sha))

    def commit_time(self, rev: str) -> int:
        """Committer time of a revision, as a Unix timestamp."""
        return int(self._repo.git.log("-1", "--format=%ct", rev))

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True when `ancestor` is in the history of `descendant`."""
        try:
            self._repo.git.merge_base("--is-ancestor", ancestor, descendant)
        except git.exc.GitCommandError:
            return False
        return True

    def merge_base(self, one: str, other: str) -> str:
        """The best common ancestor of two revisions (what a pull request is compared with)."""
        try:
            return str(self._repo.git.merge_base(self.resolve(one), self.resolve(other)))
        except git.exc.GitCommandError:
            raise SourceError(f"{one!r} and {other!r} have no common history") from None

    def has_commit(self, sha: str) -> bool:
        """True when the object database has this commit."""
        try:
            self._repo.git.cat_file("-e", f"{sha}^{{commit}}")
        except git.exc.GitCommandError:
            return False
        return True


def _tree_entry(record: str) -> TreeEntry:
    meta, path = record.split("\t", 1)
    mode, _kind, sha, size = meta.split()
    return TreeEntry(mode=mode, sha=sha, size=int(size) if size != "-" else 0, path=path)


def _feed(stdin: IO[bytes], shas: list[str]) -> None:
    """Write one request line per blob, then close so git knows the batch is complete."""
    with contextlib.suppress(BrokenPipeError), stdin:
        stdin.write("".join(f"{sha}\n" for sha in shas).encode())


def _read_one(stdout: IO[bytes], sha: str) -> bytes:
    """Read one `<sha> blob <size>` answer and its content from a `cat-file --batch` stream."""
    header = stdout.readline().split()
    if len(header) != 3 or header[1] != b"blob":
        raise SourceError(
            f"{sha} is not a readable blob ({b' '.join(header).decode(errors='replace')})"
        )
    data = stdout.read(int(header[2]))
    stdout.read(1)
    return data


def _is_sha(value: str) -> bool:
    return len(value) == 40 and all(c in "0123456789abcdef" for c in value)
