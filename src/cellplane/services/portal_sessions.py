"""The portal's sessions in the database (`portal_sessions`), for `cellplane.portal.session`.

A row is keyed by the SHA-256 of the browser's session id, so the table alone does not let
anyone present a session. What a session must keep secret (its tokens, its CSRF token, a pending
sign-in's PKCE verifier) is one JSON document sealed with the server's secrets key
(`cellplane.sealing`, ``<data dir>/secrets.key``: replicas of one server share it with the
database), which also names the row it belongs to: a sealed value copied into another row does
not open there. Every replica reads and writes the same rows: a session made by one is valid in
all, and survives a restart.

`sweep` is the bounded cleanup: expired rows (at most `batch` a call), then, past
`max_sessions`, the least recently used rows that are not signed in first.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, true, update

from cellplane.sealing import SealedSecretError, Sealer
from cellplane.state.db import Database
from cellplane.state.identity_models import PortalSessionRecord

__all__ = ["SECRETS_COLUMN", "PortalSessions", "SessionRow", "id_hash"]

SECRETS_COLUMN = "portal_sessions.secrets"


def id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()


@dataclass
class SessionRow:
    """One session as stored: `secrets` is what is sealed."""

    id_hash: str
    signed_in: bool
    tenant: str
    user: str
    created_at: float
    last_seen: float
    expires_at: float
    secrets: dict[str, Any] = field(default_factory=dict)


class PortalSessions:
    """The `portal_sessions` table of `db`, its secrets sealed by `sealer`."""

    def __init__(self, db: Database, sealer: Sealer) -> None:
        self.db = db
        self.sealer = sealer

    def _seal(self, row: SessionRow) -> str:
        doc = json.dumps({"row": row.id_hash, **row.secrets}, separators=(",", ":"))
        return self.sealer.seal(doc, SECRETS_COLUMN)

    def _columns(self, row: SessionRow) -> dict[str, Any]:
        """What `save` writes (the id aside); a write gives up any claim on the refresh."""
        return {
            "signed_in": row.signed_in,
            "tenant": row.tenant,
            "user_name": row.user,
            "last_seen": row.last_seen,
            "expires_at": row.expires_at,
            "refresh_claim": None,
            "secrets": self._seal(row),
        }

    def _record(self, row: SessionRow) -> PortalSessionRecord:
        return PortalSessionRecord(
            id_hash=row.id_hash, created_at=row.created_at, **self._columns(row)
        )

    def insert(self, row: SessionRow) -> None:
        with self.db.session() as s:
            s.add(self._record(row))

    def replace(self, old_hash: str, row: SessionRow) -> None:
        """`row` in place of the session `old_hash` (a new id after sign-in), at once."""
        with self.db.session() as s:
            s.execute(delete(PortalSessionRecord).where(PortalSessionRecord.id_hash == old_hash))
            s.add(self._record(row))

    def load(self, key: str) -> SessionRow | None:
        """The session, or None (unknown, or its secrets do not open: another key, a copy)."""
        with self.db.reader() as s:
            r = s.get(PortalSessionRecord, key)
            if r is None:
                return None
            stored = r.secrets
            row = SessionRow(
                id_hash=r.id_hash,
                signed_in=r.signed_in,
                tenant=r.tenant,
                user=r.user_name,
                created_at=r.created_at,
                last_seen=r.last_seen,
                expires_at=r.expires_at,
            )
        try:
            doc = json.loads(self.sealer.open(stored, SECRETS_COLUMN))
        except (SealedSecretError, ValueError):
            return None
        if not isinstance(doc, dict) or doc.pop("row", None) != key:
            return None
        row.secrets = doc
        return row

    def save(self, row: SessionRow) -> None:
        """Write the session's fields and secrets (and give up any claim on its refresh)."""
        with self.db.session() as s:
            s.execute(
                update(PortalSessionRecord)
                .where(PortalSessionRecord.id_hash == row.id_hash)
                .values(**self._columns(row))
            )

    def touch(self, key: str, now: float) -> None:
        with self.db.session() as s:
            s.execute(
                update(PortalSessionRecord)
                .where(PortalSessionRecord.id_hash == key)
                .values(last_seen=now)
            )

    def delete(self, key: str) -> bool:
        with self.db.session() as s:
            gone = s.execute(delete(PortalSessionRecord).where(PortalSessionRecord.id_hash == key))
            return bool(getattr(gone, "rowcount", 0))

    def claim_refresh(self, key: str, now: float, hold_s: float) -> bool:
        """Whether this caller may spend the session's refresh token now: one replica at a time
        (a refresh token presented twice ends its whole family at the issuer). The claim ends
        with `save` or after `hold_s`."""
        t = PortalSessionRecord
        with self.db.session() as s:
            won = s.execute(
                update(t)
                .where(t.id_hash == key, (t.refresh_claim.is_(None)) | (t.refresh_claim < now))
                .values(refresh_claim=now + hold_s)
            )
            return bool(getattr(won, "rowcount", 0))

    def count(self) -> int:
        with self.db.reader() as s:
            return int(s.scalar(select(func.count()).select_from(PortalSessionRecord)) or 0)

    def sweep(
        self,
        now: float,
        *,
        pending_s: float,
        idle_s: float,
        max_age_s: float,
        max_sessions: int,
        batch: int = 500,
    ) -> int:
        """Delete expired sessions (at most `batch`), then the least recently used beyond
        `max_sessions` (those not signed in first). How many went."""
        t = PortalSessionRecord
        expired = (
            (~t.signed_in & (t.created_at < now - pending_s))
            | (t.last_seen < now - idle_s)
            | (t.created_at < now - max_age_s)
        )
        with self.db.session() as s:
            keys = list(s.scalars(select(t.id_hash).where(expired).limit(batch)))
            total = int(s.scalar(select(func.count()).select_from(t)) or 0) - len(keys)
            over = max(0, total - max_sessions)
            if over:
                rest = select(t.id_hash).where(t.id_hash.not_in(keys) if keys else true())
                order = rest.order_by(t.signed_in, t.last_seen).limit(min(over, batch))
                keys += list(s.scalars(order))
            if keys:
                s.execute(delete(t).where(t.id_hash.in_(keys)))
            return len(keys)
