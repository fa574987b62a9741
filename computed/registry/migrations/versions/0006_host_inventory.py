"""Host inventory: each host's measured resources, capabilities, and an operator's disabled flag.

Expand-only: a new table, which a worker of the previous release ignores.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "host_inventory",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("worker_id", sa.String(255), nullable=True),
        sa.Column("driver", sa.String(64), nullable=True),
        sa.Column("driver_version", sa.String(64), nullable=True),
        sa.Column("support_tier", sa.String(32), nullable=True),
        sa.Column("capabilities", sa.Text, nullable=True),
        sa.Column("hypervisor_type", sa.String(64), nullable=True),
        sa.Column("hypervisor_version", sa.String(64), nullable=True),
        *(
            sa.Column(name, sa.Integer, nullable=True)
            for name in (
                "vcpus",
                "vcpus_used",
                "memory_mb",
                "memory_mb_used",
                "disk_gb",
                "disk_gb_used",
                "instances",
            )
        ),
        sa.Column("cpu_allocation_ratio", sa.Float, nullable=True),
        sa.Column("ram_allocation_ratio", sa.Float, nullable=True),
        sa.Column("disk_allocation_ratio", sa.Float, nullable=True),
        sa.Column("measured_at", sa.DateTime, nullable=True),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("disabled_reason", sa.String(255), nullable=True),
        sa.Column("disabled_at", sa.DateTime, nullable=True),
    )
