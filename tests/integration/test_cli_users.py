"""`shipyard users`, `shipyard keys` and `shipyard whoami` as a lab's administrator runs them: the
first administrator made on a fresh data dir before any server ran, then users and keys through
the running server's IAM API (a user's key working, refused when disabled or revoked), and the
store changed directly once the server is stopped."""

from __future__ import annotations

import fcntl
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client

STUDENT = Path(__file__).resolve().parents[2] / "deploy" / "policies" / "student.json"


def _shipyard(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shipyard", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SHIPYARD_URL": "", **env},
    )


class Lab:
    def __init__(
        self, data_dir: Path, first: subprocess.CompletedProcess[str], server: ServerProcess
    ) -> None:
        self.data_dir, self.first, self.server = data_dir, first, server
        self.admin = {"SHIPYARD_HOME": str(data_dir)}  # the local administrator: the data dir's owner

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return _shipyard(*args, env=env if env is not None else self.admin)

    def ok(self, *args: str) -> str:
        done = self.run(*args)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    data_dir = tmp_path_factory.mktemp("lab") / "data"
    first = _shipyard(
        "users", "add", "boss", "--admin", "--group", "pis", "--json", env={"SHIPYARD_HOME": str(data_dir)}
    )
    assert first.returncode == 0, first.stdout + first.stderr
    with ServerProcess(data_dir, env={"SHIPYARD_AUTH": "on"}) as server:
        yield Lab(data_dir, first, server)


def test_the_first_administrator_is_made_before_any_server_ran(lab: Lab) -> None:
    made = json.loads(lab.first.stdout)
    assert made["user"]["name"] == "boss" and made["user"]["administrator"] is True
    assert made["user"]["groups"] == ["pis"]
    assert "No server is running on" in lab.first.stderr and "changing its store" in lab.first.stderr
    kept = lab.data_dir / "admin-credentials"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    key = made["access_key"]
    assert f"aws_access_key_id = {key['AccessKeyId']}" in kept.read_text()
    assert key["SecretAccessKey"] in kept.read_text()
    # The server with auth on found an administrator already: it made no 'admin' of its own.
    assert "Created the administrator" not in lab.server.log_tail(200)
    whoami = lab.ok("whoami")
    assert whoami.splitlines()[0] == "arn:aws:iam::000000000000:user/boss"
    assert f"key     {key['AccessKeyId']} from {kept}" in whoami


def test_users_and_keys_through_the_server(lab: Lab, tmp_path: Path) -> None:
    url = lab.server.url
    added = lab.run("users", "add", "alice", "--group", "students")
    assert added.returncode == 0, added.stderr
    assert "Added alice to the group students (made it)." in added.stdout
    assert added.stderr.startswith("As arn:aws:iam::000000000000:user/boss (key AKIA")  # who it acted as
    assert f" at {url}" in added.stderr
    created = lab.run("keys", "create", "alice")
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    key_id = lines[0].split()[2]
    secret = lines[1].strip()
    assert (
        f"export AWS_ACCESS_KEY_ID={key_id}" in created.stdout and f"endpoint_url = {url}" in created.stdout
    )
    assert "SecretAccessKey" not in lab.ok("keys", "list", "alice", "--json")  # shown that once only

    sts = boto_client("sts", url, aws_access_key_id=key_id, aws_secret_access_key=secret)
    assert sts.get_caller_identity()["Arn"] == "arn:aws:iam::000000000000:user/alice"
    # docs/lab.md's student policy on her group: her own work allowed, its Deny winning.
    boss = json.loads(lab.first.stdout)["access_key"]
    iam = boto_client(
        "iam", url, aws_access_key_id=boss["AccessKeyId"], aws_secret_access_key=boss["SecretAccessKey"]
    )
    iam.put_group_policy(GroupName="students", PolicyName="student", PolicyDocument=STUDENT.read_text())
    sagemaker = boto_client("sagemaker", url, aws_access_key_id=key_id, aws_secret_access_key=secret)
    assert sagemaker.list_training_jobs()["TrainingJobSummaries"] == []
    with pytest.raises(ClientError) as denied:
        sagemaker.create_endpoint(EndpointName="alice-xgb", EndpointConfigName="alice-xgb")
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "sagemaker:CreateEndpoint" in denied.value.response["Error"]["Message"]
    # As the printed exports set it up, Shipyard's CLI acts as alice too; she may not add users.
    alice = {
        "SHIPYARD_HOME": str(tmp_path / "alice"),
        "SHIPYARD_URL": url,
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": key_id,
        "AWS_SECRET_ACCESS_KEY": secret,
    }
    whoami = lab.run("whoami", env=alice)
    assert whoami.stdout.startswith("arn:aws:iam::000000000000:user/alice\n"), whoami.stderr
    assert "from $AWS_ACCESS_KEY_ID ($AWS_ENDPOINT_URL is this server)" in whoami.stdout
    refused = lab.run("users", "add", "mallory", env=alice)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "iam:CreateUser" in refused.stderr

    listed = json.loads(lab.ok("users", "list", "--json"))
    assert {u["name"]: (u["administrator"], u["enabled"], u["groups"]) for u in listed} == {
        "boss": (True, True, ["pis"]),
        "alice": (False, True, ["students"]),
    }
    assert "disabled" in lab.ok("users", "disable", "alice").lower()
    with pytest.raises(ClientError) as disabled:
        sts.get_caller_identity()
    assert disabled.value.response["Error"]["Code"] == "InvalidClientTokenId"
    lab.ok("users", "enable", "alice")
    assert sts.get_caller_identity()["Arn"].endswith(":user/alice")

    revoked = lab.ok("keys", "revoke", key_id)
    assert f"Made the access key {key_id} (alice) Inactive" in revoked
    with pytest.raises(ClientError):
        sts.get_caller_identity()
    assert [k["Status"] for k in json.loads(lab.ok("keys", "list", "alice", "--json"))] == ["Inactive"]
    lab.ok("keys", "revoke", key_id, "--delete")
    every = json.loads(lab.ok("keys", "list", "--json"))
    assert [k["UserName"] for k in every] == ["boss"]

    lab.ok("keys", "create", "alice")
    deleted = lab.ok("users", "delete", "alice", "--yes")
    assert "Deleted the user alice (1 access key, 0 inline policies, 1 group membership)" in deleted
    assert [u["name"] for u in json.loads(lab.ok("users", "list", "--json"))] == ["boss"]
    # Another administrator, through the server: its key printed, the local key file kept as it was.
    kept = (lab.data_dir / "admin-credentials").read_text()
    ops = json.loads(lab.ok("users", "add", "ops", "--admin", "--json"))
    assert ops["user"]["administrator"] is True and ops["access_key"]["SecretAccessKey"]
    assert (lab.data_dir / "admin-credentials").read_text() == kept
    lab.ok("users", "delete", "ops", "--yes")
    unknown = lab.run("users", "disable", "nobody")
    assert unknown.returncode == 1 and "nobody" in unknown.stderr and "Traceback" not in unknown.stderr


