"""Host ownership: worker groups, current owners, recent moves, the operation journal.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        batch.add_column(sa.Column("group", sa.String(255), nullable=False, server_default=""))
    op.create_table(
        "host_owners",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("worker_id", sa.String(255), nullable=True),
        sa.Column("previous_worker_id", sa.String(255), nullable=True),
        sa.Column("since", sa.DateTime, nullable=False),
    )
    op.create_table(
        "host_moves",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("host", sa.String(255), nullable=False, index=True),
        sa.Column("from_worker_id", sa.String(255), nullable=True),
        sa.Column("to_worker_id", sa.String(255), nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("moved_at", sa.DateTime, nullable=False, index=True),
    )
    op.create_table(
        "operation_journal",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("host", sa.String(255), nullable=False, index=True),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("request_id", sa.String(255), nullable=False),
        sa.Column("context", sa.Text, nullable=False),
        sa.Column("arguments", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("worker_id", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime, nullable=False),
    )
