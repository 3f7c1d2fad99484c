"""Where ``shipyard users`` and ``shipyard keys`` make their changes (:func:`directory`):

- through a server, when one is named (``--url``, ``$SHIPYARD_URL``, the config file's
  ``[client] url``) or is running on the data dir (its ``server.json``): its IAM API, signed with
  the key :func:`shipyard.sdk._connection.find_credentials` finds, and ``/api/v1/users`` for
  what IAM has no operation for (administrator, enabled);
- else in the data dir's store itself, through the identity service, holding the data dir's lock
  as a server would: how the first administrator is made before any server ran, and how users
  are managed while it is stopped. Only the data dir's owner can open it (it is 0700): the
  local administrator.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shipyard.errors import NotFoundError


@dataclasses.dataclass(frozen=True, repr=False)
class KeyEntry:
    """An access key as the commands show it; ``secret`` only when it was just created."""

    access_key_id: str
    user: str | None
    status: str
    created: dt.datetime | None
    secret: str | None = None

    def __repr__(self) -> str:  # never the secret
        return f"KeyEntry({self.access_key_id}, user={self.user!r}, status={self.status})"


@dataclasses.dataclass(frozen=True)
class UserEntry:
    name: str
    arn: str
    created: dt.datetime | None
    administrator: bool
    enabled: bool
    groups: tuple[str, ...]
    keys: tuple[KeyEntry, ...]


@dataclasses.dataclass(frozen=True)
class Holdings:
    """What deleting a user removes with it."""

    keys: tuple[str, ...]
    policies: tuple[str, ...]
    groups: tuple[str, ...]


class Directory(abc.ABC):
    """The lab's users and keys, wherever they are changed. ``url``: the server the keys are for."""

    url: str

    @abc.abstractmethod
    def acting_as(self) -> str:
        """One line: who the changes are made as, and where."""

    @abc.abstractmethod
    def add_user(self, name: str, *, administrator: bool) -> None: ...

    @abc.abstractmethod
    def join(self, user: str, group: str) -> bool:
        """Add the user to the group, made first when missing (True then)."""

    @abc.abstractmethod
    def users(self) -> list[UserEntry]: ...

    def user(self, name: str) -> UserEntry:
        for entry in self.users():
            if entry.name.lower() == name.lower():
                return entry
        raise NotFoundError(f"The user with name {name} cannot be found.")

    @abc.abstractmethod
    def set_enabled(self, name: str, enabled: bool) -> None: ...

    @abc.abstractmethod
    def holdings(self, name: str) -> Holdings: ...

    @abc.abstractmethod
    def delete_user(self, name: str) -> None:
        """Delete the user with its keys, inline policies and group memberships."""

    @abc.abstractmethod
    def create_key(self, user: str) -> KeyEntry: ...

    @abc.abstractmethod
    def keys(self, user: str | None) -> list[KeyEntry]:
        """The user's keys; every user's with None (a caller who may not list users: its own)."""

    @abc.abstractmethod
    def set_key_status(self, access_key_id: str, status: str) -> KeyEntry: ...

    @abc.abstractmethod
    def delete_key(self, access_key_id: str) -> KeyEntry: ...

    def keep_administrator_key(self, key: KeyEntry) -> Path | None:
        """Keep a new administrator's key where the local administrator finds it (the store:
        ``<data dir>/admin-credentials`` unless there is one); the file, when written."""
        return None


@contextlib.contextmanager
def directory(url: str | None, data_dir: Path | None) -> Iterator[Directory]:
    """The directory the commands use (the module docstring's rule)."""
    from shipyard.sdk._connection import configured_url, connect, running_server

    server = url or (None if data_dir is not None else configured_url()) or running_server(data_dir)
    if server is not None:
        yield ServerDirectory(connect(server, data_dir=data_dir))
        return
    from shipyard.config import Settings
    from shipyard.services import open_identity

    settings = Settings.load({"data_dir": data_dir})
    with open_identity(settings) as identity:
        yield StoreDirectory(identity, settings)


