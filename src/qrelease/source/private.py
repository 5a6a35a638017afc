"""Keeping secrets off the disk: remote credentials reach git in memory, state files stay private.

A URL such as `https://bot:token@host/gitops.git` must never land in a mirror's `config`,
its `FETCH_HEAD` or a reflog, where anyone who can read the state dir would find it. So
the credentials are split off before git sees the URL: every repository qrelease keeps
records the URL without them, and each git process that talks to the remote gets them
from a credential helper defined in that process's own environment (`GIT_CONFIG_*`),
which prints two environment variables set for that process alone. No file holds them,
they are not on any command line, and no helper the user configured (which might store
them) is asked. Git's own prompts are turned off, so a wrong password fails at once.

The state dir is readable by its owner only (0700), and the files qrelease writes there
that could tell an attacker something (the database, the lock, repository configs) are
0600.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

from qrelease.redaction import redact_url
from qrelease.source.repo import SourceError

USERNAME_VARIABLE = "QRELEASE_GIT_USERNAME"
PASSWORD_VARIABLE = "QRELEASE_GIT_PASSWORD"  # noqa: S105 the variable's name, not a password
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || exit 0; '
    f'printf "username=%s\\npassword=%s\\n" "${USERNAME_VARIABLE}" "${PASSWORD_VARIABLE}"; }}; f'
)
"""A git credential helper (run by git's shell) that answers `get` from the environment."""

HTTP_SCHEMES = ("http", "https")
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


@dataclass(frozen=True)
class Remote:
    """A remote's URL without credentials, and the credentials taken out of it (memory only).

    >>> remote = split_credentials("https://bot:s%40cret@git.example/gitops.git")
    >>> remote.url, remote.username, remote.password
    ('https://git.example/gitops.git', 'bot', 's@cret')
    >>> "s@cret" in repr(remote)
    False
    """

    url: str
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def secret(self) -> str | None:
        """What must never be shown: the password, or a token given as the user name alone."""
        return self.password or self.username

    def git_env(self) -> dict[str, str]:
        """Environment variables for one git process that talks to this remote."""
        if self.username is None and self.password is None:
            return {}
        given = os.environ.get("GIT_CONFIG_COUNT", "")
        first = int(given) if given.isdigit() else 0  # keep any command-line config set already
        return {
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_COUNT": str(first + 2),
            f"GIT_CONFIG_KEY_{first}": "credential.helper",
            f"GIT_CONFIG_VALUE_{first}": "",  # an empty value forgets every configured helper
            f"GIT_CONFIG_KEY_{first + 1}": "credential.helper",
            f"GIT_CONFIG_VALUE_{first + 1}": CREDENTIAL_HELPER,
            USERNAME_VARIABLE: self.username or "",
            PASSWORD_VARIABLE: self.password or "",
        }


def split_credentials(location: str) -> Remote:
    """The remote at `location`, with the user name and password of an http(s) URL split off.

    Credentials in any other form are refused: ssh reads no password from an address.

    >>> split_credentials("ssh://git@git.example/gitops.git").url
    'ssh://git@git.example/gitops.git'
    >>> try:
    ...     split_credentials("bot:hunter22@git.example:gitops.git")
    ... except SourceError as refused:
    ...     print(str(refused)[:55])
    ***@git.example:gitops.git: an ssh address cannot carry
    """
    scheme, separator, rest = location.partition("://")
    if separator:
        authority, slash, path = rest.partition("/")
        userinfo, at, host = authority.rpartition("@")
        if at and scheme.lower() in HTTP_SCHEMES:
            user, _, password = userinfo.partition(":")
            url = f"{scheme}://{host}{slash}{path}"
            return _checked(Remote(url, unquote(user), unquote(password)))
        if at and ":" not in userinfo:
            return Remote(location)  # ssh://git@host/...: a login name, not a secret
    if redact_url(location) != location:
        raise SourceError(
            f"{redact_url(location)}: an ssh address cannot carry a password (ssh never reads "
            "it); use an SSH key, or an https:// URL with credentials"
        )
    return Remote(location)


def url_without_credentials(location: str) -> str:
    """`location` as git may record it: without the credentials of an http(s) URL."""
    try:
        return split_credentials(location).url
    except SourceError:
        return redact_url(location)


def _checked(remote: Remote) -> Remote:
    """Refuse credentials that would break git's line-based credential protocol."""
    for value in (remote.username, remote.password):
        if value and any(char in value for char in "\n\r\0"):
            raise SourceError(f"{remote.url}: the credentials in the URL hold a line break")
    return remote


def private_dir(path: Path) -> Path:
    """Create `path` (and its parents) if needed and make it readable by its owner only."""
    path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIR:
        path.chmod(PRIVATE_DIR)
    return path


def private_file(path: Path, *, create: bool = True) -> Path:
    """Make the regular file at `path` readable and writable by its owner only (create it empty)."""
    if create:
        with contextlib.suppress(FileExistsError):  # whatever is there is left to its reader
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
    with contextlib.suppress(FileNotFoundError):  # not created, or gone meanwhile
        mode = path.lstat().st_mode
        if stat.S_ISREG(mode) and stat.S_IMODE(mode) != PRIVATE_FILE:
            path.chmod(PRIVATE_FILE)
    return path
