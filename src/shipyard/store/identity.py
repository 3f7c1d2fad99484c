"""Users, access keys, groups, roles, inline policies and ownership (core/identity.py's records).

Every method is one transaction. Names are unique case-insensitively, as IAM's: ``name_key`` is
the lower-cased name, and a second ``Alice`` beside ``alice`` is refused as a conflict.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from shipyard.core.identity import (
    AccessKey,
    Group,
    HolderKind,
    InlinePolicy,
    KeyStatus,
    Ownership,
    Role,
    User,
    group_arn,
    role_arn,
    user_arn,
)
from shipyard.errors import ConflictError, NotFoundError
from shipyard.store._db import Database
from shipyard.store._models import (
    AccessKeyRow,
    GroupMemberRow,
    GroupRow,
    InlinePolicyRow,
    OwnershipRow,
    RoleRow,
    UserRow,
)


class IdentityRepository:
    """The identity tables. ``account`` is the account id in the ARNs built from rows."""

    def __init__(self, db: Database, account: str) -> None:
        self._db = db
        self._account = account

    # -- users ----------------------------------------------------------------------------------------
    def add_user(self, user: User) -> User:
        row = UserRow(
            name=user.name,
            name_key=user.name.lower(),
            user_id=user.user_id,
            path=user.path,
            admin=user.admin,
            enabled=user.enabled,
            created_at=user.created,
        )
        self._insert(row, f"User with name {user.name} already exists.")
        return user

    def user(self, name: str) -> User:
        with self._db.transaction(readonly=True) as session:
            return self._user(_get_user(session, name))

    def users(self, path_prefix: str = "/") -> list[User]:
        with self._db.transaction(readonly=True) as session:
            rows = session.scalars(
                sa.select(UserRow)
                .where(UserRow.path.startswith(path_prefix, autoescape=True))
                .order_by(UserRow.name)
            )
            return [self._user(row) for row in rows]

    def set_user(self, name: str, *, enabled: bool | None = None, admin: bool | None = None) -> User:
        with self._db.transaction() as session:
            row = _get_user(session, name)
            if enabled is not None:
                row.enabled = enabled
            if admin is not None:
                row.admin = admin
            return self._user(row)

    def delete_user(self, name: str) -> None:
        """Delete a user with its keys, memberships and inline policies. What it owned stays
        owned by it, gone (a user made later with the same name, and so the same ARN, does not
        inherit it): only administrators reach it then."""
        with self._db.transaction() as session:
            row = _get_user(session, name)
            arn = user_arn(self._account, row.name, row.path)
            session.execute(
                sa.update(OwnershipRow)
                .where(OwnershipRow.owner == arn)
                .values(owner=f"{arn}#deleted:{row.user_id}")
            )
            session.execute(
                sa.delete(InlinePolicyRow).where(
                    InlinePolicyRow.holder_kind == HolderKind.USER.value, InlinePolicyRow.holder == row.name
                )
            )
            session.execute(sa.delete(AccessKeyRow).where(AccessKeyRow.user_name == row.name))
            session.execute(sa.delete(GroupMemberRow).where(GroupMemberRow.user_name == row.name))
            session.delete(row)

    def user_count(self) -> int:
        with self._db.transaction(readonly=True) as session:
            return int(session.scalar(sa.select(sa.func.count()).select_from(UserRow)) or 0)

    # -- access keys ----------------------------------------------------------------------------------
    def add_key(self, key: AccessKey) -> AccessKey:
        with self._db.transaction() as session:
            _get_user(session, key.user_name)
            session.add(
                AccessKeyRow(
                    access_key_id=key.access_key_id,
                    secret_access_key=key.secret_access_key,
                    user_name=key.user_name,
                    status=key.status.value,
                    created_at=key.created,
                )
            )
        return key

    def key(self, access_key_id: str) -> tuple[AccessKey, User] | None:
        """A key and its user (the one query of every request signed with a user's key)."""
        with self._db.transaction(readonly=True) as session:
            found = session.execute(
                sa.select(AccessKeyRow, UserRow)
                .join(UserRow, UserRow.name == AccessKeyRow.user_name)
                .where(AccessKeyRow.access_key_id == access_key_id)
            ).first()
            if found is None:
                return None
            return _key(found[0]), self._user(found[1])

    def keys(self, user_name: str) -> list[AccessKey]:
        with self._db.transaction(readonly=True) as session:
            _get_user(session, user_name)
            rows = session.scalars(
                sa.select(AccessKeyRow)
                .where(AccessKeyRow.user_name == user_name)
                .order_by(AccessKeyRow.created_at)
            )
            return [_key(row) for row in rows]

    def set_key_status(self, user_name: str, access_key_id: str, status: KeyStatus) -> AccessKey:
        with self._db.transaction() as session:
            row = _get_key(session, user_name, access_key_id)
            row.status = status.value
            return _key(row)

    def delete_key(self, user_name: str, access_key_id: str) -> None:
        with self._db.transaction() as session:
            session.delete(_get_key(session, user_name, access_key_id))

    # -- groups ---------------------------------------------------------------------------------------
    def add_group(self, group: Group) -> Group:
        row = GroupRow(
            name=group.name,
            name_key=group.name.lower(),
            group_id=group.group_id,
            path=group.path,
            created_at=group.created,
        )
        self._insert(row, f"Group with name {group.name} already exists.")
        return group

    def group(self, name: str) -> tuple[Group, list[User]]:
        """A group and its members."""
        with self._db.transaction(readonly=True) as session:
            row = _get_group(session, name)
            members = session.scalars(
                sa.select(UserRow)
                .join(GroupMemberRow, GroupMemberRow.user_name == UserRow.name)
                .where(GroupMemberRow.group_name == row.name)
                .order_by(UserRow.name)
            )
            return self._group(row), [self._user(m) for m in members]

    def groups(self, path_prefix: str = "/") -> list[Group]:
        with self._db.transaction(readonly=True) as session:
            rows = session.scalars(
                sa.select(GroupRow)
                .where(GroupRow.path.startswith(path_prefix, autoescape=True))
                .order_by(GroupRow.name)
            )
            return [self._group(row) for row in rows]

    def groups_of(self, user_name: str) -> list[Group]:
        with self._db.transaction(readonly=True) as session:
            _get_user(session, user_name)
            rows = session.scalars(
                sa.select(GroupRow)
                .join(GroupMemberRow, GroupMemberRow.group_name == GroupRow.name)
                .where(GroupMemberRow.user_name == user_name)
                .order_by(GroupRow.name)
            )
            return [self._group(row) for row in rows]

    def add_member(self, group_name: str, user_name: str) -> None:
        """Idempotent, as IAM's AddUserToGroup."""
        with self._db.transaction() as session:
            _get_group(session, group_name)
            _get_user(session, user_name)
            if session.get(GroupMemberRow, (group_name, user_name)) is None:
                session.add(GroupMemberRow(group_name=group_name, user_name=user_name))

    def remove_member(self, group_name: str, user_name: str) -> None:
        with self._db.transaction() as session:
            _get_group(session, group_name)
            _get_user(session, user_name)
            row = session.get(GroupMemberRow, (group_name, user_name))
            if row is None:
                raise NotFoundError(f"The user {user_name!r} is not in the group {group_name!r}")
            session.delete(row)

    def delete_group(self, name: str) -> None:
        with self._db.transaction() as session:
            row = _get_group(session, name)
            session.execute(
                sa.delete(InlinePolicyRow).where(
                    InlinePolicyRow.holder_kind == HolderKind.GROUP.value, InlinePolicyRow.holder == row.name
                )
            )
            session.execute(sa.delete(GroupMemberRow).where(GroupMemberRow.group_name == row.name))
            session.delete(row)

    # -- roles ----------------------------------------------------------------------------------------
    def add_role(self, role: Role) -> Role:
        row = RoleRow(
            name=role.name,
            name_key=role.name.lower(),
            role_id=role.role_id,
            path=role.path,
            assume_role_policy=role.assume_role_policy,
            description=role.description,
            max_session_duration=role.max_session_duration,
            created_at=role.created,
        )
        self._insert(row, f"Role with name {role.name} already exists.")
        return role

    def role(self, name: str) -> Role:
        with self._db.transaction(readonly=True) as session:
            return self._role(_get_role(session, name))

    def find_role(self, name: str) -> Role | None:
        with self._db.transaction(readonly=True) as session:
            row = session.get(RoleRow, name)
            return None if row is None else self._role(row)

    def roles(self, path_prefix: str = "/") -> list[Role]:
        with self._db.transaction(readonly=True) as session:
            rows = session.scalars(
                sa.select(RoleRow)
                .where(RoleRow.path.startswith(path_prefix, autoescape=True))
                .order_by(RoleRow.name)
            )
            return [self._role(row) for row in rows]

    def role_count(self) -> int:
        with self._db.transaction(readonly=True) as session:
            return int(session.scalar(sa.select(sa.func.count()).select_from(RoleRow)) or 0)

    def delete_role(self, name: str) -> None:
        """IAM refuses to delete a role that still has inline policies (DeleteConflict)."""
        with self._db.transaction() as session:
            row = _get_role(session, name)
            held = session.scalar(
                sa.select(sa.func.count())
                .select_from(InlinePolicyRow)
                .where(
                    InlinePolicyRow.holder_kind == HolderKind.ROLE.value, InlinePolicyRow.holder == row.name
                )
            )
            if held:
                raise ConflictError(
                    f"Cannot delete entity, must delete policies first: the role {name!r} has {held} "
                    "inline polic" + ("y" if held == 1 else "ies")
                )
            session.delete(row)

    # -- inline policies ------------------------------------------------------------------------------
    def put_policy(self, policy: InlinePolicy) -> None:
        """Add or replace a policy (the holder must exist)."""
        with self._db.transaction() as session:
            _get_holder(session, policy.holder_kind, policy.holder)
            key = (policy.holder_kind.value, policy.holder, policy.name)
            row = session.get(InlinePolicyRow, key)
            if row is None:
                session.add(
                    InlinePolicyRow(holder_kind=key[0], holder=key[1], name=key[2], document=policy.document)
                )
            else:
                row.document = policy.document

    def policy(self, kind: HolderKind, holder: str, name: str) -> InlinePolicy:
        with self._db.transaction(readonly=True) as session:
            _get_holder(session, kind, holder)
            row = session.get(InlinePolicyRow, (kind.value, holder, name))
            if row is None:
                raise NotFoundError(f"The {kind.value} {holder!r} has no policy named {name!r}")
            return InlinePolicy(kind, holder, row.name, row.document)

    def policies(self, kind: HolderKind, holder: str) -> list[InlinePolicy]:
        with self._db.transaction(readonly=True) as session:
            _get_holder(session, kind, holder)
            return _policies(session, [(kind, holder)])

    def delete_policy(self, kind: HolderKind, holder: str, name: str) -> None:
        with self._db.transaction() as session:
            _get_holder(session, kind, holder)
            row = session.get(InlinePolicyRow, (kind.value, holder, name))
            if row is None:
                raise NotFoundError(f"The {kind.value} {holder!r} has no policy named {name!r}")
            session.delete(row)

    def held_by(self, user_name: str) -> tuple[list[str], list[InlinePolicy]]:
        """A user's groups and every policy it holds (its own and its groups'), in one
        transaction."""
        with self._db.transaction(readonly=True) as session:
            groups = list(
                session.scalars(
                    sa.select(GroupMemberRow.group_name)
                    .where(GroupMemberRow.user_name == user_name)
                    .order_by(GroupMemberRow.group_name)
                )
            )
            holders = [(HolderKind.USER, user_name)] + [(HolderKind.GROUP, g) for g in groups]
            return groups, _policies(session, holders)

    # -- ownership ------------------------------------------------------------------------------------
    def claim(self, resource_arn: str, owner: str | None, group: str | None = None) -> None:
        """Record who created a resource. A resource created again under the same ARN (after a
        delete) takes its new creator."""
        with self._db.transaction() as session:
            row = session.get(OwnershipRow, resource_arn)
            if row is None:
                session.add(OwnershipRow(resource_arn=resource_arn, owner=owner, group_name=group))
            else:
                row.owner, row.group_name = owner, group

    def share(self, resource_arn: str, group: str | None) -> None:
        """Share a resource with a group (None: with none). A resource with no record is the
        lab's (root's)."""
        with self._db.transaction() as session:
            row = session.get(OwnershipRow, resource_arn)
            if row is None:
                session.add(OwnershipRow(resource_arn=resource_arn, owner=None, group_name=group))
            else:
                row.group_name = group

    def ownership(self, resource_arns: Iterable[str]) -> dict[str, Ownership]:
        """The records of the given ARNs that exist (those without one are the lab's)."""
        arns = list(dict.fromkeys(resource_arns))
        found: dict[str, Ownership] = {}
        with self._db.transaction(readonly=True) as session:
            for start in range(0, len(arns), 500):
                rows = session.scalars(
                    sa.select(OwnershipRow).where(OwnershipRow.resource_arn.in_(arns[start : start + 500]))
                )
                for row in rows:
                    found[row.resource_arn] = Ownership(row.resource_arn, row.owner, row.group_name)
        return found

    def forget(self, resource_arn: str) -> None:
        with self._db.transaction() as session:
            row = session.get(OwnershipRow, resource_arn)
            if row is not None:
                session.delete(row)

    # -- rows to records ------------------------------------------------------------------------------
    def _insert(self, row: object, conflict: str) -> None:
        try:
            with self._db.transaction() as session:
                session.add(row)
        except (IntegrityError, ConflictError):  # the store answers a unique name taken so
            raise ConflictError(conflict) from None

    def _user(self, row: UserRow) -> User:
        return User(
            name=row.name,
            user_id=row.user_id,
            arn=user_arn(self._account, row.name, row.path),
            path=row.path,
            created=_aware(row.created_at),
            admin=row.admin,
            enabled=row.enabled,
        )

    def _group(self, row: GroupRow) -> Group:
        return Group(
            row.name,
            row.group_id,
            group_arn(self._account, row.name, row.path),
            row.path,
            _aware(row.created_at),
        )

    def _role(self, row: RoleRow) -> Role:
        return Role(
            name=row.name,
            role_id=row.role_id,
            arn=role_arn(self._account, row.name, row.path),
            path=row.path,
            created=_aware(row.created_at),
            assume_role_policy=row.assume_role_policy,
            description=row.description,
            max_session_duration=row.max_session_duration,
        )


def _get_user(session: sa.orm.Session, name: str) -> UserRow:
    row = session.get(UserRow, name)
    if row is None:
        raise NotFoundError(f"The user with name {name} cannot be found.")
    return row


def _get_group(session: sa.orm.Session, name: str) -> GroupRow:
    row = session.get(GroupRow, name)
    if row is None:
        raise NotFoundError(f"The group with name {name} cannot be found.")
    return row


def _get_role(session: sa.orm.Session, name: str) -> RoleRow:
    row = session.get(RoleRow, name)
    if row is None:
        raise NotFoundError(f"The role with name {name} cannot be found.")
    return row


def _get_holder(session: sa.orm.Session, kind: HolderKind, name: str) -> None:
    {HolderKind.USER: _get_user, HolderKind.GROUP: _get_group, HolderKind.ROLE: _get_role}[kind](
        session, name
    )


def _get_key(session: sa.orm.Session, user_name: str, access_key_id: str) -> AccessKeyRow:
    _get_user(session, user_name)
    row = session.get(AccessKeyRow, access_key_id)
    if row is None or row.user_name != user_name:
        raise NotFoundError(f"The Access Key with id {access_key_id} cannot be found.")
    return row


def _policies(session: sa.orm.Session, holders: list[tuple[HolderKind, str]]) -> list[InlinePolicy]:
    found: list[InlinePolicy] = []
    for kind, holder in holders:
        rows = session.scalars(
            sa.select(InlinePolicyRow)
            .where(InlinePolicyRow.holder_kind == kind.value, InlinePolicyRow.holder == holder)
            .order_by(InlinePolicyRow.name)
        )
        found += [InlinePolicy(kind, holder, row.name, row.document) for row in rows]
    return found


def _key(row: AccessKeyRow) -> AccessKey:
    return AccessKey(
        row.access_key_id, row.secret_access_key, row.user_name, KeyStatus(row.status), _aware(row.created_at)
    )


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite gives back naive datetimes; every stored one is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
