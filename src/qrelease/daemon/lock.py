"""One process changes a state dir at a time: an exclusive `flock` on `<state>/controller.lock`.

A controller and a CLI reconcile (or two of either) on one state dir would race on the same
release directories and `current` links and record every step twice. The kernel drops a
`flock` when its holder dies, so a crash never leaves a stale lock behind; the file holds
the holder's pid and role (`controller` or `reconcile`) only so a refused second process
can say who is in the way.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from qrelease.source.private import PRIVATE_FILE, private_dir

LOCK_NAME = "controller.lock"


class AlreadyRunningError(Exception):
    """Another process (a controller, a CLI reconcile) holds the state dir's lock."""

    def __init__(self, path: Path, pid: int | None, role: str | None = None) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        who = role or "qrelease process"
        super().__init__(f"{path}: another {who} ({holder}) holds this state dir")
        self.path = path
        self.pid = pid
        self.role = role


class ControllerLock:
    """The state dir's lock, taken by whatever deploys into it: acquire once, release on exit."""

    def __init__(self, state_dir: Path, role: str = "controller") -> None:
        self.path = state_dir / LOCK_NAME
        self.role = role
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock without waiting, or raise AlreadyRunningError naming the holder."""
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, role = _read_holder(fd)
            os.close(fd)
            raise AlreadyRunningError(self.path, pid, role) from None
        except BaseException:
            os.close(fd)
            raise
        os.fchmod(fd, PRIVATE_FILE)  # a lock file an older qrelease made 0644
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.role}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock; releasing twice is harmless. The file stays, for the next holder."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ControllerLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_holder(fd: int) -> tuple[int | None, str | None]:
    """The pid and role the holder wrote (`1234 controller`), as far as they are readable."""
    words = os.pread(fd, 64, 0).decode("ascii", errors="replace").split()
    pid = int(words[0]) if words and words[0].isdigit() else None
    role = words[1] if len(words) > 1 and words[1].isalpha() else None
    return pid, role
