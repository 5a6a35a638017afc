"""Hostile-input-safe YAML reading that remembers the line of every key.

PyYAML's C parser composes the node tree; we build plain values from it ourselves so that
duplicate keys, aliases (and so alias bombs), merge keys, tags other than the plain ones,
values that do not convert (`2026-02-30`, `!!int xyz`) and deep nesting are refused with a
line and a field instead of being silently accepted or raising out of the loader.
"""

from __future__ import annotations

import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 100
"""Nesting deeper than this is refused; a manifest needs six levels, libyaml stops at 1,000."""
MAX_INT_CHARS = 100
"""Longer integer scalars are refused before conversion (which is quadratic in their length)."""
QUOTE_LIMIT = 200
"""An error message quotes at most this many characters of a value."""
Path_ = tuple[str | int, ...]
_YAML_TAG = "tag:yaml.org,2002:"
_INT_TAG = _YAML_TAG + "int"
_STR_TAG = _YAML_TAG + "str"
_NULL_TAG = _YAML_TAG + "null"
_BOOL_TAG = _YAML_TAG + "bool"
_FLOAT_TAG = _YAML_TAG + "float"
_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
"""Integers SafeConstructor reads as int() does; others (0x, 0o, 1_000, 0755) go through it."""
_BOOLS: dict[str, bool] = yaml.constructor.SafeConstructor.bool_values
_MERGE_TAG = _YAML_TAG + "merge"
_VALUE_TAG = _YAML_TAG + "value"  # a plain `=`: text, as every other unknown-looking scalar
_SCALAR_TAGS = {_YAML_TAG + kind for kind in ("str", "int", "float", "bool", "null", "timestamp")}
_MAP_TAG = _YAML_TAG + "map"
_SEQ_TAG = _YAML_TAG + "seq"


class YamlError(Exception):
    """A YAML document that cannot be accepted; `line` is 1-based (0 when unknown)."""

    def __init__(self, line: int, message: str, field: str = "") -> None:
        super().__init__(message)
        self.line = line
        self.message = message
        self.field = field


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


def parse_mapping(raw: bytes, *, lines: bool = True) -> YamlDoc:
    """Parse bytes that must be one UTF-8 YAML mapping of at most 1 MiB.

    Everything is checked either way. `lines=False` records no key lines (the document's
    `lines` is then empty) and first tries `_quick`, a builder for the plain documents
    nearly every file is, which gives up on anything else; then the careful builder below
    runs, so every refusal still names its line and field. A caller asks again with lines
    only for a file that turns out to have a problem.
    """
    if len(raw) > MAX_FILE_BYTES:
        raise YamlError(0, f"file is {len(raw)} bytes; the limit is {MAX_FILE_BYTES} (1 MiB)")
    text = _decode(raw)
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise YamlError(_error_line(exc, raw), f"invalid YAML: {_problem(exc)}") from None
    if root is None:
        raise YamlError(1, "the file is empty; expected a mapping")
    if not isinstance(root, yaml.MappingNode):
        raise YamlError(root.start_mark.line + 1, "the document must be a mapping of fields")
    if not lines and b"&" not in raw and b"*" not in raw:  # no anchor, so no alias, anywhere
        try:
            return YamlDoc(data=_quick(root, 0), lines={})
        except _NotPlain:
            pass
    builder = _Builder(record_lines=lines)
    data = builder.build(root, ())
    return YamlDoc(data=data, lines=builder.lines)


class _Loader(yaml.CSafeLoader):
    """libyaml's composer with PyYAML's safe resolver, its answers for short scalars memoised.

    The resolver (which tag a plain scalar gets: `8` is an int, `8.0` a float) is Python
    code called for every node; it is a pure function of the scalar's text and style while
    no path resolvers are registered, which the safe loader has none of.
    """

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        """No path resolvers: nothing to track."""

    def ascend_resolver(self) -> None:
        """No path resolvers: nothing to track."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        """The tag PyYAML's resolver gives; remembered for up to `_RESOLVED_MAX` short scalars."""
        if kind is not yaml.ScalarNode or len(value) > _RESOLVED_TEXT:
            return _resolve(self, kind, value, implicit)
        key = (value, implicit)
        tag = _RESOLVED.get(key)
        if tag is None:
            tag = _resolve(self, kind, value, implicit)
            if len(_RESOLVED) < _RESOLVED_MAX:
                _RESOLVED[key] = tag
        return tag


