"""The identity service alone, on a data dir no server is using: how ``shipyard users`` and
``shipyard keys`` manage users while the server is stopped, and make the first administrator
on a fresh data dir."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from shipyard.config import Settings
from shipyard.core.identity import AccessKey, HolderKind
from shipyard.core.policy import ADMINISTRATOR
from shipyard.errors import ConfigurationError
from shipyard.services._platform import _lock_data_dir, _private_database_files
from shipyard.services.identity import ADMIN_CREDENTIALS, DEFAULT_ROLE, IdentityService, write_credentials
from shipyard.store import Database
from shipyard.store.identity import IdentityRepository


@contextlib.contextmanager
def open_identity(settings: Settings) -> Iterator[IdentityService]:
    """The identity service on the settings' database, holding the data dir's lock as a server
    does (so none starts meanwhile), the schema brought up to date as a server's start would.

    Raises:
        ConfigurationError: a server (or another such command) holds the data dir, naming its pid.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.data_dir, 0o700)
    try:
        lock = _lock_data_dir(settings)
    except ConfigurationError:
        holder = (settings.data_dir / "server.lock").read_text().strip() or "unknown"
        raise ConfigurationError(
            f"A Shipyard process (pid {holder}) is using the data dir {str(settings.data_dir)!r} but no "
            "server answers there: wait until it is up and try again (or name the server with --url)"
        ) from None
    try:
        db = Database(settings.database_url)
        try:
            db.upgrade()
            _private_database_files(settings)
            yield IdentityService(IdentityRepository(db, settings.account_id), account_id=settings.account_id)
        finally:
            db.dispose()
    finally:
        lock.close()


def first_administrator(identity: IdentityService, key: AccessKey, data_dir: Path) -> Path | None:
    """What the first start with ``auth = "on"`` does for ``admin``, for an administrator made
    on a store without a server: the role :data:`DEFAULT_ROLE` (what jobs act as), and the key
    written to ``<data dir>/admin-credentials`` (0600) unless that file exists. The file's path
    when it was written."""
    if identity.repository.find_role(DEFAULT_ROLE) is None:
        identity.create_role(DEFAULT_ROLE, description="What Shipyard jobs act as by default")
        identity.put_policy(
            HolderKind.ROLE, DEFAULT_ROLE, "Everything", json.dumps(ADMINISTRATOR.to_document())
        )
    path = data_dir / ADMIN_CREDENTIALS
    if path.exists():
        return None
    write_credentials(path, key)
    return path
