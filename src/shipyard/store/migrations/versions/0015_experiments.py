"""SageMaker Experiments: experiments, trials and trial components, and the links between them.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiment_entities",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("arn", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_modified", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(512), nullable=True),
        sa.Column("document", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "key", name="pk_experiment_entities"),
    )
    op.create_index("ix_experiment_entities_kind_created_at", "experiment_entities", ["kind", "created_at"])
    op.create_table(
        "experiment_links",
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("source", sa.String(128), nullable=False),
        sa.Column("destination", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("kind", "source", "destination", name="pk_experiment_links"),
    )
    op.create_index("ix_experiment_links_kind_destination", "experiment_links", ["kind", "destination"])


def downgrade() -> None:
    op.drop_table("experiment_links")
    op.drop_table("experiment_entities")
