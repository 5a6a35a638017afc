"""Approvals as signed Git data: one commit per approve or reject, on `refs/qrelease/approvals`.

An approval must be as hard to forge as a pin change, and outlive any controller: so it
is a commit (on a dedicated ref, never on the branch) whose author is the approver and
whose trailers bind it to the exact app, environment, version and release digest. With
signed-commit verification on, only a good signature by a trusted key counts, and the
approver is the key's principal; without it, the author's e-mail is the approver.
The ref only moves forward: a push that races another approval is retried on top of it.

Stored format (commit message trailers): `Qrelease-Approval: approve|reject`,
`Qrelease-App`, `Qrelease-Env`, `Qrelease-Version`, `Qrelease-Digest`, `Qrelease-Reason`.
The tree is the empty tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from qrelease.source.records import RawRecord, append_record, read_records, tip
from qrelease.source.repo import GitRepo
from qrelease.source.signatures import TrustedKeys

APPROVALS_REF = "refs/qrelease/approvals"


@dataclass(frozen=True)
class ApprovalRecord:
    """One approve or reject as read from Git; `approver` is None when it cannot count."""

    commit: str
    env: str
    app: str
    version: str
    digest: str
    approves: bool
    reason: str
    approver: str | None
    at: datetime
    problem: str = ""


def read_approvals(repo: GitRepo, keys: TrustedKeys | None = None) -> list[ApprovalRecord]:
    """Every approval on the ref, oldest first (an empty list when there is none yet)."""
    return [
        record
        for raw in read_records(repo, APPROVALS_REF, keys)
        if (record := _approval(raw)) is not None
    ]


def approvals_tip(repo: GitRepo) -> str | None:
    """The commit the approvals ref points at, or None (for noticing new approvals cheaply)."""
    return tip(repo, APPROVALS_REF)


def record_approval(
    repo: GitRepo,
    *,
    env: str,
    app: str,
    version: str,
    digest: str,
    approves: bool,
    reason: str,
    actor: str | None = None,
    sign: bool = False,
) -> str:
    """Commit one approve or reject onto the ref and publish it (push when there is a remote)."""
    word = "approve" if approves else "reject"
    message = (
        f"{word} {app} {version} in {env}\n\n{reason.strip()}\n\n"
        f"Qrelease-Approval: {word}\nQrelease-App: {app}\nQrelease-Env: {env}\n"
        f"Qrelease-Version: {version}\nQrelease-Digest: {digest}\n"
        f"Qrelease-Reason: {' '.join(reason.split())}\n"
    )
    return append_record(repo, APPROVALS_REF, message, actor=actor, sign=sign, what=word)


def _approval(raw: RawRecord) -> ApprovalRecord | None:
    trailers = raw.trailers
    word = trailers.get("Approval")
    fields = [trailers.get(name) for name in ("Env", "App", "Version", "Digest")]
    if word not in ("approve", "reject") or not all(fields):
        return None  # not an approval (or damaged): ignored, never counted
    env, app, version, digest = (str(value) for value in fields)
    reason = trailers.get("Reason", "")
    return ApprovalRecord(
        raw.commit, env, app, version, digest, word == "approve", reason, raw.author, raw.at,
        raw.problem,
    )  # fmt: skip
