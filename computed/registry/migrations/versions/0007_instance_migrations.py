"""Instance migrations: one row per resize, cold or live migration, or evacuation.

Expand-only: workers of the previous release never read the table.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

#: A move not over yet (MigrationStatus.FINAL, as of this revision).
ACTIVE = "status NOT IN ('confirmed', 'reverted', 'completed', 'aborted', 'cleaned', 'error')"


def upgrade() -> None:
    op.create_table(
        "instance_migrations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("instance_uuid", sa.String(36), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("source_host", sa.String(255), nullable=False, index=True),
        sa.Column("dest_host", sa.String(255), nullable=False, index=True),
        sa.Column("status", sa.String(32), nullable=False, index=True),
        sa.Column("migration", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    # One move at a time per instance, even when two orchestrators race.
    active = sa.text(ACTIVE)
    op.create_index(
        "ix_instance_migrations_one_active",
        "instance_migrations",
        ["instance_uuid"],
        unique=True,
        sqlite_where=active,
        postgresql_where=active,
    )
