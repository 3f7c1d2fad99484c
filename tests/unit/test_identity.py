"""Users, keys, groups, roles and ownership: the identity service on a real SQLite file."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.core.clock import ManualClock
from shipyard.core.credentials import Principal, new_session
from shipyard.core.identity import HolderKind, is_user_key, may_reach, role_name_of
from shipyard.core.policy import ADMINISTRATOR, NOTHING, Policy
from shipyard.errors import (
    ConflictError,
    LimitExceededError,
    MalformedPolicyDocument,
    NotFoundError,
    ValidationError,
)
from shipyard.services.identity import DEFAULT_ROLE, IdentityService, read_credentials
from shipyard.store._db import Database
from shipyard.store.identity import IdentityRepository

ACCOUNT = "000000000000"
READ_DATASETS = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::datasets/*"}],
    }
)


@pytest.fixture
def identity(tmp_path: Path, template_db: Path) -> Iterator[IdentityService]:
    path = tmp_path / "shipyard.db"
    path.write_bytes(template_db.read_bytes())
    db = Database(f"sqlite:///{path}")
    # No cache: each call sees the store (the cache is the service's own business, tested below).
    yield IdentityService(
        IdentityRepository(db, ACCOUNT), account_id=ACCOUNT, clock=ManualClock(), cache_seconds=0
    )
    db.dispose()


def _allowed(principal: Principal, action: str, resource: str) -> bool:
    return principal.decide(action, resource).allowed


def test_a_users_key_acts_as_the_user_with_its_and_its_groups_policies(identity: IdentityService) -> None:
    alice = identity.create_user("alice")
    assert alice.arn == f"arn:aws:iam::{ACCOUNT}:user/alice" and alice.user_id.startswith("AIDA")
    key = identity.create_key("alice")
    assert is_user_key(key.access_key_id) and len(key.secret_access_key) == 40
    assert key.secret_access_key not in repr(key)

    found = identity.authenticate(key.access_key_id)
    assert found is not None
    secret, principal = found
    assert secret == key.secret_access_key
    assert principal.arn == alice.arn and principal.user == alice.arn and not principal.is_administrator
    assert not _allowed(principal, "s3:GetObject", "arn:aws:s3:::datasets/titanic.csv")  # default deny

    identity.create_group("students")
    identity.add_to_group("students", "alice")
    identity.put_policy(HolderKind.GROUP, "students", "read-datasets", READ_DATASETS)
    _, principal = identity.authenticate(key.access_key_id) or ("", None)
    assert principal is not None and principal.groups == ("students",)
    assert _allowed(principal, "s3:GetObject", "arn:aws:s3:::datasets/titanic.csv")
    assert not _allowed(principal, "s3:PutObject", "arn:aws:s3:::datasets/titanic.csv")

    deny = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "s3:*", "Resource": "*"}]}
    identity.put_policy(HolderKind.USER, "alice", "no-s3", json.dumps(deny))
    _, principal = identity.authenticate(key.access_key_id) or ("", None)
    assert principal is not None and not _allowed(
        principal, "s3:GetObject", "arn:aws:s3:::datasets/titanic.csv"
    )


def test_inactive_keys_disabled_and_deleted_users_authenticate_nobody(identity: IdentityService) -> None:
    identity.create_user("bob")
    key = identity.create_key("bob")
    identity.set_key_status("bob", key.access_key_id, "Inactive")
    assert identity.authenticate(key.access_key_id) is None
    identity.set_key_status("bob", key.access_key_id, "Active")
    assert identity.authenticate(key.access_key_id) is not None
    identity.set_user("bob", enabled=False)
    assert identity.authenticate(key.access_key_id) is None
    identity.set_user("bob", enabled=True)
    with pytest.raises(ConflictError, match=r"must delete access keys.*'bob' has 1 access key"):
        identity.delete_user("bob")  # as IAM: its keys first
    identity.delete_user("bob", cascade=True)
    assert identity.authenticate(key.access_key_id) is None
    with pytest.raises(ValidationError, match="Status"):
        identity.create_user("carol") and identity.set_key_status("carol", "AKIA", "Paused")


def test_names_are_iam_names_unique_regardless_of_case(identity: IdentityService) -> None:
    identity.create_user("alice")
    with pytest.raises(ConflictError, match="User with name Alice already exists"):
        identity.create_user("Alice")
    for bad in ("", "a" * 65, "al ice", "../x", "a/b"):
        with pytest.raises(ValidationError, match="UserName"):
            identity.create_user(bad)
    with pytest.raises(ValidationError, match="Path"):
        identity.create_user("dave", path="lab")
    with pytest.raises(NotFoundError, match="nobody"):
        identity.create_key("nobody")


def test_two_keys_per_user_as_iam_allows(identity: IdentityService) -> None:
    identity.create_user("alice")
    identity.create_key("alice")
    identity.create_key("alice")
    with pytest.raises(LimitExceededError, match="AccessKeysPerUser"):
        identity.create_key("alice")


def test_a_malformed_policy_is_refused_and_the_stored_ones_stay(identity: IdentityService) -> None:
    identity.create_user("alice")
    identity.put_policy(HolderKind.USER, "alice", "read", READ_DATASETS)
    with pytest.raises(MalformedPolicyDocument):
        identity.put_policy(HolderKind.USER, "alice", "read", '{"Statement": []}')
    assert identity.policy(HolderKind.USER, "alice", "read").document == READ_DATASETS


def test_a_session_carries_its_roles_policies_bounded_by_its_scope(identity: IdentityService) -> None:
    alice = identity.create_user("alice")
    identity.create_role("TrainingRole")
    identity.put_policy(HolderKind.ROLE, "TrainingRole", "read", READ_DATASETS)
    scope = Policy.from_document(
        {
            "Statement": [
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::datasets/titanic/*"}
            ]
        }
    )
    session = new_session(
        "arn:aws:sagemaker:us-east-1:000000000000:training-job/j",
        f"arn:aws:sts::{ACCOUNT}:assumed-role/TrainingRole/j",
        scope,
        ManualClock().now(),
        user=alice.arn,
    )
    principal = identity.for_session(session)
    assert principal.user == alice.arn
    assert _allowed(principal, "s3:GetObject", "arn:aws:s3:::datasets/titanic/train.csv")  # both allow
    assert not _allowed(principal, "s3:GetObject", "arn:aws:s3:::datasets/other.csv")  # the role only
    # A role that is not recorded grants everything (a server without users): the scope decides.
    other = new_session("o", f"arn:aws:sts::{ACCOUNT}:assumed-role/Unknown/j", scope, ManualClock().now())
    assert identity.for_session(other).policies == (ADMINISTRATOR,)
    # A role whose policies allow nothing leaves the job nothing.
    identity.create_role("Empty")
    empty = new_session("o", f"arn:aws:sts::{ACCOUNT}:assumed-role/Empty/j", scope, ManualClock().now())
    assert not _allowed(identity.for_session(empty), "s3:GetObject", "arn:aws:s3:::datasets/titanic/a")


def test_a_role_with_policies_cannot_be_deleted(identity: IdentityService) -> None:
    identity.create_role("R")
    identity.put_policy(HolderKind.ROLE, "R", "p", READ_DATASETS)
    with pytest.raises(ConflictError, match="delete policies first"):
        identity.delete_role("R")
    identity.delete_policy(HolderKind.ROLE, "R", "p")
    identity.delete_role("R")
    assert identity.roles() == []


@pytest.mark.parametrize(
    ("owner", "shared", "caller", "groups", "admin", "reached"),
    [
        (None, None, "arn:u/bob", (), False, True),  # the lab's: policies decide
        ("arn:u/alice", None, "arn:u/alice", (), False, True),  # one's own
        ("arn:u/alice", None, "arn:u/bob", (), False, False),  # another's
        ("arn:u/alice", "students", "arn:u/bob", ("students",), False, True),  # shared with bob's group
        ("arn:u/alice", "staff", "arn:u/bob", ("students",), False, False),  # shared with another group
        ("arn:u/alice", None, None, (), True, True),  # root
        ("arn:u/alice", None, "arn:u/pi", (), True, True),  # an administrator
    ],
)
def test_who_may_reach_a_resource(
    owner: str | None,
    shared: str | None,
    caller: str | None,
    groups: tuple[str, ...],
    admin: bool,
    reached: bool,
) -> None:
    assert may_reach(owner, shared, caller=caller, groups=groups, administrator=admin) is reached


def test_ownership_is_recorded_shared_and_checked(identity: IdentityService) -> None:
    alice, bob = identity.create_user("alice"), identity.create_user("bob")
    identity.create_group("students")
    identity.add_to_group("students", "bob")
    job = "arn:aws:sagemaker:us-east-1:000000000000:training-job/a"
    as_alice = Principal(alice.arn, (NOTHING,), user=alice.arn)
    as_bob = Principal(bob.arn, (NOTHING,), user=bob.arn, groups=("students",))
    identity.claim(job, as_alice)
    lab = "arn:aws:s3:::datasets"
    assert identity.reachable(as_bob, [job, lab]) == {job: False, lab: True}
    assert identity.reachable(as_alice, [job]) == {job: True}
    assert identity.reachable(Principal.root(ACCOUNT), [job]) == {job: True}
    identity.share(job, "students")
    assert identity.reachable(as_bob, [job]) == {job: True}
    with pytest.raises(NotFoundError, match="nope"):
        identity.share(job, "nope")


def test_the_first_start_makes_an_administrator_with_a_private_key_file(
    identity: IdentityService, tmp_path: Path
) -> None:
    path = identity.bootstrap(tmp_path)
    assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    pair = read_credentials(path)
    assert pair is not None
    found = identity.authenticate(pair[0])
    assert found is not None and found[0] == pair[1] and found[1].is_administrator
    assert identity.role(DEFAULT_ROLE).arn == f"arn:aws:iam::{ACCOUNT}:role/{DEFAULT_ROLE}"
    assert identity.bootstrap(tmp_path) is None  # once


def test_writes_here_are_seen_at_once_through_the_cache(tmp_path: Path, template_db: Path) -> None:
    path = tmp_path / "shipyard.db"
    path.write_bytes(template_db.read_bytes())
    db = Database(f"sqlite:///{path}")
    identity = IdentityService(IdentityRepository(db, ACCOUNT), account_id=ACCOUNT, cache_seconds=3600)
    identity.create_user("alice")
    key = identity.create_key("alice")
    assert identity.authenticate_cached(key.access_key_id) == (False, None)
    assert identity.authenticate(key.access_key_id) is not None
    known, found = identity.authenticate_cached(key.access_key_id)
    assert known and found is not None
    identity.set_key_status("alice", key.access_key_id, "Inactive")
    assert identity.authenticate(key.access_key_id) is None
    db.dispose()


def test_role_names_are_read_from_role_and_assumed_role_arns() -> None:
    assert role_name_of("arn:aws:iam::1:role/service/SageMakerRole") == "SageMakerRole"
    assert role_name_of("arn:aws:sts::1:assumed-role/SageMakerRole/job-1") == "SageMakerRole"
    assert role_name_of("arn:aws:iam::1:user/alice") is None
    assert role_name_of("not-an-arn") is None


def test_a_new_user_with_a_deleted_users_name_inherits_nothing(identity: IdentityService) -> None:
    old = identity.create_user("dave")
    bucket = "arn:aws:s3:::dave-data"
    identity.claim(bucket, Principal(old.arn, (NOTHING,), user=old.arn))
    identity.delete_user("dave", cascade=True)
    new = identity.create_user("dave")
    assert new.arn == old.arn  # the same name makes the same ARN...
    as_new = Principal(new.arn, (NOTHING,), user=new.arn)
    assert identity.reachable(as_new, [bucket]) == {bucket: False}  # ...but not the same owner
    assert identity.reachable(Principal.root(ACCOUNT), [bucket]) == {bucket: True}
