"""The cold parse path: the quick builder agrees with the careful one, and both cores are used."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import pytest

from qrelease.model.manifest import ReleaseManifest
from qrelease.source import parsing
from qrelease.source.parsing import (
    KeyLines,
    ParsedFile,
    decode,
    lines_many,
    parse_batch,
    parse_file,
    parse_many,
)
from qrelease.source.yamldoc import YamlError, parse_mapping
from tests.helpers.fuzz import BUNDLED, KINDS, mutate

SEEDS = range(20 * len(KINDS))
PLAIN_DOCUMENTS = [
    b"a: 1\nb: -0\nc: +7\nd: 0.5\ne: -1.5e+3\nf: .5\ng: yes\nh: ~\ni: 'x'\nj: [1, 2]\n",
    b"a: 0x1f\nb: 0o17\nc: 1_000\nd: 017\ne: 1:30\nf: .inf\ng: 1e3\nh: 2026-05-01\n",
    b"a: !!int 7\nb: !!str 7\nc: !!float 1\nd: 1.0e-1\ne: 3.\n",
    b"? [a]\n: 1\n",
    b"1: one\n2.5: x\ntrue: t\n",
    b"a: &x 1\nb: *x\n",
    b"a: 'star * in text'\nb: 'and & too'\n",
    b"<<: {a: 1}\n",
    b"a: 1\na: 2\n",
]


def outcome(raw: bytes, *, lines: bool) -> object:
    """The data a parse builds, or the exact refusal (line, field, message)."""
    try:
        return parse_mapping(raw, lines=lines).data
    except YamlError as error:
        return (error.line, error.field, error.message)


@pytest.mark.parametrize("raw", PLAIN_DOCUMENTS, ids=range(len(PLAIN_DOCUMENTS)))
def test_the_quick_builder_builds_what_the_careful_one_does(raw: bytes) -> None:
    assert outcome(raw, lines=False) == outcome(raw, lines=True)


@pytest.mark.parametrize("seed", SEEDS)
def test_every_hostile_file_gets_the_same_verdict_on_the_cold_path(seed: int) -> None:
    mutation = mutate(seed)
    assert outcome(mutation.content, lines=False) == outcome(mutation.content, lines=True)


def test_a_valid_manifest_keeps_no_lines_and_an_invalid_one_keeps_them() -> None:
    text = BUNDLED["manifests/qrng/0.2.0.yaml"]
    valid = parse_file(text.encode(), ReleaseManifest)
    assert valid.model is not None and not valid.located and valid.lines == {}
    broken = parse_file(text.replace("shots: ", "shots: -").encode(), ReleaseManifest)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "shots:" in row)
    assert broken.located and broken.problems[0][:2] == (line, "quantum.gates.smoke.shots")


def test_a_large_batch_is_shared_with_a_worker_process_and_comes_back_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(parsing, "PARALLEL_MIN", 4)
    started: list[int] = []
    real = parsing._Worker.__init__

    def counting(self: parsing._Worker, items: list[tuple[str, bytes]]) -> None:
        started.append(len(items))
        real(self, items)

    monkeypatch.setattr(parsing._Worker, "__init__", counting)
    items = [("ReleaseManifest", text.encode()) for path, text in sorted(BUNDLED.items())]
    items = [
        item
        for item, (path, _) in zip(items, sorted(BUNDLED.items()), strict=True)
        if path.startswith("manifests/")
    ] * 3
    items.append(("ReleaseManifest", b"app: [unclosed\n"))
    both = parse_many(items)
    assert started and started[0] < len(items)
    alone = parse_batch(items)
    assert [parsed for parsed, _ in both] == [parsed for parsed, _ in alone]
    assert all(decode(value) == parsed for parsed, value in both)


def test_a_worker_that_fails_leaves_its_share_to_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(parsing, "PARALLEL_MIN", 2)
    monkeypatch.setattr(parsing.sys, "executable", "/nonexistent/python")
    items = [("ReleaseManifest", BUNDLED["manifests/qrng/0.2.0.yaml"].encode())] * 4
    parsed = parse_many(items)
    assert len(parsed) == 4 and all(isinstance(one, ParsedFile) for one, _ in parsed)


def test_bytes_that_are_not_a_parse_decode_to_nothing() -> None:
    assert decode(b"\x80") is None
    assert decode(b"not a pickle") is None
    import pickle

    assert decode(pickle.dumps({"model": None})) is None


class _Cache:
    """A BlobCache in a dict, counting what it is asked."""

    def __init__(self) -> None:
        self.values: dict[str, bytes] = {}

    def get_many(self, keys: Collection[str]) -> dict[str, bytes]:
        return {key: self.values[key] for key in keys if key in self.values}

    def put_many(self, items: Mapping[str, bytes]) -> None:
        self.values.update(items)

    def discard(self, keys: Collection[str]) -> None:
        for key in keys:
            self.values.pop(key, None)


def test_key_lines_are_read_once_then_come_from_the_cache() -> None:
    text = BUNDLED["manifests/qrng/0.2.0.yaml"]
    shots = next(i for i, row in enumerate(text.splitlines(), 1) if "shots:" in row)
    blobs = {"b1": text.encode(), "b2": b"a:\n  - x\n  - y: 1\n"}
    reads: list[list[str]] = []

    def read(wanted: list[str]) -> dict[str, bytes]:
        reads.append(sorted(wanted))
        return {blob: blobs[blob] for blob in wanted}

    cache = _Cache()
    first = lines_many(read, list(blobs), cache)
    second = lines_many(read, list(blobs), cache)
    assert reads == [["b1", "b2"]]  # the second call read no blob
    for found in (first, second):
        assert found["b1"].line_of(("quantum", "gates", "smoke", "shots")) == shots
        assert found["b1"].line_of(("quantum", "gates", "smoke", "nothing")) < shots
        assert found["b1"].line_of(("absent",)) == 1
        assert found["b2"].line_of(("a", 1, "y")) == 3
        assert found["b2"].line(("a", "1")) is None  # a list index is not a key "1"


def test_a_damaged_key_lines_entry_is_parsed_again_and_replaced() -> None:
    blobs = {"b1": b"first: 1\nsecond: 2\n"}
    cache = _Cache()
    lines_many(lambda wanted: {b: blobs[b] for b in wanted}, ["b1"], cache)
    (key,) = cache.values
    cache.values[key] = b"garbage"
    found = lines_many(lambda wanted: {b: blobs[b] for b in wanted}, ["b1"], cache)
    assert found["b1"].line_of(("second",)) == 2
    assert KeyLines.looks_packed(cache.values[key])
