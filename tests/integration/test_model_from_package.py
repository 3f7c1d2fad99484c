"""CreateModel from a registered model package (a container's ModelPackageName), through boto3: the
model gets the package's image, model data and environment, as on SageMaker."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"


def test_a_model_created_from_a_package_runs_the_packages_container(server: ServerProcess) -> None:
    sm = boto_client("sagemaker", server.url)
    group = f"pkg-{uuid.uuid4().hex[:8]}"
    sm.create_model_package_group(ModelPackageGroupName=group)
    arn = sm.create_model_package(
        ModelPackageGroupName=group,
        ModelApprovalStatus="Approved",
        InferenceSpecification={
            "Containers": [
                {
                    "Image": IMAGE,
                    "ModelDataUrl": "s3://models/iris/model.tar.gz",
                    "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "LEVEL": "package"},
                }
            ],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    )["ModelPackageArn"]

    sm.create_model(
        ModelName=group,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"ModelPackageName": arn, "Environment": {"LEVEL": "model"}},
    )
    container = sm.describe_model(ModelName=group)["PrimaryContainer"]
    assert container["ModelPackageName"] == arn
    assert (container["Image"], container["ModelDataUrl"]) == (IMAGE, "s3://models/iris/model.tar.gz")
    assert container["Environment"] == {
        "SAGEMAKER_PROGRAM": "inference.py",
        "LEVEL": "model",
    }  # the model's own wins

    with pytest.raises(ClientError) as error:
        sm.create_model(
            ModelName=f"{group}-missing",
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"ModelPackageName": f"{arn[:-2]}/9"},
        )
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "does not exist" in error.value.response["Error"]["Message"]