class ServerDirectory(Directory):
    """Through a running server: its IAM API, and ``/api/v1/users`` for the two flags."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.url = connection.url
        self.iam = connection.client("iam")

    def acting_as(self) -> str:
        found = self.connection.client("sts").get_caller_identity()
        credentials = self.connection.credentials
        return f"As {found['Arn']} (key {credentials.access_key_id} from {credentials.source}) at {self.url}"

    def _native(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = self.connection.request(method, path, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def add_user(self, name: str, *, administrator: bool) -> None:
        self.iam.create_user(UserName=name)
        if administrator:
            self._native("PATCH", f"users/{name}", json={"administrator": True})

    def join(self, user: str, group: str) -> bool:
        created = False
        try:
            self.iam.get_group(GroupName=group)
        except self.iam.exceptions.NoSuchEntityException:
            self.iam.create_group(GroupName=group)
            created = True
        self.iam.add_user_to_group(GroupName=group, UserName=user)
        return created

    def users(self) -> list[UserEntry]:
        return [_user_entry(found) for found in self._native("GET", "users")]

    def set_enabled(self, name: str, enabled: bool) -> None:
        self._native("PATCH", f"users/{name}", json={"enabled": enabled})

    def holdings(self, name: str) -> Holdings:
        keys = self.iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
        policies = self.iam.list_user_policies(UserName=name)["PolicyNames"]
        groups = self.iam.list_groups_for_user(UserName=name)["Groups"]
        return Holdings(
            tuple(k["AccessKeyId"] for k in keys), tuple(policies), tuple(g["GroupName"] for g in groups)
        )

    def delete_user(self, name: str) -> None:
        held = self.holdings(name)  # IAM refuses to delete a user holding any (DeleteConflict)
        for key in held.keys:
            self.iam.delete_access_key(UserName=name, AccessKeyId=key)
        for policy in held.policies:
            self.iam.delete_user_policy(UserName=name, PolicyName=policy)
        for group in held.groups:
            self.iam.remove_user_from_group(GroupName=group, UserName=name)
        self.iam.delete_user(UserName=name)

    def create_key(self, user: str) -> KeyEntry:
        key = self.iam.create_access_key(UserName=user)["AccessKey"]
        return KeyEntry(
            key["AccessKeyId"], key["UserName"], key["Status"], key.get("CreateDate"), key["SecretAccessKey"]
        )

    def keys(self, user: str | None) -> list[KeyEntry]:
        if user is None:
            try:
                return [k for u in self.users() for k in u.keys]
            except Exception as exc:  # not an administrator: IAM's ListAccessKeys answers the caller's
                if not _refused(exc):
                    raise
        found = self.iam.list_access_keys(**({"UserName": user} if user else {}))["AccessKeyMetadata"]
        return [
            KeyEntry(k["AccessKeyId"], k.get("UserName"), k["Status"], k.get("CreateDate")) for k in found
        ]

    def _key(self, access_key_id: str) -> KeyEntry:
        for key in self.keys(None):
            if key.access_key_id == access_key_id:
                return key
        raise NotFoundError(f"The Access Key with id {access_key_id} cannot be found.")

    def set_key_status(self, access_key_id: str, status: str) -> KeyEntry:
        key = self._key(access_key_id)
        named = {"UserName": key.user} if key.user else {}
        self.iam.update_access_key(AccessKeyId=access_key_id, Status=status, **named)
        return dataclasses.replace(key, status=status)

    def delete_key(self, access_key_id: str) -> KeyEntry:
        key = self._key(access_key_id)
        named = {"UserName": key.user} if key.user else {}
        self.iam.delete_access_key(AccessKeyId=access_key_id, **named)
        return key


def _refused(exc: Exception) -> bool:
    """Whether the server answered that the caller may not (a 403)."""
    import httpx
    from botocore.exceptions import ClientError

    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code == 403
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") == "AccessDenied"


def _user_entry(found: dict[str, Any]) -> UserEntry:
    return UserEntry(
        found["name"],
        found["arn"],
        _when(found.get("created")),
        bool(found["administrator"]),
        bool(found["enabled"]),
        tuple(found.get("groups", ())),
        tuple(
            KeyEntry(k["access_key_id"], found["name"], k["status"], _when(k.get("created")))
            for k in found.get("access_keys", ())
        ),
    )


def _when(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


class StoreDirectory(Directory):
    """In the data dir's store, through the identity service (no server is running on it)."""

    def __init__(self, identity: Any, settings: Any) -> None:
        self.identity = identity
        self.settings = settings
        self.url = settings.url

    def acting_as(self) -> str:
        dialect = self.settings.database_url.split(":", 1)[0].split("+", 1)[0]
        line = (
            f"No server is running on {self.settings.data_dir}: changing its store ({dialect}) "
            "directly, as the local administrator"
        )
        if not self.settings.auth_enabled:
            line += ' (its server does not ask for keys yet: set auth = "on" in its config)'
        return line

    def add_user(self, name: str, *, administrator: bool) -> None:
        self.identity.create_user(name, admin=administrator)

    def join(self, user: str, group: str) -> bool:
        created = False
        try:
            self.identity.group(group)
        except NotFoundError:
            self.identity.create_group(group)
            created = True
        self.identity.add_to_group(group, user)
        return created

    def users(self) -> list[UserEntry]:
        return [self._entry(u) for u in self.identity.users()]

    def _entry(self, user: Any) -> UserEntry:
        return UserEntry(
            user.name,
            user.arn,
            user.created,
            user.admin,
            user.enabled,
            tuple(g.name for g in self.identity.groups_of(user.name)),
            tuple(_store_key(k) for k in self.identity.keys(user.name)),
        )

    def set_enabled(self, name: str, enabled: bool) -> None:
        self.identity.set_user(name, enabled=enabled)

    def holdings(self, name: str) -> Holdings:
        from shipyard.core.identity import HolderKind

        return Holdings(
            tuple(k.access_key_id for k in self.identity.keys(name)),
            tuple(p.name for p in self.identity.policies(HolderKind.USER, name)),
            tuple(g.name for g in self.identity.groups_of(name)),
        )

    def delete_user(self, name: str) -> None:
        self.identity.delete_user(name, cascade=True)

    def create_key(self, user: str) -> KeyEntry:
        key = self.identity.create_key(user)
        return dataclasses.replace(_store_key(key), secret=key.secret_access_key)

    def keys(self, user: str | None) -> list[KeyEntry]:
        names = [user] if user else [u.name for u in self.identity.users()]
        return [_store_key(k) for name in names for k in self.identity.keys(name)]

    def set_key_status(self, access_key_id: str, status: str) -> KeyEntry:
        user = self.identity.user_of_key(access_key_id)
        return _store_key(self.identity.set_key_status(user, access_key_id, status))

    def delete_key(self, access_key_id: str) -> KeyEntry:
        user = self.identity.user_of_key(access_key_id)
        [key] = [k for k in self.identity.keys(user) if k.access_key_id == access_key_id]
        self.identity.delete_key(user, access_key_id)
        return _store_key(key)

    def keep_administrator_key(self, key: KeyEntry) -> Path | None:
        from shipyard.core.identity import AccessKey, KeyStatus
        from shipyard.services import first_administrator

        assert key.secret is not None and key.user is not None and key.created is not None
        stored = AccessKey(key.access_key_id, key.secret, key.user, KeyStatus(key.status), key.created)
        return first_administrator(self.identity, stored, self.settings.data_dir)


def _store_key(key: Any) -> KeyEntry:
    return KeyEntry(key.access_key_id, key.user_name, key.status.value, key.created)
