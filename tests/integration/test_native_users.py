"""Users on the native API (/api/v1), on a real auth-on server: a user's key as a bearer token
(``<access key id>:<secret>``) or a SigV4 signature acts as the user; each route is authorized as
the SageMaker action it amounts to, with ownership; lists show what the caller may see; the
root's key works as before."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shipyard.config import DEFAULT_ACCOUNT_ID
from shipyard.sdk import Connection
from shipyard.server import ServerProcess
from shipyard.services.identity import ADMIN_CREDENTIALS, DEFAULT_ROLE, read_credentials
from tests._support import boto_client

ROOT_KEY, ROOT_SECRET = "AKIDNATIVEROOT", "native-root-secret"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": ["sagemaker:*", "s3:*", "logs:*", "iam:PassRole"], "Resource": "*"}
    ],
}


class Lab:
    """The server, its administrator's key, and the users alice and bob, each with a key, a
    bucket and a training job of their own (InProgress: it sleeps)."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        found = read_credentials(server.data_dir / ADMIN_CREDENTIALS)
        assert found is not None, "the first start with auth writes the administrator's key"
        self.admin = found
        iam = boto_client("iam", server.url, aws_access_key_id=found[0], aws_secret_access_key=found[1])
        self.keys: dict[str, tuple[str, str]] = {}
        self.jobs: dict[str, str] = {}
        for user in ("alice", "bob"):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="work", PolicyDocument=json.dumps(POLICY))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            self.keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])
            self.jobs[user] = self._launch(user)

    def client(self, service: str, user: str) -> Any:
        key, secret = self.keys[user]
        return boto_client(service, self.server.url, aws_access_key_id=key, aws_secret_access_key=secret)

    def _launch(self, user: str) -> str:
        bucket, name = f"{user}-work-{uuid.uuid4().hex[:6]}", f"{user}-{uuid.uuid4().hex[:8]}"
        self.client("s3", user).create_bucket(Bucket=bucket)
        self.client("sagemaker", user).create_training_job(
            TrainingJobName=name,
            RoleArn=f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:role/{DEFAULT_ROLE}",
            AlgorithmSpecification={
                "TrainingImage": IMAGE,
                "TrainingInputMode": "File",
                "ContainerEntrypoint": ["/bin/sh", "-c"],
                "ContainerArguments": ["sleep 300"],
            },
            OutputDataConfig={"S3OutputPath": f"s3://{bucket}/output"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 300},
        )
        return name

    def native(self, method: str, path: str, user: str | None = None, **kwargs: Any) -> httpx.Response:
        """A call as ``user`` (its key as the bearer token), or as root (the root's secret)."""
        token = ":".join(self.keys[user]) if user else ROOT_SECRET
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.request(
            method, f"{self.server.url}/api/v1/{path}", headers=headers, timeout=30, **kwargs
        )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    env = {
        "SHIPYARD_AUTH": "on",
        "SHIPYARD_ACCESS_KEY_ID": ROOT_KEY,
        "SHIPYARD_SECRET_ACCESS_KEY": ROOT_SECRET,
    }
    with ServerProcess(tmp_path_factory.mktemp("native-users"), env=env) as server:
        lab = Lab(server)
        yield lab
        for name in lab.jobs.values():
            lab.native("POST", f"jobs/training/{name}/stop")


