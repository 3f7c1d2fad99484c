"""The metadata database: engine, transactions, and migrations.

SQLite (WAL mode) by default, any SQLAlchemy URL otherwise; Postgres is tested in CI. Every change
of state goes through :meth:`Database.transaction`, which commits or rolls back as one unit and
turns database errors into Shipyard's domain errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.orm import Session, sessionmaker

from shipyard.errors import ConfigurationError, ConflictError, ShipyardError

log = logging.getLogger(__name__)


def normalize_url(url: str) -> str:
    """Pick the drivers Shipyard installs: psycopg 3 for Postgres."""
    for plain in ("postgresql://", "postgres://"):
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url


class Database:
    """A connection pool to the metadata database, and the one way to run a transaction on it."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        try:
            sa_url = sa.make_url(self.url)
        except exc.ArgumentError:
            raise ConfigurationError(f"database_url {url!r} is not a valid SQLAlchemy URL") from None
        self.dialect = sa_url.get_backend_name()
        kwargs: dict[str, Any] = {"future": True}
        if self.dialect == "sqlite":
            if sa_url.database and sa_url.database != ":memory:":
                from pathlib import Path

                Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine = sa.create_engine(self.url, **kwargs)
        except (ImportError, exc.NoSuchModuleError) as e:
            raise ConfigurationError(
                f"database_url {url!r} needs a driver that is not installed: {e}"
            ) from None
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # pysqlite's own transaction handling defers BEGIN; emit it ourselves so that a
            # transaction that reads then writes holds its snapshot (BEGIN IMMEDIATE avoids
            # SQLITE_BUSY upgrade deadlocks between concurrent writers).
            event.listen(self.engine, "begin", _sqlite_begin)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextlib.contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on any error.

        ``readonly`` transactions may run beside a writer (on SQLite they take no write lock);
        any other transaction is serialised with other writers from its start, so a decision made
        on what it read still holds when it writes.

        Raises:
            ConflictError: a uniqueness constraint was violated.
            ShipyardError: the database could not be reached or failed.
        """
        session = self._sessions()
        if readonly:
            session.connection(execution_options={"shipyard_readonly": True})
        try:
            yield session
            session.commit()
        except exc.IntegrityError as e:
            session.rollback()
            raise ConflictError(f"Conflicting change refused by the database: {e.orig}") from e
        except exc.OperationalError as e:
            session.rollback()
            raise ShipyardError(f"Metadata database error: {e.orig}") from e
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def lock(self, session: Session, name: str) -> None:
        """Serialise this transaction with every other that locks ``name``, until it ends.

        Used where a decision depends on rows that may not exist yet (a limit on a count, say).
        SQLite needs nothing: its writing transactions are already serialised (BEGIN IMMEDIATE).
        """
        if self.dialect == "postgresql":
            key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
            session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def upgrade(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        from shipyard.store._migrate import upgrade

        upgrade(self.engine)

    def current_revision(self) -> str | None:
        from shipyard.store._migrate import current_revision

        return current_revision(self.engine)

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_begin(conn: Any) -> None:
    readonly = conn.get_execution_options().get("shipyard_readonly")
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN, not the driver.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
