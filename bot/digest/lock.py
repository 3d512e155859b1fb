"""Exactly once per slot, across bot replicas: claim the slot in the database before running it.

The claim is an insert guarded by DigestRun's unique (subscription, slot) constraint
(`bot.history.service.claim_digest_slot`), committed at once so that every other replica sees it. On
PostgreSQL the claim also runs under a transaction-level advisory lock keyed by the subscription, so
replicas racing for the same slot queue on the lock instead of on the index, and the lock goes away
with the transaction even when a process dies. On SQLite the database's single writer serialises the
inserts (with the busy timeout set by `bot.history.db`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from bot.history import service
from bot.history.service import DigestSlot

DIGEST_LOCK_CLASS = 0x64_67_73_74  # "dgst": the first key of pg_advisory_xact_lock(int4, int4)
_INT4 = 2**31


def advisory_key(subscription_id: int) -> tuple[int, int]:
    """The (class, object) pair of the advisory lock of one subscription's slots (both int4)."""
    return DIGEST_LOCK_CLASS, subscription_id % _INT4


def claim_slot(sessions: sessionmaker[Session], subscription_id: int, slot_at: datetime, owner: str) -> DigestSlot | None:
    """Claim and commit one slot for `owner`; None when another process (or an earlier run) has it."""
    with sessions.begin() as session:
        if session.get_bind().dialect.name == "postgresql":
            lock_class, lock_object = advisory_key(subscription_id)
            session.execute(text("SELECT pg_advisory_xact_lock(:c, :o)"), {"c": lock_class, "o": lock_object})
        return service.claim_digest_slot(session, subscription_id, slot_at, owner)