_resolve: Callable[..., str] = yaml.resolver.Resolver.resolve  # untyped in types-PyYAML
_RESOLVED: dict[tuple[str, Any], str] = {}
_RESOLVED_MAX = 20_000
_RESOLVED_TEXT = 64
_PLAIN_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+][0-9]+)?")
"""Floats SafeConstructor reads as float() does (no `_`, `:`, `.inf` or `.nan`)."""


class _NotPlain(Exception):
    """`_quick` met something only the careful builder may judge."""


def _quick(node: yaml.Node, depth: int) -> Any:
    """A plain document's value: text keys, plain scalars, no tags, shallow enough.

    Gives up (`_NotPlain`) on anything else, duplicate keys included; it never accepts
    what `_Builder` would refuse, and builds the same value where it does not give up.
    """
    if depth >= MAX_DEPTH:
        raise _NotPlain
    kind, tag = node.__class__, node.tag
    if kind is yaml.ScalarNode:
        text = node.value
        if tag == _STR_TAG:
            return text
        if tag == _INT_TAG and len(text) <= MAX_INT_CHARS and _PLAIN_INT.fullmatch(text):
            return int(text)
        if tag == _FLOAT_TAG and _PLAIN_FLOAT.fullmatch(text):
            return float(text)
        if tag == _BOOL_TAG and text.lower() in _BOOLS:
            return _BOOLS[text.lower()]
        if tag == _NULL_TAG:
            return None
        raise _NotPlain
    if kind is yaml.MappingNode and tag == _MAP_TAG:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.__class__ is not yaml.ScalarNode or key_node.tag != _STR_TAG:
                raise _NotPlain  # merge keys, numbers as keys: the careful builder decides
            key = key_node.value
            if key in out:
                raise _NotPlain
            out[key] = _quick(value_node, depth + 1)
        return out
    if kind is yaml.SequenceNode and tag == _SEQ_TAG:
        return [_quick(item, depth + 1) for item in node.value]
    raise _NotPlain


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = _line_at(raw, exc.start)
        raise YamlError(line, f"not UTF-8 (invalid byte at offset {exc.start})") from None


def _error_line(exc: yaml.YAMLError, raw: bytes) -> int:
    """The 1-based line of a parse error: its mark, or the byte offset a reader error gives."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        return int(mark.line) + 1
    if isinstance(exc, yaml.reader.ReaderError):  # control characters: libyaml gives an offset
        return _line_at(raw, exc.position)
    return 0


def _problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.reader.ReaderError):
        return f"unacceptable character #x{exc.character:04x}: {exc.reason}"
    return getattr(exc, "problem", None) or str(exc).splitlines()[0]


def _line_at(raw: bytes, offset: int) -> int:
    r"""The 1-based line holding byte `offset`, counting LF, CR LF and lone CR as YAML does.

    >>> _line_at(b"a: 1\r\nb: 2\rc: \x00", 15)
    3
    """
    head = raw[:offset]
    return head.count(b"\n") + head.count(b"\r") - head.count(b"\r\n") + 1


class _Quoter(reprlib.Repr):
    """reprlib's bounded repr, with strings cut at the limit and huge ints given by size."""

    def __init__(self) -> None:
        super().__init__()
        self.maxstring = self.maxother = QUOTE_LIMIT
        self.maxlong = 40

    def repr_int(self, x: int, level: int) -> str:
        """An int's digits, or its size when it has more than a few hundred."""
        if x.bit_length() > 1000:  # repr() refuses past 4,300 digits and is quadratic before
            return f"<an integer of {x.bit_length():,} bits>"
        return super().repr_int(x, level)


_QUOTER = _Quoter()


def quote(value: object) -> str:
    """The repr of a value, cut to about `QUOTE_LIMIT` characters with its middle elided.

    >>> quote("ab" * 1_000_000)[:8], len(quote("ab" * 1_000_000))
    ("'abababa", 200)
    >>> quote(["x" * 1000] * 1000)[-10:], len(quote(["x" * 1000] * 1000))
    ('xxxxxxx...', 200)
    """
    text = _QUOTER.repr(value)  # bounded work: each part of a container is cut on the way
    return text if len(text) <= QUOTE_LIMIT else text[: QUOTE_LIMIT - 3] + "..."


