"""Editing one pin line (or one suspension) of an environment file, leaving every other
byte as it was.

ruamel.yaml's round-trip parser tells where the pin's value sits (line and column); the
edit replaces exactly that scalar, keeping its quoting, so comments, key order, spacing
and line wrapping of the rest of the file are untouched. A pin not yet in the file is
added as a new line under `apps:`, indented like its siblings. Suspending an app adds one
line under `policy.suspended` (and the `suspended:` key, or the `policy:` block, when the
file has none); resuming removes that line (and the key it leaves empty).
"""

from __future__ import annotations

import io
import json
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
    return _append_entry(text, lines, apps, [f"{app}: {version}"])


def set_suspended(text: str, app: str, reason: str) -> str:
    """The environment file text with `policy.suspended.<app>` set to `reason`.

    Raises PinEditError when the app is already suspended (say so rather than rewrite why).
    """
    document = _round_trip(text)
    if not isinstance(document, dict):
        raise PinEditError("the file is not a mapping")
    value = json.dumps(" ".join(reason.split()), ensure_ascii=False)  # a YAML double-quoted scalar
    lines = text.splitlines(keepends=True)
    policy = document.get("policy")
    if policy is None:
        if "policy" in document:
            raise PinEditError("`policy:` has no value; add the suspension by hand")
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        return "".join([*lines, "policy:\n", "  suspended:\n", f"    {app}: {value}\n"])
    _block_mapping(policy, "policy")
    suspended = policy.get("suspended")
    if suspended is None:
        if "suspended" in policy:
            raise PinEditError("`policy.suspended:` is empty; remove it or add an entry by hand")
        step = _child_step(policy, document, "policy")
        return _append_entry(text, lines, policy, ["suspended:", f"{step}{app}: {value}"])
    _block_mapping(suspended, "policy.suspended")
    if app in suspended:
        raise PinEditError(f"{app} is already suspended: {suspended[app]}")
    return _append_entry(text, lines, suspended, [f"{app}: {value}"])


def clear_suspended(text: str, app: str) -> str:
    """The environment file text without `policy.suspended.<app>` (PinEditError if absent)."""
    document = _round_trip(text)
    policy = document.get("policy") if isinstance(document, dict) else None
    suspended = policy.get("suspended") if isinstance(policy, dict) else None
    if not isinstance(suspended, dict) or app not in suspended:
        raise PinEditError(f"{app} is not suspended")
    _block_mapping(suspended, "policy.suspended")
    lines = text.splitlines(keepends=True)
    if len(suspended) == 1:
        return _remove_entry(lines, policy, "suspended")
    return _remove_entry(lines, suspended, app)


def _block_mapping(node: Any, name: str) -> None:
    if not hasattr(node, "lc"):
        raise PinEditError(f"`{name}:` must be a mapping")
    if node.fa.flow_style():
        raise PinEditError(f"`{name}:` is written in flow style ({{...}}); edit it by hand")
    if len(node) == 0:
        raise PinEditError(f"`{name}:` is empty; add the first entry by hand")


def _child_step(node: Any, parent: Any, name: str) -> str:
    """The indentation one level below `node`'s keys, as the file indents `name` itself."""
    _line, child = node.lc.key(next(iter(node)))
    _line, own = parent.lc.key(name)
    return " " * max(int(child) - int(own), 2)


def _append_entry(text: str, lines: list[str], mapping: Any, new: list[str]) -> str:
    """Insert `new` lines after the last entry of a block mapping, indented like its keys."""
    line, column = mapping.lc.key(list(mapping)[-1])
    indent = " " * column
    insert_at = _entry_end(lines, line, column)
    if insert_at == len(lines) and lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    lines[insert_at:insert_at] = [f"{indent}{entry}\n" for entry in new]
    return "".join(lines)


def _remove_entry(lines: list[str], mapping: Any, key: str) -> str:
    """Remove one key of a block mapping with every line of its value."""
    line, column = mapping.lc.key(key)
    if lines[line][:column].strip():
        raise PinEditError(f"`{key}` does not start its own line; edit it by hand")
    del lines[line : _entry_end(lines, line, column)]
    return "".join(lines)


def _entry_end(lines: list[str], line: int, column: int) -> int:
    """The index after the last line that belongs to the entry whose key starts at `line`."""
    end = scan = line + 1
    while scan < len(lines) and _continues(lines[scan], column):
        scan += 1
        if lines[scan - 1].strip() and not lines[scan - 1].lstrip().startswith("#"):
            end = scan
    return end


def _continues(line: str, column: int) -> bool:
    """True for blank lines, comments and deeper-indented lines that still belong to a pin."""
    stripped = line.strip()
    return not stripped or (len(line) - len(line.lstrip()) > column)
