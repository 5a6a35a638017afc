"""Small value types shared by the manifest and environment models: names, versions, durations."""

from __future__ import annotations

import functools
import math
import re
from datetime import timedelta
from typing import Annotated

import semver
from pydantic import AfterValidator, BeforeValidator, PlainSerializer

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION_DAYS = 3650
"""About ten years: longer durations are refused (timedelta, timers and clocks overflow)."""
_DURATION_HINT = "a duration is a number of seconds or a string like 30s, 10m, 1h"


def check_dns_label(value: str) -> str:
    """Accept a lowercase DNS label (RFC 1123), as app and environment names must be.

    >>> check_dns_label("bell-service")
    'bell-service'
    """
    if not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a DNS label (lowercase letters, digits and '-', 1-63 chars, "
            "starting and ending with a letter or digit)"
        )
    return value


MAX_VERSION_CHARS = 256
"""Longer version strings are refused before the (memoised) semver check."""


@functools.lru_cache(maxsize=8192)
def _is_semver(value: str) -> bool:
    """Memoised: a thousand pins share a handful of version strings."""
    return bool(semver.Version.is_valid(value))


def check_semver(value: str) -> str:
    """Accept a semantic version string such as 1.2.3 or 2.0.0-rc.1.

    >>> check_semver("1.10.0-rc.1")
    '1.10.0-rc.1'
    """
    if len(value) > MAX_VERSION_CHARS or not _is_semver(value):
        raise ValueError(f"{value!r} is not a semantic version (MAJOR.MINOR.PATCH)")
    return value


def parse_duration(value: object) -> timedelta:
    """Parse `30s`, `10m`, `1h30m`, `2d` or a number of seconds into a timedelta.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    >>> parse_duration(45)
    datetime.timedelta(seconds=45)
    >>> parse_duration("99999999999999d")
    Traceback (most recent call last):
    ValueError: '99999999999999d' is longer than the limit of 3650d
    """
    if isinstance(value, timedelta):
        seconds: float = value.total_seconds()
    elif isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(_DURATION_HINT)
    elif isinstance(value, str):
        seconds = _duration_text_seconds(value)
    elif not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number of seconds")
    else:
        seconds = value
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    if seconds > MAX_DURATION_DAYS * 86400:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise ValueError(f"{shown} is longer than the limit of {MAX_DURATION_DAYS}d")
    return value if isinstance(value, timedelta) else timedelta(seconds=seconds)


def _duration_text_seconds(value: str) -> float:
    """The seconds a duration string such as `1h30m` stands for (any size: checked after)."""
    text = value.strip()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        shown = repr(value) if len(value) <= 40 else repr(value[:37] + "...")
        raise ValueError(f"{shown} is not a duration like 30s, 10m, 1h30m or 2d")
    # float(): exact for any sane duration, and never stopped by the int-string digit limit
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def format_duration(value: timedelta) -> str:
    """Render a timedelta back in the compact form (milliseconds included, as parsed).

    >>> format_duration(timedelta(seconds=5400))
    '1h30m'
    >>> format_duration(timedelta(milliseconds=1))
    '1ms'
    >>> parse_duration(format_duration(timedelta(seconds=90, milliseconds=500)))
    datetime.timedelta(seconds=90, microseconds=500000)
    """
    remaining = value // timedelta(milliseconds=1)
    if remaining == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


@functools.lru_cache(maxsize=8192)
def version_key(version: str) -> semver.Version:
    """Sort key for semantic version strings."""
    return semver.Version.parse(version)


DnsName = Annotated[str, AfterValidator(check_dns_label)]
SemVer = Annotated[str, AfterValidator(check_semver)]
Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str)
]
