"""Gate verdicts from review (`qrelease check --record`), kept in Git on `refs/qrelease/reviews`.

One commit per reviewed release: its trailers bind it to the release (app, version and
the release digest: manifest plus program blob) and to the QIR the review compiled; its
tree holds the gate report (`report.json`: each gate's outcome, message and evidence, and
the resource estimate) and the compiled program (`program.ll`). With signed-commit
verification on, only a review signed by a trusted key counts.

The controller shows a matching review beside a release ("gates passed in review for
this QIR"), and an environment whose policy says `reuse_review: true` takes the reviewed
verdicts instead of running the gates again, once it has checked that the QIR in the
record is the QIR the record names (see `engine/gates.py`).

Stored format (commit message trailers): `Qrelease-Review: passed|failed`, `Qrelease-App`,
`Qrelease-Version`, `Qrelease-Digest`, `Qrelease-QIR-Sha256`, `Qrelease-Reviewed` (the
commit the check ran at).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from qrelease.model.vocabulary import GateOutcome
from qrelease.quantum.base import EstimateSummary, GateReport, GateResult
from qrelease.source.records import (
    RawRecord,
    append_record,
    read_record_file,
    read_records,
    tip,
)
from qrelease.source.repo import GitRepo
from qrelease.source.signatures import TrustedKeys

REVIEWS_REF = "refs/qrelease/reviews"
REPORT_FILE = "report.json"
QIR_FILE = "program.ll"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class ReviewRecord:
    """One release's gates as a review ran them; `reviewer` is None when it cannot count."""

    commit: str
    app: str
    version: str
    digest: str
    """The release digest (`evidence.release_digest`): manifest and program blob."""
    qir_sha256: str | None
    passed: bool
    reviewed: str
    """The commit `qrelease check` ran at."""
    reviewer: str | None
    at: datetime
    problem: str = ""
    raw: RawRecord | None = None

    @property
    def counts(self) -> bool:
        """True when its author can be trusted (a good signature when verifying)."""
        return self.reviewer is not None


def read_reviews(repo: GitRepo, keys: TrustedKeys | None = None) -> list[ReviewRecord]:
    """Every review on the ref, oldest first (empty when nothing was recorded yet)."""
    return [
        record
        for raw in read_records(repo, REVIEWS_REF, keys)
        if (record := _review(raw)) is not None
    ]


def reviews_tip(repo: GitRepo) -> str | None:
    """The commit the reviews ref points at (for noticing new reviews cheaply)."""
    return tip(repo, REVIEWS_REF)


def newest_review(
    records: Iterable[ReviewRecord], app: str, version: str, digest: str
) -> ReviewRecord | None:
    """The newest counting review of exactly this release (same digest), if any."""
    found = None
    for record in records:
        if record.counts and (record.app, record.version, record.digest) == (app, version, digest):
            found = record
    return found


def record_review(
    repo: GitRepo,
    *,
    app: str,
    version: str,
    digest: str,
    report: GateReport,
    reviewed: str,
    actor: str | None = None,
    sign: bool = False,
) -> str:
    """Commit one release's gate report onto the reviews ref and publish it."""
    word = "passed" if report.passed else "failed"
    lines = [f"  {r.gate}: {r.outcome} {r.message}".rstrip() for r in report.results]
    message = (
        f"review {app} {version}: gates {word}\n\n" + "\n".join(lines) + "\n\n"
        f"Qrelease-Review: {word}\nQrelease-App: {app}\nQrelease-Version: {version}\n"
        f"Qrelease-Digest: {digest}\nQrelease-QIR-Sha256: {report.qir_sha256 or '-'}\n"
        f"Qrelease-Reviewed: {reviewed}\n"
    )
    files = {REPORT_FILE: _report_json(report)}
    if report.qir is not None:
        files[QIR_FILE] = report.qir.encode("utf-8")
    return append_record(
        repo, REVIEWS_REF, message, files=files, actor=actor, sign=sign, what="review"
    )


def reviewed_report(repo: GitRepo, record: ReviewRecord) -> GateReport:
    """The gate report a review recorded, its QIR checked against the digest it names.

    Raises ValueError when the record's files are missing, damaged or do not match.
    """
    if record.raw is None:
        raise ValueError(f"review {record.commit[:12]} has no stored report")
    data = read_record_file(repo, record.raw, REPORT_FILE)
    if data is None:
        raise ValueError(f"review {record.commit[:12]} has no {REPORT_FILE}")
    report = _report_from_json(data)
    qir_bytes = read_record_file(repo, record.raw, QIR_FILE)
    qir = qir_bytes.decode("utf-8") if qir_bytes is not None else None
    actual = hashlib.sha256(qir_bytes).hexdigest() if qir_bytes is not None else None
    if actual != record.qir_sha256:
        raise ValueError(
            f"review {record.commit[:12]}: its QIR hashes to {actual or 'nothing'}, "
            f"not the {record.qir_sha256 or 'no QIR'} it names"
        )
    return GateReport(report.results, qir, actual, report.estimate)


def _review(raw: RawRecord) -> ReviewRecord | None:
    trailers = raw.trailers
    word = trailers.get("Review")
    fields = [trailers.get(name) for name in ("App", "Version", "Digest", "Reviewed")]
    if word not in ("passed", "failed") or not all(fields):
        return None  # not a review (or damaged): ignored, never counted
    app, version, digest, reviewed = (str(value) for value in fields)
    qir = trailers.get("QIR-Sha256")
    return ReviewRecord(
        raw.commit, app, version, digest, None if qir in (None, "-") else qir,
        word == "passed", reviewed, raw.author, raw.at, raw.problem, raw,
    )  # fmt: skip


def _report_json(report: GateReport) -> bytes:
    body: dict[str, Any] = {
        "version": FORMAT_VERSION,
        "results": [
            {
                "gate": r.gate,
                "outcome": str(r.outcome),
                "message": r.message,
                "details": dict(r.details),
            }
            for r in report.results
        ],
        "estimate": (
            {"physical_qubits": report.estimate.physical_qubits,
             "runtime_ns": report.estimate.runtime_ns}
            if report.estimate is not None
            else None
        ),
    }  # fmt: skip
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def _report_from_json(data: bytes) -> GateReport:
    try:
        body = json.loads(data)
        if body.get("version") != FORMAT_VERSION:
            raise ValueError(f"unknown review format {body.get('version')!r}")
        results: Sequence[GateResult] = [
            GateResult(
                str(item["gate"]),
                GateOutcome(item["outcome"]),
                str(item.get("message", "")),
                dict(item.get("details") or {}),
            )
            for item in body["results"]
        ]
        estimate = body.get("estimate")
        summary = (
            EstimateSummary(int(estimate["physical_qubits"]), int(estimate["runtime_ns"]))
            if estimate
            else None
        )
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"damaged review report: {exc}") from None
    return GateReport(tuple(results), estimate=summary)
