"""Hyperparameter tuning jobs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tuning_jobs",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("arn", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("last_modified", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_tuning_jobs"),
    )
    op.create_index("ix_tuning_jobs_status", "tuning_jobs", ["status"])
    op.create_index("ix_tuning_jobs_created_at", "tuning_jobs", ["created_at"])


def downgrade() -> None:
    op.drop_table("tuning_jobs")
