"""Recorded conformance runs, from which each driver's support tier follows.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conformance_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("driver", sa.String(64), nullable=False),
        sa.Column("driver_version", sa.String(64), nullable=False),
        sa.Column("rpc_version", sa.String(16), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("run_at", sa.DateTime, nullable=False),
        sa.Column("passed", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("failing", sa.Text, nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
    )
    op.create_index(
        "ix_conformance_runs_driver", "conformance_runs", ["driver", "driver_version", "run_at"]
    )
