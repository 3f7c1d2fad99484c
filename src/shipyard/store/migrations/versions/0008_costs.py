"""The cost ledger for every priced resource, and budgets.

The usage table grows what reports need: SageMaker's price beside the site's, who launched the
resource, its parent (a trial's tuning job) and its tags when it was recorded. Budgets and the
alerts they raise get tables of their own.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("sagemaker_usd_per_hour", sa.String(32), nullable=True))
        batch.add_column(sa.Column("owner", sa.String(128), nullable=True))
        batch.add_column(sa.Column("parent", sa.String(63), nullable=True))
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=True))
    op.execute("UPDATE usage SET sagemaker_usd_per_hour = usd_per_hour")
    op.create_index("ix_usage_started", "usage", ["started_at"])
    op.create_index("ix_usage_arn", "usage", ["resource_arn"])
    op.create_table(
        "budgets",
        sa.Column("name", sa.String(63), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_budgets"),
    )
    op.create_table(
        "budget_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("budget", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("dedupe", sa.String(255), nullable=False),
        sa.Column("spend_usd", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_budget_events"),
        sa.UniqueConstraint("dedupe", name="uq_budget_events_dedupe"),
    )
    op.create_index("ix_budget_events_budget", "budget_events", ["budget", "created_at"])


def downgrade() -> None:
    op.drop_table("budget_events")
    op.drop_table("budgets")
    op.drop_index("ix_usage_arn", "usage")
    op.drop_index("ix_usage_started", "usage")
    with op.batch_alter_table("usage") as batch:
        for column in ("tags", "parent", "owner", "sagemaker_usd_per_hour"):
            batch.drop_column(column)
