"""Users, access keys, groups, roles, inline policies, and who owns each resource.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("credentials") as batch:
        batch.add_column(sa.Column("user_arn", sa.String(512), nullable=True))
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("name_key", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("admin", sa.Boolean(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_users"),
        sa.UniqueConstraint("name_key", name="uq_users_name_key"),
    )
    op.create_table(
        "access_keys",
        sa.Column("access_key_id", sa.String(32), nullable=False),
        sa.Column("secret_access_key", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("access_key_id", name="pk_access_keys"),
        sa.ForeignKeyConstraint(
            ["user_name"], ["users.name"], name="fk_access_keys_user_name_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_access_keys_user_name", "access_keys", ["user_name"])
    op.create_table(
        "groups",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("name_key", sa.String(64), nullable=False),
        sa.Column("group_id", sa.String(32), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_groups"),
        sa.UniqueConstraint("name_key", name="uq_groups_name_key"),
    )
    op.create_table(
        "group_members",
        sa.Column("group_name", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("group_name", "user_name", name="pk_group_members"),
        sa.ForeignKeyConstraint(
            ["group_name"], ["groups.name"], name="fk_group_members_group_name_groups", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_name"], ["users.name"], name="fk_group_members_user_name_users", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_group_members_user_name", "group_members", ["user_name"])
    op.create_table(
        "roles",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("name_key", sa.String(64), nullable=False),
        sa.Column("role_id", sa.String(32), nullable=False),
        sa.Column("path", sa.String(512), nullable=False),
        sa.Column("assume_role_policy", sa.Text(), nullable=False),
        sa.Column("description", sa.String(1000), nullable=False),
        sa.Column("max_session_duration", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_roles"),
        sa.UniqueConstraint("name_key", name="uq_roles_name_key"),
    )
    op.create_table(
        "inline_policies",
        sa.Column("holder_kind", sa.String(8), nullable=False),
        sa.Column("holder", sa.String(64), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("holder_kind", "holder", "name", name="pk_inline_policies"),
    )
    op.create_table(
        "ownership",
        sa.Column("resource_arn", sa.String(2048), nullable=False),
        sa.Column("owner", sa.String(512), nullable=True),
        sa.Column("group_name", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("resource_arn", name="pk_ownership"),
    )
    op.create_index("ix_ownership_owner", "ownership", ["owner"])


def downgrade() -> None:
    for table in ("ownership", "inline_policies", "roles", "group_members", "groups", "access_keys", "users"):
        op.drop_table(table)
    with op.batch_alter_table("credentials") as batch:
        batch.drop_column("user_arn")
