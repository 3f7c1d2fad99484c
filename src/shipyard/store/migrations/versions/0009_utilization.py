"""Utilization samples of job instances and endpoint instances (CPU, memory, disk).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "utilization",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("resource_kind", sa.String(32), nullable=False),
        sa.Column("resource_name", sa.String(63), nullable=False),
        sa.Column("host", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cpu", sa.Float(), nullable=False),
        sa.Column("memory", sa.Float(), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("disk", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_utilization"),
    )
    op.create_index("ix_utilization_resource", "utilization", ["resource_kind", "resource_name", "at"])


def downgrade() -> None:
    op.drop_table("utilization")
