"""Users, groups, roles, access keys and their policies; who owns what.

The API's authentication step asks :meth:`IdentityService.authenticate` for a user's key (a
signature is checked against the secret it returns) and :meth:`IdentityService.for_session` for
a job's session; both answer a :class:`~shipyard.core.credentials.Principal`. What a principal
holds is read once and kept (:class:`_Snapshot`) until an identity write on this server, or
``cache_seconds`` later for writes made by another server on the same database: a disabled key
stops working at once here, within ``cache_seconds`` everywhere.

The IAM API (api/_iam.py), the CLI (``shipyard users``, ``shipyard keys``) and the first start
with auth (:meth:`IdentityService.bootstrap`) make the changes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.credentials import Principal, SessionCredentials, s3_grants, unreachable
from shipyard.core.identity import (
    MAX_ACCESS_KEYS,
    AccessKey,
    Group,
    HolderKind,
    InlinePolicy,
    KeyStatus,
    Ownership,
    Role,
    User,
    check_name,
    check_path,
    check_policy_name,
    group_arn,
    may_reach,
    new_access_key,
    new_id,
    ownership_key,
    role_arn,
    role_name_of,
    root_arn,
    user_arn,
)
from shipyard.core.policy import ADMINISTRATOR, Policy
from shipyard.errors import (
    AccessDenied,
    ConflictError,
    LimitExceededError,
    MalformedPolicyDocument,
    NotFoundError,
    ValidationError,
)
from shipyard.store.identity import IdentityRepository

log = logging.getLogger(__name__)
T = TypeVar("T")

ADMIN_CREDENTIALS = "admin-credentials"
"""The file (in the data dir, 0600) where the first administrator's key is written."""
DEFAULT_ROLE = "ShipyardExecutionRole"
_TRUST_SAGEMAKER = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sagemaker.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


@dataclasses.dataclass(frozen=True)
class _Held:
    """A user as requests act: its record, groups and parsed policies."""

    user: User
    groups: tuple[str, ...]
    policies: tuple[Policy, ...]


