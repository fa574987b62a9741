"""Workers and the hosts they serve.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(255), primary_key=True),
        sa.Column("driver", sa.String(64), nullable=False),
        sa.Column("driver_version", sa.String(64), nullable=False),
        sa.Column("machine", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("rpc_version", sa.String(16), nullable=False),
        sa.Column("rpc_min_version", sa.String(16), nullable=False),
        sa.Column("capabilities", sa.Text, nullable=False),
        sa.Column("support_tier", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("disabled_reason", sa.String(255), nullable=True),
        sa.Column("started_at", sa.DateTime, nullable=False),
        sa.Column("heartbeat_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "worker_hosts",
        sa.Column(
            "worker_id",
            sa.String(255),
            sa.ForeignKey("workers.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("host", sa.String(255), primary_key=True),
    )
    op.create_index("ix_worker_hosts_host", "worker_hosts", ["host"])
