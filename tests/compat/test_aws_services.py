"""STS, IAM and the SageMaker JSON protocol as boto3 and the sagemaker SDK call them."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client

ARN = "arn:aws:sagemaker:us-east-1:000000000000:training-job/tagged-job"


@pytest.fixture(scope="module")
def sm(server: ServerProcess):  # type: ignore[no-untyped-def]
    return boto_client("sagemaker", server.url)


def test_caller_identity_is_an_assumed_role(server: ServerProcess) -> None:
    identity = boto_client("sts", server.url).get_caller_identity()
    assert identity["Account"] == "000000000000"
    assert identity["Arn"].startswith("arn:aws:sts::000000000000:assumed-role/")


def test_get_role(server: ServerProcess) -> None:
    role = boto_client("iam", server.url).get_role(RoleName="SageMakerRole")["Role"]
    assert role["Arn"] == "arn:aws:iam::000000000000:role/SageMakerRole"


def test_unimplemented_operation_is_named(sm) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as exc:
        sm.list_domains()
    assert exc.value.response["Error"]["Code"] == "NotImplementedException"
    assert "ListDomains" in exc.value.response["Error"]["Message"]


def test_missing_required_member(sm) -> None:  # type: ignore[no-untyped-def]
    # botocore validates client-side; turn that off to see the server's own answer.
    from botocore.config import Config

    raw = boto_client("sagemaker", sm.meta.endpoint_url, config=Config(parameter_validation=False))
    with pytest.raises(ClientError) as exc:
        raw.describe_training_job()
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    assert "trainingJobName" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        raw.list_training_jobs(MaxResults=5000)
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    assert "maxResults" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        raw.list_training_jobs(MaxResults="ten")
    assert exc.value.response["Error"]["Code"] == "ValidationException"


def test_tags_add_list_delete(sm) -> None:  # type: ignore[no-untyped-def]
    sm.add_tags(ResourceArn=ARN, Tags=[{"Key": f"k{i:02d}", "Value": str(i)} for i in range(12)])
    sm.add_tags(ResourceArn=ARN, Tags=[{"Key": "k00", "Value": "replaced"}])
    tags = [t for page in sm.get_paginator("list_tags").paginate(ResourceArn=ARN) for t in page["Tags"]]
    assert len(tags) == 12 and tags[0] == {"Key": "k00", "Value": "replaced"}
    sm.delete_tags(ResourceArn=ARN, TagKeys=["k00", "k01", "not-there"])
    assert len(sm.list_tags(ResourceArn=ARN)["Tags"]) == 10
    with pytest.raises(ClientError) as exc:
        sm.add_tags(ResourceArn=ARN, Tags=[{"Key": f"x{i}", "Value": ""} for i in range(41)])
    assert exc.value.response["Error"]["Code"] == "ResourceLimitExceeded"
    assert len(sm.list_tags(ResourceArn=ARN)["Tags"]) == 10  # nothing lost on refusal


def test_execution_role_as_the_sagemaker_sdk_derives_it(server: ServerProcess) -> None:
    """get_execution_role(): caller identity -> role name -> iam.get_role -> the role's ARN.

    (The SDK itself sends STS to a hard-wired regional AWS endpoint; pointing it here is the
    SDK connector's job.)
    """
    import re

    arn = boto_client("sts", server.url).get_caller_identity()["Arn"]
    role_name = re.sub(r"^(.+)sts::(\d+):assumed-role/(.+?)/.*$", r"\3", arn)
    role = boto_client("iam", server.url).get_role(RoleName=role_name)["Role"]
    assert role["Arn"] == "arn:aws:iam::000000000000:role/ShipyardExecutionRole"