def test_a_user_reads_and_stops_its_own_job(lab: Lab) -> None:
    name = lab.jobs["alice"]
    found = lab.native("GET", f"jobs/training/{name}", "alice")
    assert found.status_code == 200, found.text
    assert found.json()["owner"] == "alice"
    assert lab.native("GET", f"training-jobs/{name}", "alice").status_code == 200
    me = lab.native("GET", "whoami", "alice").json()
    assert (me["user"], me["administrator"], me["auth"]) == ("alice", False, True)
    # Where the server keeps its state is the administrator's to know.
    assert "data_dir" not in lab.native("GET", "info", "alice").json()
    assert "data_dir" in lab.native("GET", "info").json()


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("GET", "jobs/training/{}", "sagemaker:DescribeTrainingJob"),
        ("GET", "training-jobs/{}", "sagemaker:DescribeTrainingJob"),
        ("GET", "jobs/training/{}/log", "logs:GetLogEvents"),
        ("POST", "jobs/training/{}/stop", "sagemaker:StopTrainingJob"),
    ],
)
def test_another_users_job_is_refused_naming_the_action(
    lab: Lab, method: str, path: str, action: str
) -> None:
    alices = lab.jobs["alice"]
    refused = lab.native(method, path.format(alices), "bob")
    assert refused.status_code == 403, refused.text
    body = refused.json()
    assert body["error"] == "AccessDenied"
    assert body["message"].startswith(
        f"User: arn:aws:iam::{DEFAULT_ACCOUNT_ID}:user/bob is not authorized to perform: {action} on resource: "
    )
    assert alices in body["message"]
    status = lab.native("GET", f"jobs/training/{alices}", "alice").json()["status"]
    assert status == "InProgress"  # bob's stop did nothing


def test_lists_show_what_the_caller_may_see_and_filter_by_owner(lab: Lab) -> None:
    alices, bobs = lab.jobs["alice"], lab.jobs["bob"]
    mine = lab.native("GET", "jobs/training", "bob").json()
    assert [j["name"] for j in mine["items"]] == [bobs]
    assert (mine["total"], mine["owners"], mine["items"][0]["owner"]) == (1, ["bob"], "bob")

    everyone = lab.native("GET", "jobs/training").json()  # the root
    assert {j["name"]: j["owner"] for j in everyone["items"]} == {alices: "alice", bobs: "bob"}
    assert {"alice", "bob", "admin"} <= set(everyone["owners"])
    alice_only = lab.native("GET", "jobs/training", params={"owner": "alice"}).json()
    assert ([j["name"] for j in alice_only["items"]], alice_only["total"]) == ([alices], 1)


def test_the_root_key_works_as_before_and_bad_keys_are_refused(lab: Lab) -> None:
    url = f"{lab.server.url}/api/v1/whoami"
    for token in (ROOT_SECRET, f"{ROOT_KEY}:{ROOT_SECRET}"):
        me = httpx.get(url, headers={"Authorization": f"Bearer {token}"}).json()
        assert (me["arn"], me["administrator"]) == (f"arn:aws:iam::{DEFAULT_ACCOUNT_ID}:root", True)
    admin = httpx.get(url, headers={"Authorization": "Bearer " + ":".join(lab.admin)}).json()
    assert (admin["user"], admin["administrator"]) == ("admin", True)
    key, _ = lab.keys["alice"]
    for token in (f"{key}:not-her-secret", "not-a-secret", f"AKIAUNKNOWNUNKNOWN00:{ROOT_SECRET}"):
        refused = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert refused.status_code == 401, token
        assert refused.json()["error"] == "AuthenticationError"
    assert httpx.get(url).status_code == 401


def test_a_sigv4_signed_call_and_the_sdk_act_as_the_user(lab: Lab) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    key, secret = lab.keys["bob"]
    url = f"{lab.server.url}/api/v1/jobs/training/{lab.jobs['alice']}"
    request = AWSRequest("GET", url)
    SigV4Auth(Credentials(key, secret), "sagemaker", "us-east-1").add_auth(request)
    refused = httpx.get(url, headers=dict(request.headers.items()))
    assert refused.status_code == 403 and "user/bob" in refused.json()["message"]

    assert Connection(lab.server.url, key, secret).native("whoami")["user"] == "bob"


def test_a_user_stops_its_own_job(lab: Lab) -> None:
    name = lab.jobs["bob"]
    stopped = lab.native("POST", f"jobs/training/{name}/stop", "bob")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json()["status"] in ("Stopping", "Stopped")
