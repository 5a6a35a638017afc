"""Editing one pin line of an environment file, leaving every other byte as it was.

ruamel.yaml's round-trip parser tells where the pin's value sits (line and column); the
edit replaces exactly that scalar, keeping its quoting, so comments, key order, spacing
and line wrapping of the rest of the file are untouched. A pin not yet in the file is
added as a new line under `apps:`, indented like its siblings.
"""

from __future__ import annotations

import io
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

_PLAIN_SCALAR = re.compile(r"[^\s#,\]}]+")


class PinEditError(Exception):
    """The environment file cannot be edited safely; the message says why."""


def set_pin(text: str, app: str, version: str) -> str:
    """The environment file text with `apps.<app>` set to `version`."""
    document = _round_trip(text)
    apps = document.get("apps") if isinstance(document, dict) else None
    if apps is None:
        raise PinEditError("the file has no `apps:` mapping to edit")
    if not hasattr(apps, "lc"):
        raise PinEditError("`apps:` must be a mapping")
    lines = text.splitlines(keepends=True)
    if app in apps:
        line, column = apps.lc.value(app)
        lines[line] = _replace_scalar(lines[line], column, version)
        return "".join(lines)
    return _add_pin(text, lines, apps, app, version)


def _round_trip(text: str) -> Any:
    try:
        return YAML(typ="rt").load(io.StringIO(text))
    except YAMLError as exc:
        raise PinEditError(f"cannot parse the file: {exc}") from None


def _replace_scalar(line: str, column: int, version: str) -> str:
    quote = line[column] if line[column] in "'\"" else ""
    if quote:
        end = line.index(quote, column + 1) + 1
        return f"{line[:column]}{quote}{version}{quote}{line[end:]}"
    match = _PLAIN_SCALAR.match(line, column)
    if match is None:
        raise PinEditError(f"cannot find the pin's value in {line.strip()!r}")
    return f"{line[:column]}{version}{line[match.end() :]}"


def _add_pin(text: str, lines: list[str], apps: Any, app: str, version: str) -> str:
    if apps.fa.flow_style():
        raise PinEditError("`apps:` is written in flow style ({...}); add the app by hand once")
    if len(apps) == 0:
        raise PinEditError("`apps:` is empty; add the first app by hand")
    last_key = list(apps)[-1]
    line, column = apps.lc.key(last_key)
    indent = " " * column
    insert_at = scan = line + 1
    while scan < len(lines) and _continues(lines[scan], column):
        scan += 1
        if lines[scan - 1].strip() and not lines[scan - 1].lstrip().startswith("#"):
            insert_at = scan  # after the last line that belongs to the previous pin
    if insert_at == len(lines) and not text.endswith("\n"):
        lines[-1] += "\n"
    lines.insert(insert_at, f"{indent}{app}: {version}\n")
    return "".join(lines)


def _continues(line: str, column: int) -> bool:
    """True for blank lines, comments and deeper-indented lines that still belong to a pin."""
    stripped = line.strip()
    return not stripped or (len(line) - len(line.lstrip()) > column)
