"""Users, groups, roles and their access keys, as IAM names them; who owns what (pure).

A lab's server has users (each with access keys and inline policies), groups (whose policies
their members hold) and roles (which jobs act as: a job's session credentials carry its role's
policies, intersected with what the job needs). The server's own key pair, from the settings,
is the account's root: the administrator, owning nothing. A user made an administrator
(``shipyard users add --admin``) may do everything too, as root may.

Ownership is the boundary between users: every resource records the user who created it
(:class:`Ownership`). A user reaches a resource of another user only when it is shared with one
of the user's groups (the ``shipyard:group`` tag), and then only as their policies allow;
resources created by root (or before there were users) are the lab's, reached as policies
allow. :func:`may_reach` is that rule.

Names and ids follow IAM: user, group and role names of 1-64 (roles 1-64, users 1-64) characters
of ``[A-Za-z0-9+=,.@_-]``, unique case-insensitively; access key ids ``AKIA`` and 16 characters;
ARNs ``arn:aws:iam::<account>:user/<path><name>``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
import secrets
import string
from collections.abc import Iterable

from shipyard.core.policy import Policy
from shipyard.errors import ValidationError

ACCESS_KEY_PREFIX = "AKIA"
SHARE_TAG = "shipyard:group"
"""The tag that shares a resource with a group: its value names the group."""
MAX_ACCESS_KEYS = 2  # per user, as IAM allows
_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]{1,64}")
_POLICY_NAME = re.compile(r"[A-Za-z0-9+=,.@_-]{1,128}")
_PATH = re.compile(r"/([\x21-\x7e]{0,510}/)?")
_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


class KeyStatus(enum.StrEnum):
    ACTIVE = "Active"
    INACTIVE = "Inactive"


class HolderKind(enum.StrEnum):
    """What an inline policy belongs to."""

    USER = "user"
    GROUP = "group"
    ROLE = "role"


@dataclasses.dataclass(frozen=True)
class User:
    """An IAM user. ``admin``: may do everything, as the account's root."""

    name: str
    user_id: str
    arn: str
    path: str
    created: dt.datetime
    admin: bool = False
    enabled: bool = True


@dataclasses.dataclass(frozen=True)
class Group:
    name: str
    group_id: str
    arn: str
    path: str
    created: dt.datetime


@dataclasses.dataclass(frozen=True)
class Role:
    """An IAM role: what a job's session acts as (``RoleArn``)."""

    name: str
    role_id: str
    arn: str
    path: str
    created: dt.datetime
    assume_role_policy: str
    description: str = ""
    max_session_duration: int = 3600


@dataclasses.dataclass(frozen=True)
class AccessKey:
    """A user's long-term key pair. The secret is shown once, when it is created."""

    access_key_id: str
    secret_access_key: str
    user_name: str
    status: KeyStatus
    created: dt.datetime

    @property
    def active(self) -> bool:
        return self.status is KeyStatus.ACTIVE

    def __repr__(self) -> str:  # never the secret in a log line or a traceback
        return f"AccessKey({self.access_key_id}, user={self.user_name!r}, status={self.status.value})"


@dataclasses.dataclass(frozen=True)
class InlinePolicy:
    """A named policy document embedded in a user, group or role (IAM's inline policies).
    ``document`` is the text as it was put (IAM answers it back URL-encoded)."""

    holder_kind: HolderKind
    holder: str
    name: str
    document: str

    @property
    def policy(self) -> Policy:
        return Policy.from_document(self.document)


@dataclasses.dataclass(frozen=True)
class Caller:
    """A user as a request acts: the user, the groups it is in, and every policy it holds (its
    own and its groups'), parsed."""

    user: User
    groups: tuple[str, ...]
    policies: tuple[Policy, ...]


@dataclasses.dataclass(frozen=True)
class Ownership:
    """Who created a resource (``owner``: a user's ARN; None: root, the lab's) and the group it
    is shared with (None: none)."""

    resource_arn: str
    owner: str | None
    group: str | None = None


