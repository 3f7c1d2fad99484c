"""Batch transform jobs (the same columns as training jobs: the scheduler runs them all).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transform_jobs",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("arn", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("secondary_status", sa.String(32), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("runtime", sa.JSON(), nullable=False),
        sa.Column("last_modified", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_transform_jobs"),
    )
    op.create_index("ix_transform_jobs_created_at", "transform_jobs", ["created_at"])
    op.create_index("ix_transform_jobs_status", "transform_jobs", ["status"])


def downgrade() -> None:
    op.drop_table("transform_jobs")
