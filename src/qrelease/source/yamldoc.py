"""Hostile-input-safe YAML reading that remembers the line of every key.

PyYAML's C parser composes the node tree; we build plain values from it ourselves so that
duplicate keys, aliases (and so alias bombs), merge keys and non-mapping documents are
refused with a line number instead of being silently accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

MAX_FILE_BYTES = 1024 * 1024
Path_ = tuple[str | int, ...]
_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlError(Exception):
    """A YAML document that cannot be accepted; `line` is 1-based (0 when unknown)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@dataclass(frozen=True)
class YamlDoc:
    """A parsed mapping document and the 1-based line where each key path starts."""

    data: dict[str, Any]
    lines: dict[Path_, int]

    def line_of(self, path: Path_) -> int:
        """The line of the longest prefix of `path` that the document has (1 if none)."""
        for end in range(len(path), 0, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1


def parse_mapping(raw: bytes) -> YamlDoc:
    """Parse bytes that must be one UTF-8 YAML mapping of at most 1 MiB."""
    if len(raw) > MAX_FILE_BYTES:
        raise YamlError(0, f"file is {len(raw)} bytes; the limit is {MAX_FILE_BYTES} (1 MiB)")
    text = _decode(raw)
    try:
        root = yaml.compose(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YamlError(mark.line + 1 if mark else 0, f"invalid YAML: {problem}") from None
    if root is None:
        raise YamlError(1, "the file is empty; expected a mapping")
    if not isinstance(root, yaml.MappingNode):
        raise YamlError(root.start_mark.line + 1, "the document must be a mapping of fields")
    builder = _Builder()
    data = builder.build(root, ())
    return YamlDoc(data=data, lines=builder.lines)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlError(line, f"not UTF-8 (invalid byte at offset {exc.start})") from None


class _Builder:
    """Turns a composed node tree into plain values, recording key lines on the way."""

    def __init__(self) -> None:
        self.lines: dict[Path_, int] = {}
        self._seen: set[int] = set()
        # One constructor per document: its cache of built values must not outlive it.
        self._constructor = yaml.constructor.SafeConstructor()

    def build(self, node: yaml.Node, path: Path_, used_at: int = 0) -> Any:
        if id(node) in self._seen:
            line = used_at or node.start_mark.line + 1
            raise YamlError(line, "YAML aliases and anchors are not allowed")
        self._seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node, path)
        return self._scalar(node)

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                raise YamlError(line, "YAML merge keys (<<) are not allowed")
            key = self.build(key_node, path)
            if not isinstance(key, str | int | bool | float) or isinstance(key, bool):
                raise YamlError(line, f"mapping keys must be text, got {key!r}")
            key = str(key)
            if key in out:
                raise YamlError(line, f"{_dotted((*path, key))}: duplicate key")
            self.lines[(*path, key)] = line
            out[key] = self.build(value_node, (*path, key), line)
        return out

    def _sequence(self, node: yaml.SequenceNode, path: Path_) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            line = item.start_mark.line + 1
            self.lines[(*path, index)] = line
            reused = id(item) in self._seen  # an alias: its mark is the anchor's, not this use
            used_at = max(line, node.start_mark.line + 1) if reused else line
            items.append(self.build(item, (*path, index), used_at))
        return items

    def _scalar(self, node: yaml.Node) -> Any:
        if node.tag == _INT_TAG and ":" in node.value:
            return node.value  # YAML 1.1 base-60 ints: "22:00" is a time of day, not 1320
        try:
            return self._constructor.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise YamlError(node.start_mark.line + 1, f"invalid value: {exc}") from None


def _dotted(path: Path_) -> str:
    """Render a key path the way error messages name fields.

    >>> _dotted(("classical", "packages", 0, "sha256"))
    'classical.packages[0].sha256'
    """
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


dotted = _dotted
