"""Counters of the RPC messages clients sent, backported or refused, per host and version.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rpc_call_counts",
        sa.Column("client", sa.String(255), primary_key=True),
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("rpc_version", sa.String(16), primary_key=True),
        sa.Column("sent", sa.Integer, nullable=False),
        sa.Column("backported", sa.Integer, nullable=False),
        sa.Column("refused", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