def tag_name(tag: str) -> str:
    """A tag as it is written in YAML.

    >>> tag_name("tag:yaml.org,2002:python/object/apply:os.system")
    '!!python/object/apply:os.system'
    """
    return "!!" + tag.removeprefix(_YAML_TAG) if tag.startswith(_YAML_TAG) else tag


class _Builder:
    """Turns a composed node tree into plain values, recording key lines on the way."""

    def __init__(self, *, record_lines: bool = True) -> None:
        self.lines: dict[Path_, int] = {}
        self._record = record_lines
        self._seen: set[int] = set()
        # One constructor per document: its cache of built values must not outlive it.
        self._constructor: yaml.constructor.SafeConstructor | None = None

    def build(self, node: yaml.Node, path: Path_, used_at: int = 0) -> Any:
        """The plain value of a node at `path`; at most `MAX_DEPTH` levels below the root."""
        line = node.start_mark.line + 1
        if id(node) in self._seen:
            raise YamlError(used_at or line, "YAML aliases and anchors are not allowed")
        self._seen.add(id(node))
        if len(path) >= MAX_DEPTH:
            raise YamlError(line, f"nested too deeply (more than {MAX_DEPTH} levels)", dotted(path))
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
            return self._sequence(node, path)
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        raise _tag_refused(node, path)  # !!set, !!omap, !!python/object/apply:... and the like

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == _MERGE_TAG:
                raise YamlError(line, "YAML merge keys (<<) are not allowed")
            key = self.build(key_node, path)
            if not isinstance(key, str | int | bool | float) or isinstance(key, bool):
                raise YamlError(line, f"mapping keys must be text, got {quote(key)}", dotted(path))
            key = str(key)
            if key in out:
                raise YamlError(line, "duplicate key", dotted((*path, key)))
            if self._record:
                self.lines[(*path, key)] = line
            out[key] = self.build(value_node, (*path, key), line)
        return out

    def _sequence(self, node: yaml.SequenceNode, path: Path_) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            line = item.start_mark.line + 1
            if self._record:
                self.lines[(*path, index)] = line
            reused = id(item) in self._seen  # an alias: its mark is the anchor's, not this use
            used_at = max(line, node.start_mark.line + 1) if reused else line
            items.append(self.build(item, (*path, index), used_at))
        return items

    def _scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        tag, text = node.tag, node.value
        if tag == _STR_TAG:  # the common kinds, converted as SafeConstructor would
            return text
        if tag == _NULL_TAG:
            return None
        if tag == _BOOL_TAG and text.lower() in _BOOLS:
            return _BOOLS[text.lower()]
        if tag == _INT_TAG and len(text) <= MAX_INT_CHARS and _PLAIN_INT.fullmatch(text):
            return int(text)
        line = node.start_mark.line + 1
        if node.tag == _VALUE_TAG or (node.tag == _INT_TAG and ":" in node.value):
            return node.value  # YAML 1.1 base-60 ints: "22:00" is a time of day, not 1320
        if node.tag not in _SCALAR_TAGS:
            raise _tag_refused(node, path)
        kind = node.tag.removeprefix(_YAML_TAG)
        if kind == "int" and len(node.value) > MAX_INT_CHARS:
            msg = f"integer of {len(node.value):,} characters; the limit is {MAX_INT_CHARS}"
            raise YamlError(line, msg, dotted(path))
        if self._constructor is None:  # made on first use: most documents never need one
            self._constructor = yaml.constructor.SafeConstructor()
        try:
            return self._constructor.construct_object(node, deep=True)
        except Exception as exc:  # PyYAML's converters raise what int(), float(), datetime()
            # and a dict look-up raise: 2026-02-30, !!int xyz, !!bool xyz, !!timestamp xyz
            reason = f" ({exc})" if kind == "timestamp" and isinstance(exc, ValueError) else ""
            msg = f"{quote(node.value)} is not a valid {kind}{reason}"
            raise YamlError(line, msg, dotted(path)) from None


def _tag_refused(node: yaml.Node, path: Path_) -> YamlError:
    """The error for a node whose tag is not one of the plain ones."""
    message = f"YAML tag {quote(tag_name(node.tag))} is not allowed"
    return YamlError(node.start_mark.line + 1, message, dotted(path))


def dotted(path: Path_) -> str:
    """Render a key path the way error messages name fields.

    >>> dotted(("classical", "packages", 0, "sha256"))
    'classical.packages[0].sha256'
    """
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        if len(out) > QUOTE_LIMIT:  # a field name is a key the file chose: it may be 1 MB
            return out[: QUOTE_LIMIT - 3] + "..."
    return out


