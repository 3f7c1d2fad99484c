"""GPU utilization samples: a job instance's (or model server's) GPUs, averaged over them.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("utilization") as batch:
        batch.add_column(sa.Column("gpu", sa.Float(), nullable=True))
        batch.add_column(sa.Column("gpu_memory", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("utilization") as batch:
        batch.drop_column("gpu_memory")
        batch.drop_column("gpu")
