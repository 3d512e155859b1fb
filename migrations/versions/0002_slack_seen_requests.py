"""Slack deliveries already taken, so a replay after a restart or on another replica starts nothing.

One row per delivery key (``event:<event_id>``, ``trigger:<trigger_id>`` or ``sig:<ts>:<signature>``),
inserted once by whichever process takes the delivery first; rows older than the retention window are
pruned by the bot (`bot.history.seen`).

Revision ID: 0002_slack_seen_requests
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_slack_seen_requests"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``slack_seen_requests`` (key, seen_at) with an index on seen_at for pruning."""
    op.create_table(
        "slack_seen_requests",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_slack_seen_requests")),
    )
    with op.batch_alter_table("slack_seen_requests") as batch:
        batch.create_index(batch.f("ix_slack_seen_requests_seen_at"), ["seen_at"])


def downgrade() -> None:
    """Drop ``slack_seen_requests``."""
    with op.batch_alter_table("slack_seen_requests") as batch:
        batch.drop_index(batch.f("ix_slack_seen_requests_seen_at"))
    op.drop_table("slack_seen_requests")
