"""IAM and STS through boto3's own clients, on one real server with ``auth = "on"``: users, keys,
groups, roles and inline policies, their errors as botocore's exceptions, pagination, who a
caller is, what a non-administrator is refused, passing roles to jobs, a role bounding what its
job may do, and ``sagemaker.get_execution_role()`` for a user's key."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from shipyard.services.identity import ADMIN_CREDENTIALS, read_credentials
from tests._support import boto_client, tgz

ACCOUNT = "000000000000"
# The site's Python with the sagemaker SDK (so boto3 is there): built at once.
IMAGE = "236514542706.dkr.ecr.us-east-1.amazonaws.com/sagemaker-base-python-310:1.0"
EXECUTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ShipyardExecutionRole"


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(action: str | list[str], resource: str | list[str] = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("lab"), env={"SHIPYARD_AUTH": "on"}) as server:
        yield server


def _client(service: str, server: ServerProcess, key: tuple[str, str] | None = None) -> Any:
    key = key or read_credentials(server.data_dir / ADMIN_CREDENTIALS)
    assert key is not None, "the first start writes the administrator's key"
    return boto_client(service, server.url, aws_access_key_id=key[0], aws_secret_access_key=key[1])


def _user_with_key(iam: Any, name: str, *statements: dict[str, Any]) -> tuple[str, str]:
    iam.create_user(UserName=name)
    if statements:
        iam.put_user_policy(UserName=name, PolicyName="grants", PolicyDocument=_policy(*statements))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def _code(name: str, error: str) -> None:
    """``error``'s code is ``name`` (botocore maps it to the model's exception)."""
    assert isinstance(error, str) and error == name, error


def test_users_and_access_keys_with_iams_errors_and_pages(lab: ServerProcess) -> None:
    iam = _client("iam", lab)
    created = iam.create_user(UserName="carol", Path="/students/")["User"]
    assert created["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/students/carol"
    assert created["UserId"].startswith("AIDA") and created["Path"] == "/students/"
    assert iam.get_user(UserName="carol")["User"] == created
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException) as exists:
        iam.create_user(UserName="Carol")  # names are unique regardless of case, as IAM's
    assert exists.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    with pytest.raises(ClientError) as invalid:
        iam.create_user(UserName="carol smith")
    _code("ValidationError", invalid.value.response["Error"]["Code"])
    assert "userName" in str(invalid.value) and "carol smith" in str(invalid.value)
    with pytest.raises(iam.exceptions.NoSuchEntityException) as missing:
        iam.get_user(UserName="nobody")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "nobody" in str(missing.value)

    # Two keys per user, as IAM allows; an inactive key signs nothing.
    first = iam.create_access_key(UserName="carol")["AccessKey"]
    second = iam.create_access_key(UserName="carol")["AccessKey"]
    assert first["Status"] == "Active" and len(first["SecretAccessKey"]) == 40
    with pytest.raises(iam.exceptions.LimitExceededException):
        iam.create_access_key(UserName="carol")
    listed = iam.list_access_keys(UserName="carol")["AccessKeyMetadata"]
    assert {k["AccessKeyId"] for k in listed} == {first["AccessKeyId"], second["AccessKeyId"]}
    assert all("SecretAccessKey" not in k for k in listed)
    carol_sts = _client("sts", lab, (first["AccessKeyId"], first["SecretAccessKey"]))
    assert carol_sts.get_caller_identity()["Arn"] == created["Arn"]
    iam.update_access_key(UserName="carol", AccessKeyId=first["AccessKeyId"], Status="Inactive")
    with pytest.raises(ClientError) as refused:
        carol_sts.get_caller_identity()
    _code("InvalidClientTokenId", refused.value.response["Error"]["Code"])
    with pytest.raises(ClientError) as invalid:
        iam.update_access_key(UserName="carol", AccessKeyId=first["AccessKeyId"], Status="Paused")
    _code("ValidationError", invalid.value.response["Error"]["Code"])

    # A user that still holds keys or policies or groups cannot be deleted (as IAM).
    iam.put_user_policy(UserName="carol", PolicyName="read", PolicyDocument=_policy(_allow("s3:GetObject")))
    with pytest.raises(iam.exceptions.DeleteConflictException) as conflict:
        iam.delete_user(UserName="carol")
    assert "2 access keys" in str(conflict.value) and "1 inline policy" in str(conflict.value)
    for key in (first, second):
        iam.delete_access_key(UserName="carol", AccessKeyId=key["AccessKeyId"])
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.delete_access_key(UserName="carol", AccessKeyId=first["AccessKeyId"])
    iam.delete_user_policy(UserName="carol", PolicyName="read")
    iam.delete_user(UserName="carol")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.delete_user(UserName="carol")

    # Pages: Marker and MaxItems, IsTruncated; the paginator walks them.
    for index in range(5):
        iam.create_user(UserName=f"pager{index}", Path="/pagers/")
    page = iam.list_users(PathPrefix="/pagers/", MaxItems=2)
    assert [u["UserName"] for u in page["Users"]] == ["pager0", "pager1"] and page["IsTruncated"]
    rest = iam.list_users(PathPrefix="/pagers/", MaxItems=2, Marker=page["Marker"])
    assert [u["UserName"] for u in rest["Users"]] == ["pager2", "pager3"]
    names = [
        u["UserName"]
        for found in iam.get_paginator("list_users").paginate(
            PathPrefix="/pagers/", PaginationConfig={"PageSize": 2}
        )
        for u in found["Users"]
    ]
    assert names == [f"pager{i}" for i in range(5)]
    with pytest.raises(ClientError) as invalid:
        iam.list_users(Marker="not-a-marker")
    _code("ValidationError", invalid.value.response["Error"]["Code"])
    assert "Marker" in str(invalid.value)


def test_groups_roles_and_inline_policies(lab: ServerProcess) -> None:
    iam = _client("iam", lab)
    iam.create_user(UserName="dave")
    group = iam.create_group(GroupName="vision")["Group"]
    assert group["Arn"] == f"arn:aws:iam::{ACCOUNT}:group/vision" and group["GroupId"].startswith("AGPA")
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException):
        iam.create_group(GroupName="vision")
    iam.add_user_to_group(GroupName="vision", UserName="dave")
    assert [g["GroupName"] for g in iam.list_groups_for_user(UserName="dave")["Groups"]] == ["vision"]
    assert [u["UserName"] for u in iam.get_group(GroupName="vision")["Users"]] == ["dave"]
    assert "vision" in [g["GroupName"] for g in iam.list_groups()["Groups"]]
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.add_user_to_group(GroupName="vision", UserName="nobody")

    # Inline policies of groups and roles (users' above): put, get (a dict: boto3 decodes IAM's
    # URL-encoded document), list, delete; a malformed one is refused, naming what is wrong.
    document = _policy(_allow("s3:GetObject", "arn:aws:s3:::datasets/*"))
    iam.put_group_policy(GroupName="vision", PolicyName="datasets", PolicyDocument=document)
    got = iam.get_group_policy(GroupName="vision", PolicyName="datasets")
    assert got["PolicyDocument"] == json.loads(document) and got["GroupName"] == "vision"
    assert iam.list_group_policies(GroupName="vision")["PolicyNames"] == ["datasets"]
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException) as malformed:
        iam.put_group_policy(
            GroupName="vision",
            PolicyName="bad",
            PolicyDocument=json.dumps({"Statement": [{"Effect": "Perhaps", "Action": "*", "Resource": "*"}]}),
        )
    assert "Perhaps" in str(malformed.value)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_group_policy(GroupName="vision", PolicyName="bad")
    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_group(GroupName="vision")  # it has a member and a policy
    iam.remove_user_from_group(GroupName="vision", UserName="dave")
    iam.delete_group_policy(GroupName="vision", PolicyName="datasets")
    iam.delete_group(GroupName="vision")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_group(GroupName="vision")

    trust = _policy(
        {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
    )
    role = iam.create_role(
        RoleName="Segmenter", Path="/service-role/", AssumeRolePolicyDocument=trust, Description="for jobs"
    )["Role"]
    assert role["Arn"] == f"arn:aws:iam::{ACCOUNT}:role/service-role/Segmenter"
    fetched = iam.get_role(RoleName="Segmenter")["Role"]
    assert fetched["AssumeRolePolicyDocument"] == json.loads(trust) and fetched["Description"] == "for jobs"
    assert {"Segmenter", "ShipyardExecutionRole"} <= {r["RoleName"] for r in iam.list_roles()["Roles"]}
    with pytest.raises(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName="Segmenter", AssumeRolePolicyDocument=trust)
    with pytest.raises(iam.exceptions.MalformedPolicyDocumentException):
        iam.create_role(RoleName="Broken", AssumeRolePolicyDocument="{not json")
    iam.put_role_policy(RoleName="Segmenter", PolicyName="all", PolicyDocument=_policy(_allow("*")))
    assert iam.list_role_policies(RoleName="Segmenter")["PolicyNames"] == ["all"]
    assert iam.get_role_policy(RoleName="Segmenter", PolicyName="all")["PolicyDocument"]["Statement"]
    with pytest.raises(iam.exceptions.DeleteConflictException):
        iam.delete_role(RoleName="Segmenter")
    iam.delete_role_policy(RoleName="Segmenter", PolicyName="all")
    iam.delete_role(RoleName="Segmenter")
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName="Segmenter")  # auth on: only recorded roles exist


def test_who_a_caller_is_and_what_a_user_is_refused(lab: ServerProcess) -> None:
    iam = _client("iam", lab)
    admin = _client("sts", lab).get_caller_identity()
    assert admin["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/admin" and admin["Account"] == ACCOUNT
    # erin may manage users under /students/ only.
    key = _user_with_key(iam, "erin", _allow("iam:*", f"arn:aws:iam::{ACCOUNT}:user/students/*"))
    erin_iam, erin_sts = _client("iam", lab, key), _client("sts", lab, key)
    me = erin_sts.get_caller_identity()
    assert me["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/erin" and me["Account"] == ACCOUNT
    assert me["UserId"] == iam.get_user(UserName="erin")["User"]["UserId"]
    assert erin_iam.get_user()["User"]["UserName"] == "erin"  # herself, always
    assert erin_iam.get_user(UserName="erin")["User"]["UserName"] == "erin"
    for call, action, resource in (
        (lambda: erin_iam.create_user(UserName="frank"), "iam:CreateUser", "user/frank"),
        (lambda: erin_iam.get_user(UserName="admin"), "iam:GetUser", "user/admin"),
        (
            lambda: erin_iam.create_role(RoleName="Mine", AssumeRolePolicyDocument="{}"),
            "iam:CreateRole",
            "role/Mine",
        ),
        (lambda: erin_iam.list_users(), "iam:ListUsers", "*"),
        (lambda: erin_iam.create_access_key(), "iam:CreateAccessKey", "user/erin"),
    ):
        with pytest.raises(ClientError) as denied:
            call()
        assert denied.value.response["Error"]["Code"] == "AccessDenied"
        assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        message = denied.value.response["Error"]["Message"]
        assert f"User: arn:aws:iam::{ACCOUNT}:user/erin is not authorized to perform: {action}" in message
        assert resource in message
    student = erin_iam.create_user(UserName="gina", Path="/students/")["User"]
    assert student["Arn"].endswith(":user/students/gina")


def _training_job(name: str, role: str, bucket: str) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "RoleArn": role,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": json.dumps(f"s3://{bucket}/code/sourcedir.tar.gz"),
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/input/"}},
            }
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
    }


# The job reads its input (its scope and its role allow it), then writes its model itself to its
# own output folder: its scope allows that, its role denies it.
SCRIPT = """
import os
import boto3

