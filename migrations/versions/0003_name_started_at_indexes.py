"""Index each workload name with the start time, so a name filter reads only the newest rows.

``kubereach search --name X`` lists the newest investigations whose source or target is X. With one
index per name column the database either collected every row of a common name and sorted them, or
walked the start-time index backwards testing each row, which for a name seen rarely (or never) reads
the whole table. Each name column is now indexed together with ``started_at``: the search reads the
newest rows of each side in order and merges the two short lists (`bot.history.search`).

Revision ID: 0003_name_started_at_indexes
Revises: 0002_slack_seen_requests
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003_name_started_at_indexes"
down_revision: str | None = "0002_slack_seen_requests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Replace the single-column name indexes by (name, started_at) ones; existing rows are indexed."""
    with op.batch_alter_table("investigations") as batch:
        batch.create_index(batch.f("ix_investigations_source_name_started_at"), ["source_name", "started_at"])
        batch.create_index(batch.f("ix_investigations_target_name_started_at"), ["target_name", "started_at"])
        batch.drop_index(batch.f("ix_investigations_source_name"))
        batch.drop_index(batch.f("ix_investigations_target_name"))


def downgrade() -> None:
    """Back to one index per name column."""
    with op.batch_alter_table("investigations") as batch:
        batch.create_index(batch.f("ix_investigations_source_name"), ["source_name"])
        batch.create_index(batch.f("ix_investigations_target_name"), ["target_name"])
        batch.drop_index(batch.f("ix_investigations_source_name_started_at"))
        batch.drop_index(batch.f("ix_investigations_target_name_started_at"))
