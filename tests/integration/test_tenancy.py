"""A lab's shared server through boto3 only: the administrator makes alice and bob (IAM users with
keys, a policy each, one group); each one's jobs, endpoints, models, pipelines and buckets are
invisible and untouchable to the other, what is shared with their group (or the lab's) is
reachable by both, and a Deny wins over an Allow. One server with ``auth = "on"``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from shipyard.services.identity import ADMIN_CREDENTIALS, read_credentials
from tests._support import boto_client, tgz

ACCOUNT = "000000000000"
# The site's Python with the sagemaker SDK (so boto3 is there): built at once.
IMAGE = "236514542706.dkr.ecr.us-east-1.amazonaws.com/sagemaker-base-python-310:1.0"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ShipyardExecutionRole"
LAB_BUCKET = "lab-datasets"


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def _allow(action: str | list[str], resource: str | list[str] = "*") -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource}


class Lab:
    """The server, and clients for the administrator, alice and bob."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        admin = read_credentials(server.data_dir / ADMIN_CREDENTIALS)
        assert admin is not None, "the first start writes the administrator's key"
        self.keys: dict[str, tuple[str, str]] = {"admin": admin}
        iam = self.client("admin", "iam")
        iam.create_group(GroupName="students")
        everything = _allow(["sagemaker:*", "s3:*", "logs:*"])
        pass_role = _allow("iam:PassRole", ROLE)
        private = {
            "Effect": "Deny",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{LAB_BUCKET}/private/*",
        }
        for name, statements in (
            ("alice", [everything, pass_role]),
            ("bob", [everything, pass_role, private]),
        ):
            iam.create_user(UserName=name)
            iam.put_user_policy(UserName=name, PolicyName="work", PolicyDocument=_policy(*statements))
            iam.add_user_to_group(GroupName="students", UserName=name)
            key = iam.create_access_key(UserName=name)["AccessKey"]
            self.keys[name] = (key["AccessKeyId"], key["SecretAccessKey"])

    def client(self, who: str, service: str) -> Any:
        key, secret = self.keys[who]
        return boto_client(service, self.server.url, aws_access_key_id=key, aws_secret_access_key=secret)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with ServerProcess(tmp_path_factory.mktemp("tenancy"), env={"SHIPYARD_AUTH": "on"}) as server:
        yield Lab(server)


def _refused(call: Any, action: str, resource: str | None = None, *, why: str = "") -> None:
    """``call`` is refused with AccessDenied (S3's) or AccessDeniedException, naming ``action``
    (and ``resource``, and the reason ``why``) as AWS words it."""
    with pytest.raises(ClientError) as refused:
        call()
    error = refused.value.response["Error"]
    assert error["Code"] in ("AccessDenied", "AccessDeniedException"), error
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    message = error.get("Message", "")
    assert f"user/bob is not authorized to perform: {action} on resource: " in message, message
    if resource is not None:
        assert f"on resource: {resource} " in message, message
    assert why in message, message


def _code(call: Any) -> str:
    with pytest.raises(ClientError) as failed:
        call()
    return str(failed.value.response["Error"]["Code"])


def _training_job(name: str, bucket: str) -> dict[str, Any]:
    return {
        "TrainingJobName": name,
        "RoleArn": ROLE,
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


# The job reads its input from its owner's bucket (with its own credentials, acting for alice).
SCRIPT = """
import os
print("READ", open("/opt/ml/input/data/train/data.csv").read().strip())
open("/opt/ml/model/weights.txt", "w").write("weights")
"""


def test_a_users_work_is_invisible_and_untouchable_to_another(lab: Lab) -> None:
    s3, sm, logs = (lab.client("alice", s) for s in ("s3", "sagemaker", "logs"))
    bob_s3, bob_sm, bob_logs = (lab.client("bob", s) for s in ("s3", "sagemaker", "logs"))
    admin_sm, admin_s3 = lab.client("admin", "sagemaker"), lab.client("admin", "s3")
    bucket, job = "alice-data", f"alice-train-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="input/data.csv", Body=b"1,2\n")
    s3.put_object(Bucket=bucket, Key="code/sourcedir.tar.gz", Body=tgz({"train.py": SCRIPT}))
    sm.create_training_job(**_training_job(job, bucket))
    sm.create_model(ModelName="alice-model", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    variant = {
        "VariantName": "v",
        "ModelName": "alice-model",
        "InstanceType": "ml.m5.large",
        "InitialInstanceCount": 1,
    }
    sm.create_endpoint_config(EndpointConfigName="alice-config", ProductionVariants=[variant])
    sm.create_endpoint(EndpointName="alice-endpoint", EndpointConfigName="alice-config")
    job_arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/{job}"

    # Invisible: bob's lists leave out what is alice's; hers and the administrator's show it.
    assert job not in [j["TrainingJobName"] for j in bob_sm.list_training_jobs()["TrainingJobSummaries"]]
    assert job in [j["TrainingJobName"] for j in sm.list_training_jobs()["TrainingJobSummaries"]]
    assert job in [j["TrainingJobName"] for j in admin_sm.list_training_jobs()["TrainingJobSummaries"]]
    assert bob_sm.list_endpoints()["Endpoints"] == [] and bob_sm.list_models()["Models"] == []
    assert bob_sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]] == ["alice-endpoint"]
    assert bucket not in [b["Name"] for b in bob_s3.list_buckets()["Buckets"]]
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert bucket in [b["Name"] for b in admin_s3.list_buckets()["Buckets"]]

    # Untouchable: each call refused, naming the action and the resource.
    _refused(
        lambda: bob_sm.describe_training_job(TrainingJobName=job), "sagemaker:DescribeTrainingJob", job_arn
    )
    _refused(lambda: bob_sm.stop_training_job(TrainingJobName=job), "sagemaker:StopTrainingJob", job_arn)
    _refused(lambda: bob_sm.list_tags(ResourceArn=job_arn), "sagemaker:ListTags", job_arn)
    _refused(lambda: bob_sm.describe_endpoint(EndpointName="alice-endpoint"), "sagemaker:DescribeEndpoint")
    _refused(lambda: bob_sm.delete_endpoint(EndpointName="alice-endpoint"), "sagemaker:DeleteEndpoint")
    _refused(lambda: bob_sm.delete_model(ModelName="alice-model"), "sagemaker:DeleteModel")
    runtime = lab.client("bob", "sagemaker-runtime")
    _refused(
        lambda: runtime.invoke_endpoint(EndpointName="alice-endpoint", Body=b"1", ContentType="text/csv"),
        "sagemaker:InvokeEndpoint",
        f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/alice-endpoint",
    )
    # The name encoded twice (alice-endpoin%74 as %2574) is the endpoint authorized and the one
    # invoked: a name that is not an endpoint's, refused, never alice's endpoint reached.
    key, secret = lab.keys["bob"]
    unchecked = boto_client(
        "sagemaker-runtime",
        lab.server.url,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(parameter_validation=False, retries={"max_attempts": 1}),
    )
    for call in (unchecked.invoke_endpoint, unchecked.invoke_endpoint_with_response_stream):
        with pytest.raises(ClientError) as encoded:
            call(EndpointName="alice-endpoin%74", Body=b"1", ContentType="text/csv")
        assert encoded.value.response["Error"]["Code"] in ("ValidationError", "AccessDeniedException")
        assert "alice-endpoin%74" in encoded.value.response["Error"]["Message"]
    _refused(
        lambda: bob_s3.get_object(Bucket=bucket, Key="input/data.csv"),
        "s3:GetObject",
        f"arn:aws:s3:::{bucket}/input/data.csv",
    )
    _refused(lambda: bob_s3.list_objects_v2(Bucket=bucket), "s3:ListBucket")
    _refused(lambda: bob_s3.put_object(Bucket=bucket, Key="x", Body=b"x"), "s3:PutObject")
    _refused(lambda: bob_s3.delete_bucket(Bucket=bucket), "s3:DeleteBucket")
    # Using her things in his own: refused too (her model, her config, her data).
    mine = {**variant, "ModelName": "alice-model"}
    _refused(
        lambda: bob_sm.create_endpoint_config(EndpointConfigName="bobs", ProductionVariants=[mine]),
        "sagemaker:CreateEndpointConfig",
        f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/alice-model",
    )
    _refused(
        lambda: bob_sm.create_endpoint(EndpointName="bobs", EndpointConfigName="alice-config"),
        "sagemaker:CreateEndpoint",
    )
    _refused(
        lambda: bob_sm.create_training_job(**_training_job("bob-steals", bucket)),
        "sagemaker:CreateTrainingJob",
    )
    # Her names are taken, saying no more than SageMaker and S3 would.
    assert _code(lambda: bob_sm.create_training_job(**_training_job(job, "bob-data"))) == "ResourceInUse"
    assert _code(lambda: bob_s3.create_bucket(Bucket=bucket)) == "BucketAlreadyExists"
    assert _code(lambda: s3.create_bucket(Bucket=bucket)) == "BucketAlreadyOwnedByYou"

    # Her job runs with its own credentials, acting for her: it reads her bucket; its logs are hers.
    deadline = time.monotonic() + 120
    while (described := sm.describe_training_job(TrainingJobName=job))["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.1)
    assert described["TrainingJobStatus"] == "Completed", described.get("FailureReason")
    group = "/aws/sagemaker/TrainingJobs"
    lines = [
        e["message"]
        for e in logs.filter_log_events(logGroupName=group, logStreamNamePrefix=f"{job}/")["events"]
    ]
    assert "READ 1,2" in lines
    _refused(
        lambda: bob_logs.filter_log_events(logGroupName=group, logStreamNamePrefix=f"{job}/"),
        "logs:FilterLogEvents",
    )
    streams = logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert any(s["logStreamName"].startswith(f"{job}/") for s in streams)
    bobs_streams = bob_logs.describe_log_streams(logGroupName=group)["logStreams"]
    assert not any(s["logStreamName"].startswith(f"{job}/") for s in bobs_streams)
    assert not [
        e for e in bob_logs.filter_log_events(logGroupName=group)["events"] if job in e["logStreamName"]
    ]

    # Hers to end: she deletes her endpoint; its name is free again, for whoever makes it next.
    sm.delete_endpoint(EndpointName="alice-endpoint")
    sm.delete_endpoint_config(EndpointConfigName="alice-config")
    bob_sm.create_model(ModelName="bob-model", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE})
    bob_sm.create_endpoint_config(
        EndpointConfigName="alice-config", ProductionVariants=[{**variant, "ModelName": "bob-model"}]
    )
    assert (
        bob_sm.describe_endpoint_config(EndpointConfigName="alice-config")["EndpointConfigName"]
        == "alice-config"
    )
    with pytest.raises(ClientError) as hers_no_more:
        sm.describe_endpoint_config(EndpointConfigName="alice-config")
    assert hers_no_more.value.response["Error"]["Code"] == "AccessDeniedException"


def test_what_is_shared_with_a_group_or_the_labs_is_reachable_and_a_deny_wins(lab: Lab) -> None:
    s3, sm = lab.client("alice", "s3"), lab.client("alice", "sagemaker")
    bob_s3, bob_sm = lab.client("bob", "s3"), lab.client("bob", "sagemaker")
    admin_s3 = lab.client("admin", "s3")
    s3.create_bucket(Bucket="alice-shared")
    s3.put_object(Bucket="alice-shared", Key="notes.txt", Body=b"for the group")
    _refused(lambda: bob_s3.get_object(Bucket="alice-shared", Key="notes.txt"), "s3:GetObject")

    # Shared with the group by its tag: bob reads it and sees it listed; only she may unshare it.
    with pytest.raises(ClientError) as unknown:
        s3.put_bucket_tagging(
            Bucket="alice-shared", Tagging={"TagSet": [{"Key": "shipyard:group", "Value": "no-such-group"}]}
        )
    assert unknown.value.response["Error"]["Code"] == "InvalidTag"
    assert "'no-such-group'" in unknown.value.response["Error"]["Message"]
    tags = [{"Key": "shipyard:group", "Value": "students"}, {"Key": "project", "Value": "p1"}]
    s3.put_bucket_tagging(Bucket="alice-shared", Tagging={"TagSet": tags})
    assert s3.get_bucket_tagging(Bucket="alice-shared")["TagSet"] == sorted(tags, key=lambda t: t["Key"])
    assert bob_s3.get_object(Bucket="alice-shared", Key="notes.txt")["Body"].read() == b"for the group"
    assert "alice-shared" in [b["Name"] for b in bob_s3.list_buckets()["Buckets"]]
    _refused(lambda: bob_s3.delete_bucket_tagging(Bucket="alice-shared"), "s3:DeleteBucketTagging")
    _refused(
        lambda: bob_s3.put_bucket_tagging(Bucket="alice-shared", Tagging={"TagSet": []}),
        "s3:PutBucketTagging",
    )
    s3.delete_bucket_tagging(Bucket="alice-shared")
    assert _code(lambda: s3.get_bucket_tagging(Bucket="alice-shared")) == "NoSuchTagSet"
    _refused(lambda: bob_s3.get_object(Bucket="alice-shared", Key="notes.txt"), "s3:GetObject")

    # A SageMaker resource shared by the tag, at create or later (AddTags); only its owner may.
    sm.create_model(
        ModelName="alice-shared-model",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": IMAGE},
        Tags=[{"Key": "shipyard:group", "Value": "students"}],
    )
    assert bob_sm.describe_model(ModelName="alice-shared-model")["ModelName"] == "alice-shared-model"
    assert "alice-shared-model" in [m["ModelName"] for m in bob_sm.list_models()["Models"]]
    arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/alice-shared-model"
    _refused(
        lambda: bob_sm.delete_tags(ResourceArn=arn, TagKeys=["shipyard:group"]), "sagemaker:DeleteTags", arn
    )
    sm.delete_tags(ResourceArn=arn, TagKeys=["shipyard:group"])
    _refused(lambda: bob_sm.describe_model(ModelName="alice-shared-model"), "sagemaker:DescribeModel", arn)
    with pytest.raises(ClientError) as unknown:
        sm.add_tags(ResourceArn=arn, Tags=[{"Key": "shipyard:group", "Value": "nobody"}])
    assert unknown.value.response["Error"]["Code"] == "ValidationException"
    assert "'nobody'" in unknown.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as at_create:
        sm.create_model(
            ModelName="never-made",
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": IMAGE},
            Tags=[{"Key": "shipyard:group", "Value": "nobody"}],
        )
    assert at_create.value.response["Error"]["Code"] == "ValidationException"
    assert _code(lambda: sm.describe_model(ModelName="never-made")) == "ValidationException"  # not made

    # The lab's bucket (the administrator's) is readable by both, but bob's Deny wins over his Allow.
    admin_s3.create_bucket(Bucket=LAB_BUCKET)
    admin_s3.put_object(Bucket=LAB_BUCKET, Key="public/iris.csv", Body=b"iris")
    admin_s3.put_object(Bucket=LAB_BUCKET, Key="private/grades.csv", Body=b"grades")
    for client in (s3, bob_s3):
        assert client.get_object(Bucket=LAB_BUCKET, Key="public/iris.csv")["Body"].read() == b"iris"
        assert LAB_BUCKET in [b["Name"] for b in client.list_buckets()["Buckets"]]
    assert s3.get_object(Bucket=LAB_BUCKET, Key="private/grades.csv")["Body"].read() == b"grades"
    _refused(
        lambda: bob_s3.get_object(Bucket=LAB_BUCKET, Key="private/grades.csv"),
        "s3:GetObject",
        f"arn:aws:s3:::{LAB_BUCKET}/private/grades.csv",
        why="with an explicit deny in an identity-based policy",
    )
    # The sagemaker SDK's default bucket is the lab's whoever makes it: every user's SDK shares it.
    default = f"sagemaker-us-east-1-{ACCOUNT}"
    bob_s3.create_bucket(Bucket=default)
    assert default in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.put_object(Bucket=default, Key="alice/x", Body=b"x")


def test_lists_page_through_only_what_the_caller_may_see(lab: Lab) -> None:
    sm, bob_sm, admin_sm = (lab.client(who, "sagemaker") for who in ("alice", "bob", "admin"))
    for index in range(3):
        sm.create_pipeline(
            PipelineName=f"alice-pipe-{index}",
            RoleArn=ROLE,
            PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}),
        )
    for index in range(2):
        bob_sm.create_pipeline(
            PipelineName=f"bob-pipe-{index}",
            RoleArn=ROLE,
            PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}),
        )

    def names(client: Any) -> list[str]:
        pages = client.get_paginator("list_pipelines").paginate(PaginationConfig={"PageSize": 2})
        return sorted(p["PipelineName"] for page in pages for p in page["PipelineSummaries"])

    assert names(bob_sm) == ["bob-pipe-0", "bob-pipe-1"]
    assert names(sm) == ["alice-pipe-0", "alice-pipe-1", "alice-pipe-2"]
    assert {*names(sm), *names(bob_sm)} <= set(names(admin_sm))
    _refused(lambda: bob_sm.describe_pipeline(PipelineName="alice-pipe-0"), "sagemaker:DescribePipeline")
    _refused(
        lambda: bob_sm.start_pipeline_execution(PipelineName="alice-pipe-0"),
        "sagemaker:StartPipelineExecution",
    )
    execution = sm.start_pipeline_execution(PipelineName="alice-pipe-0")["PipelineExecutionArn"]
    _refused(
        lambda: bob_sm.describe_pipeline_execution(PipelineExecutionArn=execution),
        "sagemaker:DescribePipelineExecution",
        execution,
    )
    assert [
        e["PipelineExecutionArn"]
        for e in sm.list_pipeline_executions(PipelineName="alice-pipe-0")["PipelineExecutionSummaries"]
    ] == [execution]
    # The model registry: her group is hers; his packages cannot go into it.
    sm.create_model_package_group(ModelPackageGroupName="alice-models")
    assert bob_sm.list_model_package_groups()["ModelPackageGroupSummaryList"] == []
    _refused(
        lambda: bob_sm.create_model_package(
            ModelPackageGroupName="alice-models",
            InferenceSpecification={
                "Containers": [{"Image": IMAGE}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
        ),
        "sagemaker:CreateModelPackage",
    )
    # ... nor may he make a model of her registered version
    package = sm.create_model_package(
        ModelPackageGroupName="alice-models",
        InferenceSpecification={
            "Containers": [{"Image": IMAGE, "ModelDataUrl": "s3://alice-data/model.tar.gz"}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
    )["ModelPackageArn"]
    _refused(
        lambda: bob_sm.create_model(
            ModelName="bobs-copy", ExecutionRoleArn=ROLE, PrimaryContainer={"ModelPackageName": package}
        ),
        "sagemaker:CreateModel",
        package,
    )


def _until(find: Any, what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while not (found := find()):
        assert time.monotonic() < deadline, f"{what} never came"
        time.sleep(0.1)
    return found


def test_what_the_platform_makes_for_a_user_is_the_users(lab: Lab) -> None:
    """A tuning job's trials and a pipeline's step jobs belong to whoever launched them."""
    s3, sm, bob_sm = (
        lab.client("alice", "s3"),
        lab.client("alice", "sagemaker"),
        lab.client("bob", "sagemaker"),
    )
    s3.create_bucket(Bucket="alice-runs")
    s3.put_object(Bucket="alice-runs", Key="input/data.csv", Body=b"1,2\n")
    s3.put_object(
        Bucket="alice-runs",
        Key="code/sourcedir.tar.gz",
        Body=tgz({"train.py": SCRIPT + "print('score=1.0')\n"}),
    )
    job = _training_job("unused", "alice-runs")
    definition = {
        key: value for key, value in job.items() if key not in ("TrainingJobName", "HyperParameters")
    }
    definition["StaticHyperParameters"] = job["HyperParameters"]
    definition["AlgorithmSpecification"] = {
        **job["AlgorithmSpecification"],
        "MetricDefinitions": [{"Name": "score", "Regex": "score=([0-9.]+)"}],
    }
    tuning = f"alice-tune-{uuid.uuid4().hex[:6]}"
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning,
        HyperParameterTuningJobConfig={
            "Strategy": "Random",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "score"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 1, "MaxParallelTrainingJobs": 1},
            "ParameterRanges": {
                "ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]
            },
        },
        TrainingJobDefinition=definition,
    )
    trials = _until(
        lambda: sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning)[
            "TrainingJobSummaries"
        ],
        "a trial",
    )
    trial = trials[0]["TrainingJobName"]
    _refused(
        lambda: bob_sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning),
        "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
    )
    _refused(lambda: bob_sm.describe_training_job(TrainingJobName=trial), "sagemaker:DescribeTrainingJob")
    assert tuning not in [
        t["HyperParameterTuningJobName"]
        for t in bob_sm.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
    ]
    assert sm.describe_training_job(TrainingJobName=trial)["TrainingJobName"] == trial

    step = {
        "Name": "train",
        "Type": "Training",
        "Arguments": {k: v for k, v in job.items() if k != "TrainingJobName"},
    }
    pipeline = f"alice-steps-{uuid.uuid4().hex[:6]}"
    sm.create_pipeline(
        PipelineName=pipeline,
        RoleArn=ROLE,
        PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": [step]}),
    )
    execution = sm.start_pipeline_execution(PipelineName=pipeline)["PipelineExecutionArn"]
    steps = _until(
        lambda: [
            s
            for s in sm.list_pipeline_execution_steps(PipelineExecutionArn=execution)[
                "PipelineExecutionSteps"
            ]
            if s.get("Metadata", {}).get("TrainingJob")
        ],
        "the step's training job",
    )
    step_job_arn = steps[0]["Metadata"]["TrainingJob"]["Arn"]
    step_job = step_job_arn.rsplit("/", 1)[1]
    _refused(lambda: bob_sm.describe_training_job(TrainingJobName=step_job), "sagemaker:DescribeTrainingJob")
    assert sm.describe_training_job(TrainingJobName=step_job)["TrainingJobArn"] == step_job_arn
    assert step_job not in [j["TrainingJobName"] for j in bob_sm.list_training_jobs()["TrainingJobSummaries"]]


def test_a_pipeline_reaches_no_more_than_its_owner(lab: Lab) -> None:
    """A step's arguments are resolved when it runs (parameters, Std:Join, other steps): its work is
    made only when the execution's owner could make it through the API. Bob's pipeline cannot read
    alice's bucket, write into it, or build on her model."""
    s3, bob_s3, bob_sm = lab.client("alice", "s3"), lab.client("bob", "s3"), lab.client("bob", "sagemaker")
    s3.create_bucket(Bucket="alice-secrets")
    s3.put_object(Bucket="alice-secrets", Key="input/data.csv", Body=b"SECRET\n")
    bob_s3.create_bucket(Bucket="bob-code")
    bob_s3.put_object(Bucket="bob-code", Key="input/data.csv", Body=b"1,2\n")
    bob_s3.put_object(Bucket="bob-code", Key="code/sourcedir.tar.gz", Body=tgz({"train.py": SCRIPT}))
    arguments = {k: v for k, v in _training_job("unused", "bob-code").items() if k != "TrainingJobName"}
    arguments["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] = {"Get": "Parameters.Input"}
    definition = {
        "Version": "2020-12-01",
        "Parameters": [{"Name": "Input", "Type": "String", "DefaultValue": "s3://bob-code/input/"}],
        "Steps": [{"Name": "train", "Type": "Training", "Arguments": arguments}],
    }
    pipeline = f"bob-steal-{uuid.uuid4().hex[:6]}"
    bob_sm.create_pipeline(PipelineName=pipeline, RoleArn=ROLE, PipelineDefinition=json.dumps(definition))

    def failed_step(parameters: list[dict[str, str]]) -> dict[str, Any]:
        execution = bob_sm.start_pipeline_execution(PipelineName=pipeline, PipelineParameters=parameters)[
            "PipelineExecutionArn"
        ]
        return _until(
            lambda: [
                s
                for s in bob_sm.list_pipeline_execution_steps(PipelineExecutionArn=execution)[
                    "PipelineExecutionSteps"
                ]
                if s["StepStatus"] in ("Failed", "Succeeded")
            ],
            "the step's end",
        )[0]

    stolen = failed_step([{"Name": "Input", "Value": "s3://alice-secrets/input/"}])
    assert stolen["StepStatus"] == "Failed" and "TrainingJob" not in stolen.get("Metadata", {})
    assert stolen["FailureReason"].startswith("AccessDeniedException: User: "), stolen["FailureReason"]
    assert "user/bob is not authorized" in stolen["FailureReason"]
    assert "arn:aws:s3:::alice-secrets" in stolen["FailureReason"]

    # Writing into her bucket: the same.
    arguments["OutputDataConfig"] = {"S3OutputPath": "s3://alice-secrets/output"}
    definition["Steps"][0]["Arguments"] = arguments
    bob_sm.update_pipeline(PipelineName=pipeline, PipelineDefinition=json.dumps(definition))
    written = failed_step([])
    assert written["StepStatus"] == "Failed" and "alice-secrets" in written["FailureReason"]
    assert [o["Key"] for o in s3.list_objects_v2(Bucket="alice-secrets").get("Contents", [])] == [
        "input/data.csv"
    ]


def test_the_sdk_keeps_a_users_work_only_in_a_bucket_of_the_users_own(lab: Lab) -> None:
    """Bob makes the bucket alice's SDK would use before she does: her SDK refuses to put her code
    and data in it (he could read them, and change the code her jobs run)."""
    from shipyard.errors import ShipyardError
    from shipyard.sdk._connection import Connection, user_bucket

    bob_s3 = lab.client("bob", "s3")
    bob_s3.create_bucket(Bucket=user_bucket("alice"))
    alice = Connection(lab.server.url, *lab.keys["alice"])
    with pytest.raises(ShipyardError, match="belongs to another user"):
        alice.bucket  # noqa: B018 - made (or found) on first use
    assert "Contents" not in bob_s3.list_objects_v2(Bucket=user_bucket("alice"))
    for _ in range(2):  # one's own: made, then found again (BucketAlreadyOwnedByYou) by a new session
        assert Connection(lab.server.url, *lab.keys["bob"]).bucket == user_bucket("bob")
