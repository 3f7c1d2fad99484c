"""Pipelines, their executions, and model packages (the model registry).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipelines",
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("arn", sa.String(512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_modified", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_pipelines"),
    )
    op.create_index("ix_pipelines_created_at", "pipelines", ["created_at"])
    op.create_table(
        "pipeline_executions",
        sa.Column("arn", sa.String(512), nullable=False),
        sa.Column("pipeline", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("last_modified", sa.DateTime(timezone=True), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("arn", name="pk_pipeline_executions"),
    )
    op.create_index("ix_pipeline_executions_pipeline", "pipeline_executions", ["pipeline", "created_at"])
    op.create_index("ix_pipeline_executions_status", "pipeline_executions", ["status"])
    op.create_table(
        "model_packages",
        sa.Column("group", sa.String(63), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("arn", sa.String(512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("approval", sa.String(32), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("last_modified", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group", "version", name="pk_model_packages"),
        sa.UniqueConstraint("arn", name="uq_model_packages_arn"),
    )
    op.create_index("ix_model_packages_created_at", "model_packages", ["created_at"])


def downgrade() -> None:
    op.drop_table("model_packages")
    op.drop_table("pipeline_executions")
    op.drop_table("pipelines")