class IdentityService:
    """Thread-safe. ``account_id``: the account in every ARN."""

    def __init__(
        self,
        repository: IdentityRepository,
        *,
        account_id: str,
        clock: Clock = SYSTEM_CLOCK,
        cache_seconds: float = 2.0,
        require_roles: bool = False,
    ) -> None:
        self.repository = repository
        self.account_id = account_id
        self.require_roles = require_roles
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[float, tuple[AccessKey, _Held] | None]] = {}
        self._roles: dict[str, tuple[float, tuple[Policy, ...] | None]] = {}
        self._flags: dict[str, tuple[float, bool]] = {}
        self._owners: dict[str, tuple[float, Ownership | None]] = {}

    # -- authentication -------------------------------------------------------------------------------
    def authenticate(self, access_key_id: str) -> tuple[str, Principal] | None:
        """The secret of a user's active key and the principal it acts as; None when the key is
        unknown, inactive, or its user is disabled."""
        return self._principal(self._cached(self._keys, access_key_id, self._load_key))

    def authenticate_cached(self, access_key_id: str) -> tuple[bool, tuple[str, Principal] | None]:
        """:meth:`authenticate` from what is kept, without reading the store (the event loop's
        fast path): ``(False, None)`` when it would have to read it."""
        with self._lock:
            hit = self._keys.get(access_key_id)
        if hit is None or time.monotonic() - hit[0] >= self._cache_seconds:
            return False, None
        return True, self._principal(hit[1])

    def _principal(self, found: tuple[AccessKey, _Held] | None) -> tuple[str, Principal] | None:
        if found is None:
            return None
        key, held = found
        if not key.active or not held.user.enabled:
            return None
        principal = Principal(
            held.user.arn,
            held.policies,
            administrator=held.user.admin,
            user=held.user.arn,
            groups=held.groups,
        )
        return key.secret_access_key, principal

    def for_session(self, session: SessionCredentials) -> Principal:
        """A job's session: its role's policies (every one allowed where no such role is
        recorded, as on a server without users) bounded by its scope, acting for the user who
        launched the job."""
        role = role_name_of(session.principal)
        policies = self._cached(self._roles, role, self._load_role) if role else None
        groups: tuple[str, ...] = ()
        if session.user:
            held = self._held_by_arn(session.user)
            groups = held.groups if held else ()
        return Principal.of_session(session, policies, groups)

    def role_exists(self, arn: str) -> bool:
        return self.find_role(arn) is not None

    def find_role(self, arn: str) -> Role | None:
        """The recorded role whose ARN is ``arn`` exactly (account and path too); None if none."""
        name = role_name_of(arn)
        role = self.repository.find_role(name) if name and ":role/" in arn else None
        return role if role is not None and role.arn == arn else None

    def role_named(self, name: str) -> Role | None:
        return self.repository.find_role(name)

    def roles_enforced(self) -> bool:
        """Whether a RoleArn must name a recorded role (and a non-administrator may pass only
        the roles its policies allow ``iam:PassRole`` on): when the server requires it
        (``auth = "on"``) or has any role recorded. Otherwise, as on a single-user server, any
        role ARN is accepted and grants everything (bounded by its job's scope)."""
        if self.require_roles:
            return True
        return self._cached(self._flags, "roles", lambda _: self.repository.role_count() > 0)

    def execution_role(self, user_name: str) -> Role | None:
        """What a user's notebook code runs as (``sagemaker.get_execution_role()``): the role
        named after the user when there is one, else :data:`DEFAULT_ROLE`; None when neither is
        recorded."""
        return self.repository.find_role(user_name) or self.repository.find_role(DEFAULT_ROLE)

    def _cached(self, cache: dict[str, tuple[float, T]], key: str, load: Callable[[str], T]) -> T:
        now = time.monotonic()
        with self._lock:
            hit = cache.get(key)
        if hit is not None and now - hit[0] < self._cache_seconds:
            return hit[1]
        value = load(key)
        with self._lock:
            if len(cache) > 10_000:
                cache.clear()
            cache[key] = (now, value)
        return value

    def _load_key(self, access_key_id: str) -> tuple[AccessKey, _Held] | None:
        found = self.repository.key(access_key_id)
        if found is None:
            return None
        key, user = found
        return key, self._load_held(user)

    def _load_held(self, user: User) -> _Held:
        groups, policies = self.repository.held_by(user.name)
        parsed = []
        for policy in policies:
            try:
                parsed.append(policy.policy)
            except ValidationError:  # stored before a stricter parser: it grants nothing
                log.warning(
                    "The %s %r's policy %r no longer parses", policy.holder_kind, policy.holder, policy.name
                )
        return _Held(user, tuple(groups), tuple(parsed))

    def _held_by_arn(self, arn: str) -> _Held | None:
        name = arn.rsplit("/", 1)[-1]
        try:
            user = self.repository.user(name)
        except NotFoundError:
            return None
        return self._load_held(user)

    def _load_role(self, name: str) -> tuple[Policy, ...] | None:
        role = self.repository.find_role(name)
        if role is None:
            return None
        return tuple(p.policy for p in self.repository.policies(HolderKind.ROLE, name))

    def _changed(self) -> None:
        with self._lock:
            self._keys.clear()
            self._roles.clear()
            self._flags.clear()
            self._owners.clear()

    # -- users and keys ---------------------------------------------------------------------------
    def create_user(self, name: str, *, path: str | None = None, admin: bool = False) -> User:
        check_name(name, "UserName")
        path = check_path(path)
        user = User(
            name, new_id("AIDA"), user_arn(self.account_id, name, path), path, self._clock.now(), admin=admin
        )
        self.repository.add_user(user)
        self._changed()
        log.info("Created the user %s%s", name, " (an administrator)" if admin else "")
        return user

    def user(self, name: str) -> User:
        return self.repository.user(name)

    def users(self, path_prefix: str = "/") -> list[User]:
        return self.repository.users(path_prefix)

    def set_user(self, name: str, *, enabled: bool | None = None, admin: bool | None = None) -> User:
        user = self.repository.set_user(name, enabled=enabled, admin=admin)
        self._changed()
        return user

    def delete_user(self, name: str, *, cascade: bool = False) -> None:
        """Delete a user. As IAM, a user that still has access keys, inline policies or groups
        is refused (DeleteConflict, a ConflictError) unless ``cascade``, which removes them too.

        Raises:
            NotFoundError: no such user.
            ConflictError: it still holds something (not ``cascade``).
        """
        if not cascade:
            held = [
                _counted(len(found), *what)
                for found, what in (
                    (self.repository.keys(name), ("access key", "access keys")),
                    (self.repository.policies(HolderKind.USER, name), ("inline policy", "inline policies")),
                    (self.repository.groups_of(name), ("group", "groups")),
                )
                if found
            ]
            if held:
                raise ConflictError(
                    f"Cannot delete entity, must delete access keys, policies and group memberships "
                    f"first: the user {name!r} has {', '.join(held)}"
                )
        self.repository.delete_user(name)
        self._changed()

    def create_key(self, user_name: str) -> AccessKey:
        """A new active key pair for the user (at most two per user, as IAM)."""
        if len(self.repository.keys(user_name)) >= MAX_ACCESS_KEYS:
            raise LimitExceededError(
                f"Cannot exceed quota for AccessKeysPerUser: {MAX_ACCESS_KEYS} (the user {user_name!r} has "
                f"{MAX_ACCESS_KEYS}; delete one first)"
            )
        key = self.repository.add_key(new_access_key(user_name, self._clock.now()))
        self._changed()
        return key

    def keys(self, user_name: str) -> list[AccessKey]:
        return self.repository.keys(user_name)

    def set_key_status(self, user_name: str, access_key_id: str, status: str) -> AccessKey:
        try:
            value = KeyStatus(status)
        except ValueError:
            raise ValidationError(
                f"Status must be 'Active' or 'Inactive', got {status!r}", field="Status", value=status
            ) from None
        key = self.repository.set_key_status(user_name, access_key_id, value)
        self._changed()
        return key

    def delete_key(self, user_name: str, access_key_id: str) -> None:
        self.repository.delete_key(user_name, access_key_id)
        self._changed()

    def user_of_key(self, access_key_id: str) -> str:
        """The name of the user whose key it is."""
        found = self.repository.key(access_key_id)
        if found is None:
            raise NotFoundError(f"The Access Key with id {access_key_id} cannot be found.")
        return found[1].name

    # -- groups -----------------------------------------------------------------------------------
    def create_group(self, name: str, *, path: str | None = None) -> Group:
        check_name(name, "GroupName")
        path = check_path(path)
        group = Group(name, new_id("AGPA"), group_arn(self.account_id, name, path), path, self._clock.now())
        self.repository.add_group(group)
        return group

    def group(self, name: str) -> tuple[Group, list[User]]:
        return self.repository.group(name)

    def groups(self, path_prefix: str = "/") -> list[Group]:
        return self.repository.groups(path_prefix)

    def groups_of(self, user_name: str) -> list[Group]:
        return self.repository.groups_of(user_name)

    def add_to_group(self, group_name: str, user_name: str) -> None:
        self.repository.add_member(group_name, user_name)
        self._changed()

    def remove_from_group(self, group_name: str, user_name: str) -> None:
        self.repository.remove_member(group_name, user_name)
        self._changed()

    def delete_group(self, name: str, *, cascade: bool = False) -> None:
        """Delete a group. As IAM, a group with members or inline policies is refused
        (DeleteConflict, a ConflictError) unless ``cascade``, which removes them too."""
        if not cascade:
            _, members = self.repository.group(name)
            policies = self.repository.policies(HolderKind.GROUP, name)
            if members or policies:
                raise ConflictError(
                    f"Cannot delete entity, must remove users from group and delete policies first: "
                    f"the group {name!r} has {_counted(len(members), 'member', 'members')} and "
                    f"{_counted(len(policies), 'inline policy', 'inline policies')}"
                )
        self.repository.delete_group(name)
        self._changed()

    # -- roles ------------------------------------------------------------------------------------
    def create_role(
        self,
        name: str,
        *,
        assume_role_policy: str | None = None,
        path: str | None = None,
        description: str = "",
        max_session_duration: int = 3600,
    ) -> Role:
        check_name(name, "RoleName")
        path = check_path(path)
        document = assume_role_policy or _TRUST_SAGEMAKER
        try:
            trust = json.loads(document)
        except ValueError:
            raise MalformedPolicyDocument(
                f"AssumeRolePolicyDocument is not JSON: {document[:200]!r}"
            ) from None
        if not isinstance(trust, dict) or "Statement" not in trust:
            raise MalformedPolicyDocument(
                f"AssumeRolePolicyDocument must be a policy document with a Statement: {document[:200]!r}"
            )
        if not 3600 <= max_session_duration <= 43200:
            raise ValidationError(
                f"MaxSessionDuration must be 3600-43200 seconds, got {max_session_duration}",
                field="MaxSessionDuration",
                value=max_session_duration,
            )
        role = Role(
            name,
            new_id("AROA"),
            role_arn(self.account_id, name, path),
            path,
            self._clock.now(),
            document,
            description,
            max_session_duration,
        )
        self.repository.add_role(role)
        self._changed()
        return role

    def role(self, name: str) -> Role:
        return self.repository.role(name)

    def roles(self, path_prefix: str = "/") -> list[Role]:
        return self.repository.roles(path_prefix)

    def delete_role(self, name: str) -> None:
        self.repository.delete_role(name)
        self._changed()

    # -- inline policies --------------------------------------------------------------------------
    def put_policy(self, kind: HolderKind, holder: str, name: str, document: str) -> InlinePolicy:
        """Add or replace an inline policy; the document must parse (MalformedPolicyDocument)."""
        check_policy_name(name)
        policy = InlinePolicy(kind, holder, name, document)
        policy.policy  # noqa: B018 - parsed to refuse a malformed one before it is stored
        self.repository.put_policy(policy)
        self._changed()
        return policy

    def policy(self, kind: HolderKind, holder: str, name: str) -> InlinePolicy:
        return self.repository.policy(kind, holder, name)

    def policies(self, kind: HolderKind, holder: str) -> list[InlinePolicy]:
        return self.repository.policies(kind, holder)

    def delete_policy(self, kind: HolderKind, holder: str, name: str) -> None:
        self.repository.delete_policy(kind, holder, name)
        self._changed()

    def policies_of(self, arn: str) -> tuple[bool, list[InlinePolicy]]:
        """What the policy simulator evaluates for the user, group or role ``arn`` names (an
        assumed role's ARN names its role): whether it acts as an administrator (the root, an
        administrator user, a role no one recorded on a server that does not enforce roles), and
        its inline policies (a user's with its groups').

        Raises:
            NotFoundError: no such user, group or role (IAM's NoSuchEntity).
            ValidationError: ``arn`` names none of them.
        """
        if arn == root_arn(self.account_id):
            return True, []
        parts = arn.split(":", 5)
        resource = parts[5] if len(parts) == 6 and parts[0] == "arn" else ""
        role = role_name_of(arn)
        if role is not None:
            found = self.repository.find_role(role)
            if found is None:
                if self.roles_enforced():
                    raise NotFoundError(f"The role with name {role} cannot be found.")
                return True, []
            return False, self.repository.policies(HolderKind.ROLE, role)
        name = resource.rsplit("/", 1)[-1]
        if parts[2:3] == ["iam"] and resource.startswith("user/") and name:
            user = self.repository.user(name)
            if user.arn != arn:
                raise NotFoundError(f"The user with name {name} cannot be found.")
            return user.admin, self.repository.held_by(name)[1]
        if parts[2:3] == ["iam"] and resource.startswith("group/") and name:
            return False, self.repository.policies(HolderKind.GROUP, name)
        raise ValidationError(
            f"PolicySourceArn {arn!r} is not the ARN of a user, group or role of this account",
            field="PolicySourceArn",
            value=arn,
        )

    # -- ownership --------------------------------------------------------------------------------
    # Records are kept under ownership_key(ARN) (a SageMaker ARN without its region) and read
    # through a per-resource cache: one indexed lookup for what a request names, none when it is
    # kept. This server's writes update the cache; another server's are seen within
    # cache_seconds, as its key changes are.
    def claim(self, resource_arn: str, principal: Principal) -> None:
        """Record that ``principal`` created the resource (root's and administrators' are the
        lab's)."""
        self.claim_for(resource_arn, None if principal.is_administrator else principal.user)

    def claim_for(self, resource_arn: str, owner: str | None) -> None:
        """Record the owner of a resource (None: the lab's), shared with no group: what a create
        does, and what the platform does for what it makes for one (a tuning trial, a step). An
        administrator's are the lab's, as root's: what the lab's administrator makes, the lab's
        policies hand out."""
        if owner is not None and self._administrator(owner):
            owner = None
        key = ownership_key(resource_arn)
        self.repository.claim(key, owner)
        self._remember(key, Ownership(key, owner))

    def share(self, resource_arn: str, group: str | None) -> None:
        """Share a resource with a group (None: with none).

        Raises:
            ValidationError: not a group name.
            NotFoundError: no such group.
        """
        if group is not None:
            check_name(group, "Value")
            group = self.repository.group(group)[0].name  # as recorded (names ignore case)
        key = ownership_key(resource_arn)
        self.repository.share(key, group)
        with self._lock:
            self._owners.pop(key, None)

    def forget(self, resource_arn: str) -> None:
        """Forget a deleted resource's record (a new one of the same name is its creator's)."""
        key = ownership_key(resource_arn)
        self.repository.forget(key)
        self._remember(key, None)

    def ownership(self, resource_arns: Iterable[str]) -> dict[str, Ownership]:
        """The records of the given ARNs that exist, by the ARN asked for (those without one
        are the lab's)."""
        return {arn: found for arn, found in self.owners(resource_arns).items() if found is not None}

    def owners(self, resource_arns: Iterable[str]) -> dict[str, Ownership | None]:
        """Each ARN's record (None: it has none, it is the lab's), in one lookup of those not
        kept."""
        arns = list(resource_arns)
        keys = {arn: ownership_key(arn) for arn in arns}
        now = time.monotonic()
        known: dict[str, Ownership | None] = {}
        missing = []
        with self._lock:
            for key in set(keys.values()):
                hit = self._owners.get(key)
                if hit is not None and now - hit[0] < self._cache_seconds:
                    known[key] = hit[1]
                else:
                    missing.append(key)
        if missing:
            found = self.repository.ownership(missing)
            with self._lock:
                if len(self._owners) > 10_000:
                    self._owners.clear()
                for key in missing:
                    known[key] = found.get(key)
                    self._owners[key] = (now, known[key])
        return {arn: _as_arn(known[keys[arn]], arn) for arn in arns}

    def owners_cached(self, resource_arns: Iterable[str]) -> dict[str, Ownership | None] | None:
        """:meth:`owners` from what is kept, without reading the store (the event loop's fast
        path); None when it would have to read it."""
        now = time.monotonic()
        answer: dict[str, Ownership | None] = {}
        with self._lock:
            for arn in resource_arns:
                hit = self._owners.get(ownership_key(arn))
                if hit is None or now - hit[0] >= self._cache_seconds:
                    return None
                answer[arn] = _as_arn(hit[1], arn)
        return answer

    def reachable(self, principal: Principal, resource_arns: Iterable[str]) -> dict[str, bool]:
        """Whether ``principal`` may reach each resource at all (:func:`may_reach`). Root, an
        administrator and a job of root's (acting for no user; its scope bounds it) reach
        everything."""
        arns = list(resource_arns)
        if principal.is_administrator or principal.user is None:
            return dict.fromkeys(arns, True)
        return {arn: reaches(principal, record) for arn, record in self.owners(arns).items()}

    def principal_of(self, user_arn: str) -> Principal | None:
        """The user ``user_arn`` as its own requests act (None: it no longer exists, another user
        took its name, or it is disabled)."""
        held = self._held_by_arn(user_arn)
        if held is None or held.user.arn != user_arn or not held.user.enabled:
            return None
        return Principal(
            held.user.arn,
            held.policies,
            administrator=held.user.admin,
            user=held.user.arn,
            groups=held.groups,
        )

    def launch_refusal(
        self,
        owner: str | None,
        kind: str,
        params: Mapping[str, Any],
        *,
        action: str,
        model: Mapping[str, Any] | None = None,
        uses: Iterable[str] = (),
    ) -> AccessDenied | None:
        """Why the user ``owner`` may not have the platform make, for it, work of ``kind``
        (training, processing, transform, tuning; "" for none) from ``params`` — a pipeline's
        step, which no request of the user's names —, as the API would refuse the same create:
        the user's policies must allow what the work reads and writes in S3, and the user must
        reach each bucket, and each resource the work ``uses`` (a model, a package group). None
        when it may (root's work, an administrator's)."""
        if owner is None:
            return None
        principal = self.principal_of(owner)
        if principal is None:
            return AccessDenied(owner, action, "*", "the user no longer exists or is disabled")
        if principal.is_administrator:
            return None
        grants = s3_grants(kind, params, model=model) if kind else []
        missing = unreachable(principal, grants)
        if missing:
            needed, resource = missing[0]
            return AccessDenied(
                owner, needed, resource, f"no identity-based policy allows the {needed} action"
            )
        buckets = [f"arn:aws:s3:::{grant.bucket}" for grant in grants]
        for arn, reached in self.reachable(principal, [*buckets, *uses]).items():
            if not reached:
                return AccessDenied(
                    owner, action, arn, f"no resource-based policy allows the {action} action"
                )
        return None

    def _administrator(self, user_arn: str) -> bool:
        try:
            user = self.repository.user(user_arn.rsplit("/", 1)[-1])
        except NotFoundError:
            return False
        return user.admin and user.arn == user_arn

    def _remember(self, key: str, record: Ownership | None) -> None:
        with self._lock:
            self._owners[key] = (time.monotonic(), record)

    # -- the first start --------------------------------------------------------------------------
    def bootstrap(self, data_dir: Path) -> Path | None:
        """On a server with auth and no users yet: create the administrator ``admin`` with a key,
        written to ``<data dir>/admin-credentials`` (0600, an AWS shared-credentials file), and
        the role :data:`DEFAULT_ROLE` granting everything (what jobs act as unless told
        otherwise). The file's path; None when there were users already."""
        if self.repository.user_count():
            return None
        try:
            self.create_user("admin", admin=True)
        except ConflictError:  # another server on the same database got there first
            return None
        key = self.create_key("admin")
        if self.repository.find_role(DEFAULT_ROLE) is None:
            self.create_role(DEFAULT_ROLE, description="What Shipyard jobs act as by default")
            self.put_policy(
                HolderKind.ROLE, DEFAULT_ROLE, "Everything", json.dumps(ADMINISTRATOR.to_document())
            )
        path = data_dir / ADMIN_CREDENTIALS
        write_credentials(path, key)
        return path


def reaches(principal: Principal, record: Ownership | None) -> bool:
    """Whether ``principal`` reaches a resource with ``record`` (None: the lab's)."""
    if record is None or principal.is_administrator or principal.user is None:
        return True
    return may_reach(
        record.owner, record.group, caller=principal.user, groups=principal.groups, administrator=False
    )


def _as_arn(record: Ownership | None, arn: str) -> Ownership | None:
    return None if record is None else dataclasses.replace(record, resource_arn=arn)


def _counted(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def write_credentials(path: Path, key: AccessKey, profile: str = "default") -> None:
    """An AWS shared-credentials file holding ``key``, created 0600 (never readable by others,
    not even for an instant)."""
    text = (
        f"[{profile}]\n"
        f"aws_access_key_id = {key.access_key_id}\n"
        f"aws_secret_access_key = {key.secret_access_key}\n"
    )
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def read_credentials(path: Path) -> tuple[str, str] | None:
    """The key pair in a shared-credentials file written by :func:`write_credentials`."""
    try:
        text = path.read_text()
    except OSError:
        return None
    values = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name.strip()] = value.strip()
    key, secret = values.get("aws_access_key_id"), values.get("aws_secret_access_key")
    return (key, secret) if key and secret else None