# -- key lines, packed: where `validate` points its findings ------------------------------

PACKED_PART = "\x1f"
"""Separates the parts of a packed key path (`s<key>` or `i<index>`)."""
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
"""Plain keys that are text whatever the resolver says (unless one of `_NOT_TEXT`)."""
_NOT_TEXT = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null"})


def packed_part(part: str | int) -> str:
    """One part of a packed key path."""
    text = f"i{part}" if isinstance(part, int) else f"s{part}"
    return text.replace("\n", " ").replace("\t", " ")


def pack_lines(lines: dict[Path_, int]) -> bytes:
    """Key lines as text, a line per key path: `<part>\\x1f<part>...\\t<line>`, framed by
    newlines so a path is found with one `find`."""
    rows = (f"{PACKED_PART.join(map(packed_part, path))}\t{line}" for path, line in lines.items())
    return ("\n" + "\n".join(rows) + "\n").encode("utf-8", "surrogatepass")


def packed_key_lines(raw: bytes) -> bytes:
    """`pack_lines` of the document's key lines: `parse_mapping(raw).lines` for every document
    it accepts (one it refuses for a value, such as a bad timestamp, may still get its keys').

    A plain document (text keys, no anchors, aliases or tags) is walked as libyaml's event
    stream, which needs neither the resolver nor the builder: several times faster, for a
    repo whose every manifest has a finding. Anything else takes `parse_mapping`.
    """
    try:
        rows = _event_lines(raw)
    except (_NotPlain, yaml.YAMLError, UnicodeDecodeError, RecursionError):
        rows = None
    if rows is not None:
        return ("\n" + "\n".join(rows) + "\n").encode("utf-8", "surrogatepass")
    try:
        return pack_lines(parse_mapping(raw).lines)
    except YamlError:
        return b"\n\n"


class _Frame:
    """A mapping or sequence being walked: its packed path and where it is."""

    __slots__ = ("index", "is_map", "keys", "path", "pending")

    def __init__(self, is_map: bool, path: str) -> None:
        self.is_map = is_map
        self.path = path
        self.pending: str | None = None  # a mapping's key awaiting its value
        self.index = 0
        self.keys: set[str] = set()

    def child(self, part: str) -> str:
        return f"{self.path}{PACKED_PART}{part}" if self.path else part


def _event_lines(raw: bytes) -> list[str] | None:
    """The packed rows of a plain document; `_NotPlain` for anything the builder must judge."""
    if len(raw) > MAX_FILE_BYTES:
        raise _NotPlain
    loader = _Loader(raw.decode("utf-8"))
    rows: list[str] = []
    stack: list[_Frame] = []
    documents = 0
    try:
        while True:
            event: Any = loader.get_event()
            kind = event.__class__
            if kind is yaml.StreamEndEvent:
                break
            if kind is yaml.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise _NotPlain
                continue
            if kind in (yaml.StreamStartEvent, yaml.DocumentEndEvent):
                continue
            if kind in (yaml.MappingEndEvent, yaml.SequenceEndEvent):
                stack.pop()
                continue
            if kind is yaml.AliasEvent or event.anchor is not None or event.tag is not None:
                raise _NotPlain
            line = event.start_mark.line + 1
            if not stack:
                if kind is not yaml.MappingStartEvent:
                    raise _NotPlain
                stack.append(_Frame(True, ""))
                continue
            top = stack[-1]
            if top.is_map and top.pending is None:  # a key
                if kind is not yaml.ScalarEvent:
                    raise _NotPlain
                key = event.value
                plain = not event.style  # libyaml gives plain scalars the style ""
                if plain and (not _PLAIN_KEY.fullmatch(key) or key.lower() in _NOT_TEXT):
                    raise _NotPlain
                if key in top.keys:
                    raise _NotPlain
                top.keys.add(key)
                top.pending = top.child(packed_part(key))
                rows.append(f"{top.pending}\t{line}")
                continue
            if top.is_map:
                path, top.pending = top.pending, None
            else:
                path = top.child(f"i{top.index}")
                top.index += 1
                rows.append(f"{path}\t{line}")
            if kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                if len(stack) >= MAX_DEPTH:
                    raise _NotPlain
                stack.append(_Frame(kind is yaml.MappingStartEvent, path or ""))
    finally:
        loader.dispose()
    return rows if documents == 1 else None
