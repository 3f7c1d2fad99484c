"""Session credentials: stored when issued, found by access key id, deleted when revoked or expired."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from shipyard.core.credentials import SessionCredentials
from shipyard.core.policy import Policy
from shipyard.store._db import Database
from shipyard.store._models import CredentialRow


class CredentialRepository:
    """The ``credentials`` table. The secret is kept as it is (SigV4 needs it to check a
    signature), so the database is the server's alone (0600, in the 0700 data dir)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, credentials: SessionCredentials, created: dt.datetime) -> None:
        with self._db.transaction() as session:
            session.add(
                CredentialRow(
                    access_key_id=credentials.access_key_id,
                    secret_access_key=credentials.secret_access_key,
                    session_token=credentials.session_token,
                    owner=credentials.owner,
                    principal=credentials.principal,
                    scope=credentials.scope.to_document(),
                    user_arn=credentials.user,
                    created_at=created,
                    expires_at=credentials.expiration,
                )
            )

    def get(self, access_key_id: str) -> SessionCredentials | None:
        """The credentials of ``access_key_id``, expired ones included; None when unknown or revoked."""
        with self._db.transaction(readonly=True) as session:
            row = session.get(CredentialRow, access_key_id)
            if row is None:
                return None
            return SessionCredentials(
                access_key_id=row.access_key_id,
                secret_access_key=row.secret_access_key,
                session_token=row.session_token,
                expiration=_aware(row.expires_at),
                owner=row.owner,
                principal=row.principal,
                scope=Policy.from_document(row.scope),
                user=row.user_arn,
            )

    def delete_owner(self, owner: str) -> int:
        """Delete every credential of ``owner``; how many there were."""
        with self._db.transaction() as session:
            result = session.execute(sa.delete(CredentialRow).where(CredentialRow.owner == owner))
            return int(result.rowcount)  # type: ignore[attr-defined]

    def delete_expired(self, before: dt.datetime) -> int:
        """Delete the credentials that expired before ``before``; how many."""
        with self._db.transaction() as session:
            result = session.execute(sa.delete(CredentialRow).where(CredentialRow.expires_at < before))
            return int(result.rowcount)  # type: ignore[attr-defined]

    def owners(self) -> list[str]:
        """Whose credentials are stored (each owner once)."""
        with self._db.transaction(readonly=True) as session:
            return sorted(session.scalars(sa.select(CredentialRow.owner).distinct()))


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite gives back naive datetimes; every stored one is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
