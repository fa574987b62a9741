"""The journal keyed by message id, with tombstones of finished messages.

Expand-only: a worker of the previous release, which journals without a
message id and deletes an entry when it finishes, works unchanged beside
this schema.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ALTER TABLE ... ADD COLUMN on SQLite too: no copy of the table.
    op.add_column("operation_journal", sa.Column("message_id", sa.String(255), nullable=True))
    op.create_index(
        "ix_operation_journal_message_id", "operation_journal", ["message_id"], unique=True
    )
    op.add_column("operation_journal", sa.Column("outcome", sa.Text, nullable=True))
    op.create_table(
        "journal_messages",
        sa.Column("message_id", sa.String(255), primary_key=True),
        sa.Column("received_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
    )
    op.create_index("ix_journal_messages_finished_at", "journal_messages", ["finished_at"])
