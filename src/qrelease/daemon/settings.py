"""The controller's effective settings: command-line flags laid over the config file.

Kept apart from the loop so SIGHUP can rebuild them the same way the start did: reload
the file, lay the same flags over it again, and say which changes need a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from qrelease.config import ConfigError, ControllerConfig, load_config

RESTART_FIELDS = (
    "source.url",
    "state_dir",
    "store.url",
    "listen",
    "gates",
    "http",
    "sources",
    "replica",
    "notifications",
    "web",
)


@dataclass(frozen=True)
class Overrides:
    """The flags given on the command line; None means "take the config file's value"."""

    repo: str | None = None
    state_dir: Path | None = None
    interval: timedelta | None = None
    listen: str | None = None
    store_url: str | None = None


@dataclass(frozen=True)
class Address:
    """A host and TCP port to listen on."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def effective(config: ControllerConfig, overrides: Overrides) -> ControllerConfig:
    """`config` with the flags applied and the repo location made absolute; checked."""
    url = source_location(overrides.repo or config.source.url or ".")
    source_changes: dict[str, object] = {"url": url}
    if overrides.interval is not None:
        source_changes["interval"] = overrides.interval
    merged = config.model_copy(
        update={
            "source": config.source.model_copy(update=source_changes),
            "state_dir": (overrides.state_dir or config.state_dir).absolute(),
            "listen": overrides.listen or config.listen,
            "store": config.store.model_copy(
                update={"url": overrides.store_url or config.store.url}
            ),
        }
    )
    check(merged)
    return merged


def reload(path: Path | None, overrides: Overrides) -> ControllerConfig:
    """Read the config file again and lay the same flags over it."""
    return effective(load_config(path), overrides)


def check(config: ControllerConfig) -> None:
    """Refuse settings the loop cannot run with (a zero interval would spin)."""
    if config.source.interval <= timedelta(0):
        raise ConfigError("source.interval: must be more than 0s")
    if config.source.resync <= timedelta(0):
        raise ConfigError("source.resync: must be more than 0s")
    if config.grace_period <= timedelta(0):
        raise ConfigError("grace_period: must be more than 0s")
    parse_listen(config.listen)


def parse_listen(listen: str) -> Address:
    """`host:port` (IPv6 hosts in brackets) as an Address.

    >>> parse_listen("127.0.0.1:8080"), parse_listen("[::1]:0")
    (Address(host='127.0.0.1', port=8080), Address(host='::1', port=0))
    """
    host, colon, port = listen.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"listen: {listen!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return Address(host, int(port))


def source_location(location: str) -> str:
    """A URL as given; a local path made absolute, so the mirror's name does not depend on cwd.

    >>> source_location("https://example.com/gitops.git")
    'https://example.com/gitops.git'
    """
    if "://" in location or _scp_like(location):
        return location
    return str(Path(location).expanduser().absolute())


def restart_needed(old: ControllerConfig, new: ControllerConfig) -> list[str]:
    """The changed settings a reload cannot apply to a running controller."""
    values = {
        "source.url": (old.source.url, new.source.url),
        "state_dir": (old.state_dir, new.state_dir),
        "store.url": (old.store.url, new.store.url),
        "listen": (old.listen, new.listen),
        "gates": (old.gates, new.gates),
        "http": (old.http, new.http),
        "sources": (old.sources, new.sources),
        "replica": (old.replica, new.replica),
        "notifications": (old.notifications, new.notifications),
        "web": (old.web, new.web),
    }
    return [name for name in RESTART_FIELDS if values[name][0] != values[name][1]]


def _scp_like(location: str) -> bool:
    """True for git's `user@host:path` form, which has no scheme."""
    head, colon, _ = location.partition(":")
    return bool(colon) and "/" not in head and len(head) > 1
