"""The series of the metrics trial components log (BatchPutMetrics), for BatchGetMetrics.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiment_metric_points",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("component", sa.String(128), nullable=False),
        sa.Column("metric_name", sa.String(255), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_experiment_metric_points"),
    )
    op.create_index(
        "ix_experiment_metric_points_component",
        "experiment_metric_points",
        ["component", "metric_name", "timestamp"],
    )


def downgrade() -> None:
    op.drop_index("ix_experiment_metric_points_component", table_name="experiment_metric_points")
    op.drop_table("experiment_metric_points")
