"""Slack deliveries already taken, kept in the history database so every replica and restart sees them.

`take` inserts a delivery's key if no process has taken it yet (INSERT … ON CONFLICT DO NOTHING
RETURNING, so two replicas racing on one key get exactly one True); `prune` forgets keys older than
the retention window. The caller owns the transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable

from bot.history.models import SlackSeenRequest

KEY_MAX = 200


def take(session: Session, key: str, now: datetime) -> bool:
    """True when this call recorded `key` first; False when a process (this one or another) already had."""
    values = {"key": key[:KEY_MAX], "seen_at": now}
    dialect = session.get_bind().dialect.name
    statement: Executable
    if dialect == "postgresql":
        statement = (
            postgresql.insert(SlackSeenRequest)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(SlackSeenRequest.key)
        )
    elif dialect == "sqlite":
        statement = (
            sqlite.insert(SlackSeenRequest)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["key"])
            .returning(SlackSeenRequest.key)
        )
    else:  # pragma: no cover - the history runs on SQLite or PostgreSQL only
        raise NotImplementedError(dialect)
    return session.execute(statement).first() is not None  # RETURNING: a row only when this insert took the key


def prune(session: Session, before: datetime) -> int:
    """Forget keys seen before `before`; returns how many."""
    result = session.execute(delete(SlackSeenRequest).where(SlackSeenRequest.seen_at < before))
    return int(getattr(result, "rowcount", 0) or 0)
