"""Costs and budgets by person on a lab's server (auth on): alice and bob train with their own
keys; a budget of bob's refuses his launch and not hers, a group's counts its members' spend;
``shipyard cost --by user`` names them, and each user, through the CLI with their own key, sees
their own spend, budgets and alerts only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from shipyard.services.identity import ADMIN_CREDENTIALS, read_credentials
from tests._support import boto_client
from tests.integration.test_training import BUCKET, _create
from tests.integration.test_training import _wait as _wait_job

ROLE = "arn:aws:iam::000000000000:role/ShipyardExecutionRole"
GRANTS = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["sagemaker:*", "s3:*", "logs:*", "budgets:*"], "Resource": "*"},
        {"Effect": "Allow", "Action": "ce:GetCostAndUsage", "Resource": "*"},
        {"Effect": "Allow", "Action": "iam:PassRole", "Resource": ROLE},
    ],
}
ROLE_ARN = {"RoleArn": ROLE}
Key = tuple[str, str]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("lab-costs"), env={"SHIPYARD_AUTH": "on"}) as server:
        yield server


def _clients(server: ServerProcess, key: Key) -> tuple[Any, Any]:
    kw = {"aws_access_key_id": key[0], "aws_secret_access_key": key[1]}
    return boto_client("sagemaker", server.url, **kw), boto_client("s3", server.url, **kw)


def _cli(server: ServerProcess, key: Key, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipyard", *args, "--url", server.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={
            **os.environ,
            "SHIPYARD_ACCESS_KEY_ID": key[0],
            "SHIPYARD_SECRET_ACCESS_KEY": key[1],
            "COLUMNS": "200",  # a wide terminal: table cells stay whole
        },
    )


def _json(answer: subprocess.CompletedProcess[str]) -> Any:
    assert answer.returncode == 0, answer.stderr
    return json.loads(answer.stdout)


def test_costs_and_budgets_by_person_through_the_cli(lab: ServerProcess) -> None:
    admin = read_credentials(lab.data_dir / ADMIN_CREDENTIALS)
    assert admin is not None
    iam = boto_client("iam", lab.url, aws_access_key_id=admin[0], aws_secret_access_key=admin[1])
    keys: dict[str, Key] = {}
    for name in ("alice", "bob"):
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="work", PolicyDocument=json.dumps(GRANTS))
        made = iam.create_access_key(UserName=name)["AccessKey"]
        keys[name] = (made["AccessKeyId"], made["SecretAccessKey"])
    iam.create_group(GroupName="students")
    iam.add_user_to_group(GroupName="students", UserName="alice")
    _clients(lab, admin)[1].create_bucket(Bucket=BUCKET)  # the lab's: both may use it

    made = _cli(
        lab, admin, "budgets", "create", "bob-cap", "--limit", "0.05", "--user", "bob", "--action", "deny"
    )
    assert made.returncode == 0 and "Budget bob-cap: $0.00 of $0.05 spent" in made.stdout, made.stderr
    assert (
        _cli(lab, admin, "budgets", "create", "students", "--limit", "100", "--group", "students").returncode
        == 0
    )

    # 30 minutes of an ml.m5.large may cost $0.0575: past bob's $0.05, and his budget only.
    bob_sm, bob_s3 = _clients(lab, keys["bob"])
    with pytest.raises(ClientError, match="ResourceLimitExceeded") as refused:
        _create(bob_sm, bob_s3, "print('done')\n", max_runtime=1800, extra=ROLE_ARN)
    assert (
        "Budget 'bob-cap' (user bob, monthly, limit $0.05) denies"
        in refused.value.response["Error"]["Message"]
    )
    alice_sm, alice_s3 = _clients(lab, keys["alice"])
    hers = _create(alice_sm, alice_s3, "print('done')\n", max_runtime=1800, extra=ROLE_ARN)
    his = _create(bob_sm, bob_s3, "print('done')\n", max_runtime=600, extra=ROLE_ARN)
    spent = {}
    for who, sm, job in (("alice", alice_sm, hers), ("bob", bob_sm, his)):
        assert _wait_job(sm, job)["TrainingJobStatus"] == "Completed"
        spent[who] = _cost(lab, admin, job)
    assert all(spent.values()), spent

    report = _json(_cli(lab, admin, "cost", "--by", "user", "--json"))
    assert {r["user"]: float(r["cost_usd"]) for r in report["rows"]} == spent
    table = _cli(lab, admin, "cost", "--by", "user", "--by", "kind")
    assert "alice" in table.stdout and "bob" in table.stdout and "training" in table.stdout
    for who in ("alice", "bob"):  # each sees their own spend, and nobody else's
        mine = _json(_cli(lab, keys[who], "cost", "--by", "user", "--json"))
        assert [(r["user"], float(r["cost_usd"])) for r in mine["rows"]] == [(who, spent[who])]

    budgets = {b["name"]: b for b in _json(_cli(lab, admin, "budgets", "list", "--json"))}
    assert float(budgets["students"]["spend_usd"]) == spent["alice"]  # its members' spend
    assert float(budgets["bob-cap"]["spend_usd"]) == spent["bob"]
    listed = _cli(lab, admin, "budgets", "list")
    assert "user bob" in listed.stdout and "group students" in listed.stdout, listed.stdout
    assert [b["name"] for b in _json(_cli(lab, keys["bob"], "budgets", "list", "--json"))] == ["bob-cap"]
    assert _json(_cli(lab, keys["alice"], "budgets", "list", "--json")) == []
    assert [a["kind"] for a in _json(_cli(lab, keys["bob"], "alerts", "--json"))] == ["denied"]
    assert _json(_cli(lab, keys["alice"], "alerts", "--json")) == []

    # A user makes budgets of their own only: alice's is hers; one for bob is refused.
    own = _cli(lab, keys["alice"], "budgets", "create", "alice-own", "--limit", "1")
    assert own.returncode == 0, own.stderr
    assert [b["user"] for b in _json(_cli(lab, keys["alice"], "budgets", "list", "--json"))] == ["alice"]
    other = _cli(lab, keys["alice"], "budgets", "create", "for-bob", "--limit", "1", "--user", "bob")
    assert other.returncode == 1 and "budgets of their own only, not of user bob" in other.stderr, (
        other.stderr
    )
    gone = _cli(lab, keys["alice"], "budgets", "delete", "bob-cap")
    assert gone.returncode == 1 and "Budget 'bob-cap' does not exist" in gone.stderr, gone.stderr
    unknown = _cli(lab, admin, "budgets", "create", "x", "--limit", "1", "--user", "zoe")
    assert unknown.returncode == 1 and "The user 'zoe' does not exist" in unknown.stderr, unknown.stderr


def _cost(server: ServerProcess, key: Key, job: str) -> float:
    """The job's final cost, from the native API (the bearer form of a key pair)."""
    answer = httpx.get(
        f"{server.url}/api/v1/training-jobs/{job}", headers={"Authorization": f"Bearer {key[0]}:{key[1]}"}
    )
    answer.raise_for_status()
    return float(answer.json()["cost_usd"])
