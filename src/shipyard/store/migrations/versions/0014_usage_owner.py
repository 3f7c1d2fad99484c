"""The ledger's owner is a user's ARN, which a user's path can make longer than the access key
id it held before (an ARN is kept in 512 characters, as the ownership table keeps it).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.alter_column(
            "owner", type_=sa.String(512), existing_type=sa.String(128), existing_nullable=True
        )


def downgrade() -> None:
    with op.batch_alter_table("usage") as batch:
        batch.alter_column(
            "owner", type_=sa.String(128), existing_type=sa.String(512), existing_nullable=True
        )