def test_the_sdk_trains_as_a_student_in_her_own_bucket(lab: Lab, tmp_path: Path) -> None:
    """Shipyard's SDK on a lab's server with a student's key: its jobs act as the execution role
    she may pass (as get_execution_role() finds it), its uploads go to a bucket of her own."""
    import shipyard

    lab.ok("users", "add", "dana", "--group", "students")
    key = json.loads(lab.ok("keys", "create", "dana", "--json"))
    boss = json.loads(lab.first.stdout)["access_key"]
    iam = boto_client(
        "iam",
        lab.server.url,
        aws_access_key_id=boss["AccessKeyId"],
        aws_secret_access_key=boss["SecretAccessKey"],
    )
    iam.put_group_policy(GroupName="students", PolicyName="student", PolicyDocument=STUDENT.read_text())
    connection = shipyard.connect(
        lab.server.url, access_key_id=key["AccessKeyId"], secret_access_key=key["SecretAccessKey"]
    )
    assert connection.role == "arn:aws:iam::000000000000:role/ShipyardExecutionRole"
    script = tmp_path / "train.py"
    script.write_text("print('loss=0.25')\n")
    job = shipyard.Estimator(script, metrics={"loss": r"loss=([0-9.]+)"}, connection=connection).fit()
    described = job.describe()
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    assert described["RoleArn"] == connection.role
    assert described["OutputDataConfig"]["S3OutputPath"] == "s3://shipyard-dana/output"


def test_with_the_server_stopped_the_store_is_changed_directly(lab: Lab) -> None:
    assert lab.server.stop() == 0
    added = lab.run("users", "add", "carol")
    assert added.returncode == 0, added.stderr
    assert "No server is running on" in added.stderr
    assert "carol" in lab.ok("users", "list")
    # A process holding the data dir (a server starting up) with no server answering: said so.
    with (lab.data_dir / "server.lock").open("a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.seek(0)
        held.truncate()
        held.write(str(os.getpid()))
        held.flush()
        busy = lab.run("users", "list")
    assert busy.returncode == 1
    assert f"A Shipyard process (pid {os.getpid()}) is using the data dir" in busy.stderr


def test_the_first_administrator_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    """A lab's store: the database the config names, the key file in the data dir."""
    import sqlalchemy as sa

    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "config.toml").write_text(f'[server]\ndatabase_url = "{postgres_url}"\nauth = "on"\n')
    env = {"SHIPYARD_HOME": str(data_dir)}
    made = _shipyard("users", "add", "pi", "--admin", env=env)
    assert made.returncode == 0, made.stderr
    assert "changing its store (postgresql) directly" in made.stderr
    assert (data_dir / "admin-credentials").is_file() and not (data_dir / "shipyard.db").exists()
    listed = json.loads(_shipyard("users", "list", "--json", env=env).stdout)
    assert [(u["name"], u["administrator"]) for u in listed] == [("pi", True)]