s3 = boto3.client("s3")
bucket, job = "bounded-data", os.environ["TRAINING_JOB_NAME"]
print("READ", s3.get_object(Bucket=bucket, Key="input/data.csv")["Body"].read().decode().strip())
s3.put_object(Bucket=bucket, Key=f"output/{job}/model/weights.txt", Body=b"weights")
print("WROTE the model")
"""


def test_passing_roles_and_a_role_bounding_its_job(lab: ServerProcess) -> None:
    iam, admin_sm = _client("iam", lab), _client("sagemaker", lab)
    iam.create_role(RoleName="Bounded", AssumeRolePolicyDocument=_policy(_allow("sts:AssumeRole")))
    deny_output = {
        "Effect": "Deny",
        "Action": "s3:PutObject",
        "Resource": "arn:aws:s3:::bounded-data/output/*",
    }
    iam.put_role_policy(
        RoleName="Bounded", PolicyName="no-output", PolicyDocument=_policy(_allow("*"), deny_output)
    )
    bounded = f"arn:aws:iam::{ACCOUNT}:role/Bounded"
    key = _user_with_key(
        iam, "hana", _allow(["sagemaker:*", "s3:*", "logs:*"]), _allow("iam:PassRole", bounded)
    )
    s3, sm = _client("s3", lab, key), _client("sagemaker", lab, key)
    s3.create_bucket(Bucket="bounded-data")
    s3.put_object(Bucket="bounded-data", Key="input/data.csv", Body=b"1,2\n")
    s3.put_object(Bucket="bounded-data", Key="code/sourcedir.tar.gz", Body=tgz({"train.py": SCRIPT}))

    # A role she was not granted: refused, naming iam:PassRole and the role.
    name = f"bounded-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ClientError) as denied:
        sm.create_training_job(**_training_job(name, EXECUTION_ROLE, "bounded-data"))
    assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    message = denied.value.response["Error"]["Message"]
    assert f"user/hana is not authorized to perform: iam:PassRole on resource: {EXECUTION_ROLE}" in message
    # A role that does not exist: refused, naming the member and the ARN (administrators too).
    nowhere = f"arn:aws:iam::{ACCOUNT}:role/Nowhere"
    with pytest.raises(ClientError) as unknown:
        admin_sm.create_training_job(**_training_job(name, nowhere, "bounded-data"))
    assert unknown.value.response["Error"]["Code"] == "ValidationException"
    assert f"Could not assume role {nowhere} (RoleArn)" in unknown.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as unknown:
        admin_sm.create_model(ModelName="m", ExecutionRoleArn=nowhere, PrimaryContainer={"Image": IMAGE})
    assert "(ExecutionRoleArn)" in unknown.value.response["Error"]["Message"]
    step = {"Name": "Train", "Type": "Training", "Arguments": _training_job("step", nowhere, "bounded-data")}
    with pytest.raises(ClientError) as unknown:
        admin_sm.create_pipeline(
            PipelineName="p",
            RoleArn=EXECUTION_ROLE,
            PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": [step]}),
        )
    assert "(PipelineDefinition.Steps[0].Arguments.RoleArn)" in unknown.value.response["Error"]["Message"]
    with pytest.raises(ClientError):
        admin_sm.describe_training_job(TrainingJobName=name)  # none was created

    # Her role: the job runs as it, and the role's Deny wins over what the job's scope allows.
    sm.create_training_job(**_training_job(name, bounded, "bounded-data"))
    deadline = time.monotonic() + 120
    while (job := sm.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.05)
    assert job["TrainingJobStatus"] == "Failed", job
    assert "AccessDenied" in job["FailureReason"] and "PutObject" in job["FailureReason"]
    events = _client("logs", lab, key).filter_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/"
    )["events"]
    lines = [e["message"] for e in events]
    assert "READ 1,2" in lines and "WROTE the model" not in lines
    assert f"assumed-role/Bounded/{name} is not authorized to perform: s3:PutObject" in "\n".join(lines)
    with pytest.raises(ClientError):
        s3.head_object(Bucket="bounded-data", Key=f"output/{name}/model/weights.txt")


def test_get_execution_role_resolves_for_a_users_key(
    lab: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real sagemaker SDK: GetCallerIdentity answers the user; GetRole of the user's own name
    answers its execution role: ShipyardExecutionRole, until a role named after the user exists."""
    iam = _client("iam", lab)
    key = _user_with_key(iam, "ivan", _allow("sagemaker:*"))  # nothing of IAM's granted
    for name, value in {
        "AWS_ENDPOINT_URL": lab.url,
        "AWS_ACCESS_KEY_ID": key[0],
        "AWS_SECRET_ACCESS_KEY": key[1],
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    import boto3
    import sagemaker

    # As a notebook's first session: not one an earlier test left as boto3's default.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)

    import shipyard.connector  # noqa: F401 - the SDK's STS endpoint follows AWS_ENDPOINT_URL

    session = sagemaker.Session()
    assert session.get_caller_identity_arn() == EXECUTION_ROLE
    assert sagemaker.get_execution_role(sagemaker_session=session) == EXECUTION_ROLE
    iam.create_role(
        RoleName="ivan", Path="/people/", AssumeRolePolicyDocument=_policy(_allow("sts:AssumeRole"))
    )
    assert (
        sagemaker.get_execution_role(sagemaker_session=session) == f"arn:aws:iam::{ACCOUNT}:role/people/ivan"
    )
