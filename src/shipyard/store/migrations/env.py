"""Alembic environment: runs migrations on the engine the caller put in the config's attributes."""

from __future__ import annotations

from alembic import context

from shipyard.store._models import Base

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=engine.dialect.name == "sqlite",
    )
    context.run_migrations()
