"""Create virtualenvs and install pinned packages into them, with uv or (fallback) pip.

The venv deployer builds each release in a temporary directory and renames it into place,
so an installer must leave a virtualenv that still works after that move: uv's
`--relocatable` venvs do; pip's absolute shebangs are rewritten by `relocate()`.
Every command runs with a timeout, its output goes to a temporary file and only a
bounded tail is read back, and credentials in URLs never reach a message.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from qrelease.redaction import redact

OUTPUT_TAIL_BYTES = 4000
TRUNCATED = "[...] "
"""Marks output whose beginning was cut off."""
VENV_TIMEOUT_SECONDS = 120.0
INSTALL_TIMEOUT_SECONDS = 900.0
_MAX_SCRIPT_BYTES = 1024 * 1024
_UV_SOURCE_VARS = (
    "UV_DEFAULT_INDEX",
    "UV_INDEX_URL",
    "UV_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
)
_PIP_SOURCE_VARS = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX")


@dataclass(frozen=True)
class Completed:
    """A finished command: exit code (None when it timed out) and the tail of its output."""

    returncode: int | None
    output: str


def _tail(sink: IO[bytes], limit: int) -> str:
    """The last `limit` bytes written to `sink`, decoded leniently, from a line's start."""
    size = sink.seek(0, os.SEEK_END)
    sink.seek(max(0, size - limit))
    data = sink.read(limit)
    if size > limit:  # a cut line lost its head, where a secret's name would be: drop it all
        data = _from_boundary(data)
    return data.decode("utf-8", errors="replace").strip()


def _from_boundary(data: bytes) -> bytes:
    """`data` after its first newline, else after its first space, else nothing."""
    for boundary in (b"\n", b" "):
        start = data.find(boundary)
        if start >= 0:
            return data[start + 1 :]
    return b""


def capped(text: str, limit: int) -> str:
    """The end of already redacted `text` in at most `limit` bytes, from a line start, marked.

    >>> capped("first line\\nsecond line", 20)
    '[...] second line'
    >>> capped("short", 20)
    'short'
    """
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    end = data[len(data) - max(0, limit - len(TRUNCATED)) :]
    return TRUNCATED + _from_boundary(end).decode("utf-8", errors="ignore").strip()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill a command and everything it started, then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_bounded(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    tail: int = OUTPUT_TAIL_BYTES,
) -> Completed:
    """Run `argv` (never through a shell) with a timeout, keeping the tail of stdout+stderr."""
    with tempfile.TemporaryFile(prefix="qrelease-out-") as sink:
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=None if env is None else dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as error:
            return Completed(127, f"cannot run {argv[0]}: {error.strerror}")
        code = _wait(process, timeout)
        return Completed(code, redact(_tail(sink, tail)))