def may_reach(
    owner: str | None,
    shared_with: str | None,
    *,
    caller: str | None,
    groups: Iterable[str],
    administrator: bool,
) -> bool:
    """Whether ``caller`` (a user's ARN; None: root) may act on a resource owned by ``owner``
    and shared with the group ``shared_with`` at all; its policies decide the rest."""
    if administrator or owner is None or owner == caller:
        return True
    return shared_with is not None and shared_with in set(groups)


def ownership_key(resource_arn: str) -> str:
    """The key a resource's ownership record is kept under: a SageMaker ARN without its region
    and account, lower-cased (a name is one resource on the server whatever region a client
    signs for, and SageMaker lower-cases names in ARNs); any other ARN as it is."""
    parts = resource_arn.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn" and parts[2] == "sagemaker":
        return f"arn:{parts[1]}:sagemaker:::{parts[5].lower()}"
    return resource_arn


def is_lab_bucket(bucket: str, account: str) -> bool:
    """Whether a bucket is the lab's whoever creates it: the sagemaker SDK's default bucket,
    ``sagemaker-<region>-<account>``, which every user's SDK expects to find and share (as the
    users of one AWS account share it)."""
    return (
        bucket.startswith("sagemaker-") and bucket.endswith(f"-{account}") and len(bucket) > 11 + len(account)
    )


# -- names, ids and ARNs -------------------------------------------------------------------------------
def check_name(value: object, field: str) -> str:
    """A user, group or role name as IAM accepts it.

    Raises:
        ValidationError: naming ``field`` and the value.
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValidationError(
            f"{field} must be 1-64 characters of letters, digits and +=,.@_-, got {value!r}",
            field=field,
            value=value,
        )
    return value


def check_policy_name(value: object) -> str:
    if not isinstance(value, str) or not _POLICY_NAME.fullmatch(value):
        raise ValidationError(
            f"PolicyName must be 1-128 characters of letters, digits and +=,.@_-, got {value!r}",
            field="PolicyName",
            value=value,
        )
    return value


def check_path(value: object) -> str:
    """An IAM path: ``/``, or ``/`` + segments + ``/``."""
    if value is None or value == "":
        return "/"
    if not isinstance(value, str) or not _PATH.fullmatch(value):
        raise ValidationError(
            f"Path must begin and end with '/' (printable ASCII, at most 512), got {value!r}",
            field="Path",
            value=value,
        )
    return value


def user_arn(account: str, name: str, path: str = "/") -> str:
    return f"arn:aws:iam::{account}:user{path}{name}"


def group_arn(account: str, name: str, path: str = "/") -> str:
    return f"arn:aws:iam::{account}:group{path}{name}"


def role_arn(account: str, name: str, path: str = "/") -> str:
    return f"arn:aws:iam::{account}:role{path}{name}"


def root_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:root"


def role_name_of(arn: str) -> str | None:
    """The role name in a role ARN (``arn:aws:iam::<account>:role/<path>/<name>``), or in an
    assumed role's (``arn:aws:sts::<account>:assumed-role/<name>/<session>``); else None."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    resource = parts[5]
    if parts[2] == "iam" and resource.startswith("role/"):
        return resource.rsplit("/", 1)[-1] or None
    if parts[2] == "sts" and resource.startswith("assumed-role/"):
        pieces = resource.split("/")
        return pieces[1] if len(pieces) >= 3 and pieces[1] else None
    return None


def new_id(prefix: str) -> str:
    """An IAM unique id: ``AIDA`` (users), ``AGPA`` (groups), ``AROA`` (roles) + 17."""
    return prefix + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(17))


def new_access_key(user_name: str, created: dt.datetime) -> AccessKey:
    """A fresh random active key pair for ``user_name`` (the secrets module)."""
    return AccessKey(
        access_key_id=ACCESS_KEY_PREFIX + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16)),
        secret_access_key="".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40)),
        user_name=user_name,
        status=KeyStatus.ACTIVE,
        created=created,
    )


def is_user_key(access_key_id: str) -> bool:
    """Whether an access key id has the form of a user's key (``AKIA`` + 16)."""
    return (
        len(access_key_id) == 20
        and access_key_id.startswith(ACCESS_KEY_PREFIX)
        and all(c in _KEY_ALPHABET for c in access_key_id)
    )
