"""ORM tables. Private to the store package: repositories return core objects, never these rows.

Every change here needs a migration in ``migrations/versions`` (``alembic revision --autogenerate``
run against a database at head, then reviewed by hand).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class TagRow(Base):
    __tablename__ = "tags"

    resource_arn: Mapped[str] = mapped_column(sa.String(2048), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(128), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(256), nullable=False, default="")
