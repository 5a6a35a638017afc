"""The second core's share of a large parse: `python -m qrelease.source.parse_worker`.

Reads a pickled list of (schema name, blob bytes) on stdin and writes a pickled list of
pickled `ParsedFile`s, in the same order, on stdout (see `parsing.parse_many`).
"""

from __future__ import annotations

import pickle
import sys

from qrelease.source.parsing import pickled_batch


def main() -> None:
    """Parse one batch from stdin onto stdout."""
    items = pickle.load(sys.stdin.buffer)  # noqa: S301 written by our own parent process
    sys.stdout.buffer.write(pickle.dumps(pickled_batch(items), protocol=5))


if __name__ == "__main__":
    main()
