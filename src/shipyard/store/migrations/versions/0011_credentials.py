"""Session credentials: each job's (and endpoint instance's) own key, secret, token and scope.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("access_key_id", sa.String(32), nullable=False),
        sa.Column("secret_access_key", sa.String(64), nullable=False),
        sa.Column("session_token", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(512), nullable=False),
        sa.Column("principal", sa.String(512), nullable=False),
        sa.Column("scope", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("access_key_id", name="pk_credentials"),
    )
    op.create_index("ix_credentials_owner", "credentials", ["owner"])
    op.create_index("ix_credentials_expires_at", "credentials", ["expires_at"])


def downgrade() -> None:
    op.drop_table("credentials")