def _wait(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    """Block until the process exits (no polling), killing its group if `timeout` passes first.

    `Popen.wait(timeout=...)` polls with sleeps of up to 50 ms, which adds that much to
    every short installer and health command; a timer thread costs nothing until it fires.
    """
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        _kill_group(process)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        code = process.wait()
    finally:
        timer.cancel()
    return None if expired.is_set() else code


_UNREACHABLE = re.compile(
    r"Failed to read `--find-links`|Failed to fetch|error sending request|tcp connect error"
    r"|Connection (?:refused|reset)|timed out|dns error|Network is unreachable"
    r"|not found in the (?:provided package locations|package registry)"
    r"|No matching distribution found|Could not fetch URL|Server Error|status code 5\d\d"
)

_OFFLINE_HELPS = re.compile(
    r"Failed to fetch|error sending request|tcp connect error|dns error|Network is unreachable"
    r"|Connection (?:refused|reset)|Could not connect"
)
"""uv's words for an index it could not reach: its cache may still hold the pinned packages."""


class InstallFailed(Exception):
    """An installer step failed; carries what failed and the tail of the tool's output."""

    def __init__(self, step: str, output: str, *, timed_out: bool = False) -> None:
        super().__init__(f"{step} failed")
        self.step = step
        self.output = output
        self.timed_out = timed_out

    @property
    def transient(self) -> bool:
        """True when a package source could not be reached (or had nothing yet): retry later.

        >>> InstallFailed("install", "error: Failed to fetch: https://pypi/simple/x/").transient
        True
        >>> InstallFailed("install", "Hash mismatch for `x==1.0`").transient
        False
        """
        return self.timed_out or bool(_UNREACHABLE.search(self.output))


@dataclass(frozen=True)
class Sources:
    """Where packages come from; `find_links` is already resolved to a path or URL.

    `find_links` adds a wheel directory or page to the index, as in pip and uv;
    `index_url` replaces the default index; `no_index` installs from `find_links` alone.
    """

    find_links: str | None = None
    index_url: str | None = None
    no_index: bool = False


class Installer(Protocol):
    """Creates a virtualenv and installs a requirements file into it."""

    name: str

    def create_venv(self, venv: Path) -> None:
        """Create an empty virtualenv at `venv`; raise InstallFailed on error."""
        ...

    def install(self, venv: Path, requirements: Path, sources: Sources) -> None:
        """Install `requirements` into `venv`; raise InstallFailed on error."""
        ...

    def relocate(self, venv: Path, final: Path) -> None:
        """Make the virtualenv at `venv` work once it has been moved to `final`."""
        ...


def _checked(step: str, completed: Completed, timeout: float) -> None:
    """Raise InstallFailed unless the command exited 0."""
    if completed.returncode is None:
        raise InstallFailed(
            f"{step} (timed out after {timeout:g}s)", completed.output, timed_out=True
        )
    if completed.returncode != 0:
        raise InstallFailed(f"{step} (exit {completed.returncode})", completed.output)


def _source_args(sources: Sources) -> list[str]:
    """Command-line options for the sources; the index URL goes by environment instead."""
    args = ["--find-links", sources.find_links] if sources.find_links else []
    if sources.no_index:
        args.append("--no-index")
    return args


def _source_env(sources: Sources, names: Sequence[str], index_var: str) -> dict[str, str]:
    """This process's environment, with the operator's package sources replaced by ours.

    When the environment file replaces the index (or goes offline), the operator's index
    settings are dropped; a `find_links` alone adds to them.
    """
    env = dict(os.environ)
    if sources.index_url or sources.no_index:
        for name in names:
            env.pop(name, None)
    if sources.index_url:
        env[index_var] = sources.index_url
    return env


class UvInstaller:
    """uv: relocatable venvs, verified hashes where given, no config files consulted.

    The index URL is passed as UV_DEFAULT_INDEX so credentials stay out of argv.
    """

    name = "uv"

    def __init__(self, uv: str, python: str, *, timeout: float = INSTALL_TIMEOUT_SECONDS) -> None:
        self.uv = uv
        self.python = python
        self.timeout = timeout

    def create_venv(self, venv: Path) -> None:
        """Create a relocatable venv for the configured interpreter, never downloading one."""
        argv = [self.uv, "venv", "--relocatable", "--no-config", "--no-python-downloads"]
        argv += ["--quiet", "--python", self.python, str(venv)]
        completed = run_bounded(argv, timeout=VENV_TIMEOUT_SECONDS, cwd=venv.parent)
        _checked("uv venv", completed, VENV_TIMEOUT_SECONDS)

    def install(self, venv: Path, requirements: Path, sources: Sources) -> None:
        """`uv pip install -r requirements` into the venv's interpreter.

        When the package index cannot be reached, the install is tried once more with
        `--offline`: uv then takes what it needs from its cache (the pins are exact, and
        hashes are checked where given), so a machine that installed these packages before
        deploys without the network. If that fails too, the first failure is reported.
        """
        argv = [self.uv, "pip", "install", "--no-config", "--python", str(venv_python(venv))]
        argv += [*_source_args(sources), "-r", str(requirements)]
        env = _source_env(sources, _UV_SOURCE_VARS, "UV_DEFAULT_INDEX")
        completed = run_bounded(argv, timeout=self.timeout, env=env, cwd=venv.parent)
        if completed.returncode not in (0, None) and _OFFLINE_HELPS.search(completed.output):
            cached = run_bounded(
                [*argv, "--offline"], timeout=self.timeout, env=env, cwd=venv.parent
            )
            if cached.returncode == 0:
                return
        _checked("uv pip install", completed, self.timeout)

    def relocate(self, venv: Path, final: Path) -> None:
        """Nothing to do: the venv was created `--relocatable`."""


class PipInstaller:
    """The fallback when uv is missing: `python -m venv` and the running interpreter's pip.

    pip checks hashes all-or-nothing: once one requirement has a hash, every requirement
    and dependency needs one. Config files are ignored (PIP_CONFIG_FILE=/dev/null).
    """

    name = "pip"

    def __init__(self, python: str, *, timeout: float = INSTALL_TIMEOUT_SECONDS) -> None:
        self.python = python
        self.timeout = timeout

    def create_venv(self, venv: Path) -> None:
        """Create a venv without pip inside it (pip runs from outside with --python)."""
        argv = [self.python, "-m", "venv", "--without-pip", str(venv)]
        completed = run_bounded(argv, timeout=VENV_TIMEOUT_SECONDS, cwd=venv.parent)
        _checked("python -m venv", completed, VENV_TIMEOUT_SECONDS)

    def install(self, venv: Path, requirements: Path, sources: Sources) -> None:
        """`pip --python <venv python> install -r requirements`."""
        argv = [sys.executable, "-m", "pip", "--python", str(venv_python(venv)), "install"]
        argv += ["--no-input", "--disable-pip-version-check", *_source_args(sources)]
        argv += ["-r", str(requirements)]
        env = _source_env(sources, _PIP_SOURCE_VARS, "PIP_INDEX_URL")
        env["PIP_CONFIG_FILE"] = os.devnull
        completed = run_bounded(argv, timeout=self.timeout, env=env, cwd=venv.parent)
        _checked("pip install", completed, self.timeout)

    def relocate(self, venv: Path, final: Path) -> None:
        """Rewrite the build path to the final path in the scripts under bin/."""
        old, new = str(venv).encode(), str(final).encode()
        for script in venv_bin(venv).iterdir():
            if script.is_symlink() or not script.is_file():
                continue
            if script.stat().st_size > _MAX_SCRIPT_BYTES:
                continue
            content = script.read_bytes()
            if old in content:
                script.write_bytes(content.replace(old, new))


def venv_bin(venv: Path) -> Path:
    """The directory holding a virtualenv's interpreter and console scripts."""
    return venv / "bin"


def venv_python(venv: Path) -> Path:
    """A virtualenv's interpreter."""
    return venv_bin(venv) / "python"


def find_uv() -> str | None:
    """The uv executable shipped with qrelease's own dependencies, else one on PATH."""
    try:
        from uv import find_uv_bin
    except ImportError:
        return shutil.which("uv")
    try:
        return find_uv_bin()
    except FileNotFoundError:
        return shutil.which("uv")


def default_installer(python: str | None = None) -> Installer:
    """uv when it can be found, else pip; release venvs use `python` (default: this one)."""
    interpreter = python or sys.executable
    uv = find_uv()
    if uv is not None:
        return UvInstaller(uv, interpreter)
    return PipInstaller(interpreter)
