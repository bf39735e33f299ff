"""The audit trail: an append-only hash chain of every state change and refusal, each signed.

Entry ``seq`` (1, 2, 3, ...) holds who (``actor``), what (``action``, ``subject``), when (``at``)
and the state before and after (canonical JSON). Its hash is SHA-256 over the canonical JSON
of those fields plus the previous entry's hash (``prev_hash``; 64 zeros for the first); the
registry's Ed25519 key signs the hash. :func:`verify_chain` recomputes everything and names
the first bad entry:

- an edited entry no longer matches its hash (or, re-hashed, its signature);
- a deleted or inserted entry breaks the numbering or the next entry's ``prev_hash``;
- reordered entries break ``prev_hash`` links.

Entries at the end can only be cut off unnoticed by someone who also holds the private key
and the last head: keep ``plantml-registry audit head`` somewhere else (a ticket, a log) and
pass it as ``--expect`` to detect that.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from plantml.edge.signature import TrustedKey, canonical_json
from plantml.registry import schema
from plantml.registry.signing import Signer

GENESIS = "0" * 64
_HASHED = ("seq", "at", "actor", "action", "subject", "before", "after", "prev_hash")


def dumps(value: Any) -> str:
    """Canonical JSON text of a before/after state."""
    return canonical_json(value).decode()


def entry_hash(entry: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of an entry's hashed fields."""
    body = json.dumps(
        [entry[k] for k in _HASHED], separators=(",", ":"), ensure_ascii=True
    ).encode()
    return hashlib.sha256(body).hexdigest()


def append(
    conn: sa.Connection,
    signer: Signer,
    at: str,
    actor: str,
    action: str,
    subject: str,
    before: Any = None,
    after: Any = None,
) -> int:
    """Append one entry inside the caller's write transaction; returns its ``seq``."""
    a = schema.audit
    head = conn.execute(
        sa.select(a.c.seq, a.c.entry_hash).order_by(a.c.seq.desc()).limit(1)
    ).first()
    entry = {
        "seq": 1 if head is None else head.seq + 1,
        "at": at,
        "actor": actor,
        "action": action,
        "subject": subject,
        "before": dumps(before),
        "after": dumps(after),
        "prev_hash": GENESIS if head is None else head.entry_hash,
    }
    digest = entry_hash(entry)
    conn.execute(
        a.insert().values(
            **entry,
            entry_hash=digest,
            key_id=signer.key_id,
            signature=signer.sign(bytes.fromhex(digest)),
        )
    )
    return entry["seq"]


def head(conn: sa.Connection) -> tuple[int, str]:
    """(seq, hash) of the last entry; (0, GENESIS) when there is none."""
    a = schema.audit
    row = conn.execute(sa.select(a.c.seq, a.c.entry_hash).order_by(a.c.seq.desc()).limit(1)).first()
    return (0, GENESIS) if row is None else (row.seq, row.entry_hash)


@dataclass
class ChainReport:
    """What :func:`verify_chain` found: ``ok``, entries checked, the first bad one and why."""

    ok: bool
    entries: int
    seconds: float
    first_bad: int | None = None
    problem: str = ""
    head: tuple[int, str] = (0, GENESIS)
    signers: dict[str, int] = field(default_factory=dict)

    def message(self) -> str:
        if self.ok:
            return (
                f"audit chain OK: {self.entries} entries, head {self.head[0]} {self.head[1]}, "
                f"verified in {self.seconds:.2f} s"
            )
        return f"audit chain BROKEN at entry {self.first_bad}: {self.problem}"


def verify_chain(
    conn: sa.Connection,
    trusted: Mapping[str, TrustedKey],
    expect: tuple[int, str] | None = None,
    signatures: bool = True,
) -> ChainReport:
    """Check every entry's hash, link and signature in order; stop at the first bad one."""
    start = time.perf_counter()
    a = schema.audit
    rows = conn.execution_options(yield_per=5000).execute(sa.select(a).order_by(a.c.seq))
    prev, expected, n = GENESIS, 1, 0
    signers: dict[str, int] = {}

    def bad(seq: int, problem: str) -> ChainReport:
        return ChainReport(
            False, n, time.perf_counter() - start, seq, problem, (expected - 1, prev)
        )

    for row in rows:
        entry = row._mapping
        if row.seq != expected:
            what = "deleted" if row.seq > expected else "duplicated or renumbered"
            return bad(expected, f"entry {expected} is missing: found {row.seq} next ({what})")
        if row.prev_hash != prev:
            return bad(
                row.seq,
                f"entry {row.seq} does not follow entry {row.seq - 1} (prev_hash differs): an "
                "entry before it was edited, deleted, inserted or the entries were reordered",
            )
        digest = entry_hash(entry)
        if digest != row.entry_hash:
            return bad(
                row.seq, f"entry {row.seq} was edited: its content no longer matches its hash"
            )
        if signatures:
            key = trusted.get(row.key_id)
            if key is None:
                return bad(
                    row.seq, f"entry {row.seq} is signed by key {row.key_id}, which is not trusted"
                )
            try:
                raw = base64.b64decode(row.signature, validate=True)
            except ValueError:
                raw = b""
            if not key.verify(raw, bytes.fromhex(digest)):
                return bad(
                    row.seq, f"entry {row.seq}: signature does not match (re-hashed or forged)"
                )
            signers[row.key_id] = signers.get(row.key_id, 0) + 1
        prev, expected, n = row.entry_hash, expected + 1, n + 1
    report = ChainReport(True, n, time.perf_counter() - start, head=(n, prev), signers=signers)
    if expect is not None:
        seq, digest = expect
        if seq > n:
            return ChainReport(
                False,
                n,
                report.seconds,
                seq,
                f"the chain ends at entry {n} but entry {seq} was recorded as the head: entries "
                "at the end were removed",
                (n, prev),
            )
        row = conn.execute(sa.select(a.c.entry_hash).where(a.c.seq == seq)).first()
        if row is None or row.entry_hash != digest:
            return ChainReport(
                False,
                n,
                report.seconds,
                seq,
                f"entry {seq} differs from the head recorded earlier: the chain was rewritten",
                (n, prev),
            )
    return report
