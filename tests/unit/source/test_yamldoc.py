"""The YAML reader on hostile bytes: each refusal names its line and field; nothing else raises."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest

from qrelease.source.yamldoc import (
    MAX_DEPTH,
    QUOTE_LIMIT,
    YamlError,
    dotted,
    pack_lines,
    packed_key_lines,
    parse_mapping,
    quote,
)
from tests.helpers.fuzz import BUNDLED, KINDS, mutate


def refusal(text: str | bytes) -> YamlError:
    """The error a document is refused with."""
    raw = text.encode() if isinstance(text, str) else text
    with pytest.raises(YamlError) as caught:
        parse_mapping(raw)
    return caught.value


FREEZE = "environment: qa\npolicy:\n  freezes:\n    - start: {start}\n      end: 2027-01-04\n"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2026-02-30", "day is out of range for month"),
        ("2026-13-01", "month must be in 1..12"),
        ("2026-01-01T25:00:00Z", "hour must be in 0..23"),
        ("0000-01-01", "year 0 is out of range"),
    ],
)
def test_an_impossible_timestamp_names_its_line_and_field(value: str, reason: str) -> None:
    error = refusal(FREEZE.format(start=value))
    assert (error.line, error.field) == (4, "policy.freezes[0].start")
    assert error.message == f"{value!r} is not a valid timestamp ({reason})"


@pytest.mark.parametrize("tag", ["float", "int", "bool", "timestamp"])
def test_a_plain_tag_on_a_value_it_cannot_convert_is_refused(tag: str) -> None:
    error = refusal(f"app: qrng\nquantum:\n  gates:\n    smoke: {{shots: !!{tag} xyz}}\n")
    assert (error.line, error.field) == (4, "quantum.gates.smoke.shots")
    assert error.message == f"'xyz' is not a valid {tag}"


@pytest.mark.parametrize(
    ("document", "line", "field", "tag"),
    [
        (
            "a: 1\nb: !!python/object/apply:os.system [echo hi]\n",
            2,
            "b",
            "!!python/object/apply:os.system",
        ),
        ("a: 1\napps: !!set {x, y}\n", 2, "apps", "!!set"),
        ("a: 1\nclassical: !!omap\n  - kind: venv\n", 2, "classical", "!!omap"),
        (
            "policy: !!python/object:builtins.dict\n  soak: 1s\n",
            1,
            "policy",
            "!!python/object:builtins.dict",
        ),
        ("a:\n  - 1\n  - !!python/tuple [1, 2]\n", 3, "a[1]", "!!python/tuple"),
        ("a: !!binary aGVsbG8=\n", 1, "a", "!!binary"),
        ("a: !!python/name:os.system ''\n", 1, "a", "!!python/name:os.system"),
        ("a: !local x\n", 1, "a", "!local"),
        ("!!set {a, b}\n", 1, "", "!!set"),
    ],
)
def test_tags_other_than_the_plain_ones_are_refused_on_every_kind_of_node(
    document: str, line: int, field: str, tag: str
) -> None:
    error = refusal(document)
    assert (error.line, error.field, error.message) == (
        line,
        field,
        f"YAML tag {tag!r} is not allowed",
    )


def test_the_plain_tags_and_implicit_values_still_read() -> None:
    doc = parse_mapping(
        b"a: !!str 123\nb: !!int '7'\nc: 2026-12-20\nd: 2026-12-20T01:00:00Z\ne: =\n"
        b"f: !!float 1.5\ng: 22:00\nh: !!bool yes\nlist: !!seq [1]\nmap: !!map {k: v}\n"
    )
    assert doc.data == {
        "a": "123",
        "b": 7,
        "c": date(2026, 12, 20),
        "d": datetime(2026, 12, 20, 1, 0, tzinfo=UTC),
        "e": "=",
        "f": 1.5,
        "g": "22:00",
        "h": True,
        "list": [1],
        "map": {"k": "v"},
    }


def nested(depth: int, style: str = "flow-list") -> bytes:
    """A document whose `x` holds `depth` levels of lists or mappings, on line 2."""
    if style == "flow-list":
        value = "[" * depth + "]" * depth
    else:
        value = "{a: " * depth + "1" + "}" * depth
    return f"a: 1\nx: {value}\n".encode()


@pytest.mark.parametrize("depth", [MAX_DEPTH, 450, 999])
@pytest.mark.parametrize("style", ["flow-list", "flow-map"])
def test_deep_nesting_is_refused_at_its_line(depth: int, style: str) -> None:
    error = refusal(nested(depth, style))
    assert error.line == 2 and error.field.startswith("x")
    assert error.message == f"nested too deeply (more than {MAX_DEPTH} levels)"
    assert len(error.field) <= QUOTE_LIMIT


def test_nesting_past_libyaml_own_limit_is_invalid_yaml_at_its_line() -> None:
    error = refusal(nested(1001))
    assert error.line == 2 and "exceeded maximum nesting depth" in error.message


def test_nesting_up_to_the_limit_reads() -> None:
    assert parse_mapping(nested(MAX_DEPTH - 2)).data["x"] is not None


def call_with_frames_left(frames: int, action: Callable[[], object]) -> object:
    """Run `action` with only about `frames` Python frames left before the recursion limit."""
    used = len(inspect.stack())

    def dive(levels: int) -> object:
        return action() if levels <= 0 else dive(levels - 1)

    return dive(sys.getrecursionlimit() - used - frames)


def test_the_builder_needs_a_bounded_stack_whatever_the_document() -> None:
    # two frames per level and a few for a scalar: a deep caller (the daemon's thread, pytest)
    # still gets the "nested too deeply" problem, never a RecursionError
    error = call_with_frames_left(2 * MAX_DEPTH + 40, lambda: _refused_quietly(nested(999)))
    assert isinstance(error, YamlError) and "nested too deeply" in error.message


def _refused_quietly(raw: bytes) -> YamlError | None:
    try:
        parse_mapping(raw)
    except YamlError as error:
        return error
    return None


@pytest.mark.parametrize("digits", [101, 4301, 5000, 100_000])
def test_an_integer_too_long_to_convert_is_refused_before_conversion(digits: int) -> None:
    error = refusal(f"a: 1\nkeep: {'9' * digits}\n")
    assert (error.line, error.field) == (2, "keep")
    assert error.message == f"integer of {digits:,} characters; the limit is 100"


def test_an_integer_of_a_hundred_digits_reads() -> None:
    assert parse_mapping(f"keep: {'9' * 100}\n".encode()).data["keep"] == int("9" * 100)


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\x7f", "\x9f", "\ufffe"])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_a_control_character_is_reported_at_its_line(char: str, newline: str) -> None:
    text = newline.join(["# é", "a: 1", "b: 2", f"c: x{char}y", "d: 4", ""])
    error = refusal(text)
    assert error.line == 4
    assert f"unacceptable character #x{ord(char):04x}" in error.message


def test_quote_cuts_a_value_to_the_limit() -> None:
    assert len(quote("x" * 1_000_000)) == QUOTE_LIMIT
    assert len(quote({f"k{i}": "v" * 10_000 for i in range(10_000)})) <= QUOTE_LIMIT
    assert quote(10**5000) == "<an integer of 16,610 bits>"
    assert quote("short") == "'short'"


def test_a_huge_key_is_cut_in_the_field_name() -> None:
    key = "k" * 500_000
    error = refusal(f"? {key}\n: 1\n? {key}\n: 2\n")  # explicit keys: an implicit one is short
    assert error.line == 3 and error.message == "duplicate key"
    assert len(error.field) == QUOTE_LIMIT and error.field.endswith("...")
    assert dotted(("a", 0, "b")) == "a[0].b"


def test_a_mapping_key_that_is_not_text_is_quoted_briefly() -> None:
    error = refusal(f"? [{', '.join(['x' * 1000] * 100)}]\n: 1\n")
    assert error.line == 1 and error.message.startswith("mapping keys must be text, got ['xxx")
    assert len(error.message) < QUOTE_LIMIT + 40


TRICKY_KEY_DOCUMENTS = [
    b"a:\n  - x\n  - y: 1\n    z: [1, {w: 2}]\n",
    b"'quoted key': 1\n\"tab\\tkey\": 2\nplain-key_2: {inner: [a, b]}\n",
    b"yes: 1\n",  # a plain key the resolver makes a bool: the builder judges it
    b"1: one\n0x1f: hex\n",  # keys the resolver makes ints: the builder's text for them
    b"a: &x 1\nb: *x\n",  # anchors and aliases: the builder refuses them
    b"a: !!str 1\n",
    b"? [a]\n: 1\n",
    b"a: 1\na: 2\n",  # a duplicate key: the builder refuses it
    b"- not a mapping\n",
    b"a: 1\n---\nb: 2\n",
    b"{a: 1, b: [2, 3], c: {d: 4}}\n",
    b"a:\n- 1\n- - 2\n  - 3\n",
]


@pytest.mark.parametrize("raw", TRICKY_KEY_DOCUMENTS, ids=range(len(TRICKY_KEY_DOCUMENTS)))
def test_packed_key_lines_are_the_builders_lines(raw: bytes) -> None:
    assert packed_key_lines(raw) == _builders(raw)


@pytest.mark.parametrize("seed", range(0, 20 * len(KINDS), 3))
def test_packed_key_lines_agree_with_the_builder_on_hostile_files(seed: int) -> None:
    raw = mutate(seed).content
    found = packed_key_lines(raw)  # never raises, whatever the file holds
    if _builders(raw) != b"\n\n":  # a file it refuses (a bad value) may still have key lines
        assert found == _builders(raw)


@pytest.mark.parametrize("path", sorted(BUNDLED))
def test_packed_key_lines_of_the_bundled_files(path: str) -> None:
    raw = BUNDLED[path].encode()
    assert packed_key_lines(raw) == _builders(raw) != b"\n\n"


def _builders(raw: bytes) -> bytes:
    """The key lines the careful builder records, packed (none when it refuses the file)."""
    try:
        return pack_lines(parse_mapping(raw).lines)
    except YamlError:
        return b"\n\n"
