"""Alembic, driven from code: the server and ``shipyard db upgrade`` both call :func:`upgrade`."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Engine


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", "shipyard.store:migrations")
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    """The newest migration shipped with this version of Shipyard."""
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", "shipyard.store:migrations")
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head
