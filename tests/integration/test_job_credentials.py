"""Per-job credentials on a server with authentication on: a job acts with its own session
credentials, scoped to what it needs, never the server's key; they end with the job."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.core.clock import ManualClock
from shipyard.core.policy import ADMINISTRATOR
from shipyard.server import ServerProcess
from shipyard.services.credentials import CredentialService
from shipyard.store import Database
from shipyard.store.credentials import CredentialRepository
from tests._support import boto_client, tgz

MASTER_KEY, MASTER_SECRET = "AKIDSHIPYARDADMIN", "master-s3cret-never-in-a-job"
ROLE = "arn:aws:iam::000000000000:role/service-role/SageMakerRole"
# A remote function image: the site's Python with the sagemaker SDK, so boto3 is there, built at once.
IMAGE = "236514542706.dkr.ecr.us-east-1.amazonaws.com/sagemaker-base-python-310:1.0"
BUCKET, OTHER = "team-data", "other-team"

# The job tries what its credentials should and should not allow, and reports each answer.
SCRIPT = r"""
import json, os, urllib.error, urllib.request
import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError

job, bucket, other = os.environ["TRAINING_JOB_NAME"], "team-data", "other-team"
s3, sm = boto3.client("s3"), boto3.client("sagemaker")


def attempt(call):
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"]
    return "ok"


def native():
    url = os.environ["AWS_ENDPOINT_URL"] + "/api/v1/training-jobs"
    request = AWSRequest("GET", url)
    SigV4Auth(boto3.Session().get_credentials(), "sagemaker", os.environ["AWS_DEFAULT_REGION"]).add_auth(request)
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=dict(request.headers))).status
    except urllib.error.HTTPError as exc:
        return exc.code


child = {
    "TrainingJobName": job + "-child",
    "RoleArn": os.environ["ROLE"],
    "AlgorithmSpecification": {"TrainingImage": os.environ["IMAGE"], "TrainingInputMode": "File"},
    "InputDataConfig": [
        {"ChannelName": "loot", "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{other}/"}}}
    ],
    "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/output/{job}/children"},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
    "StoppingCondition": {"MaxRuntimeInSeconds": 60},
}
credentials = boto3.Session().get_credentials()
report = {
    "read_input": attempt(lambda: s3.get_object(Bucket=bucket, Key="input/train/data.csv")["Body"].read()),
    "list_input": attempt(lambda: s3.list_objects_v2(Bucket=bucket, Prefix="input/train/")),
    "write_output": attempt(lambda: s3.put_object(Bucket=bucket, Key=f"output/{job}/notes.txt", Body=b"hi")),
    "list_bucket": attempt(lambda: s3.list_objects_v2(Bucket=bucket)),
    "read_other_job": attempt(lambda: s3.get_object(Bucket=bucket, Key="output/other-job/output/model.tar.gz")),
    "write_other_job": attempt(lambda: s3.put_object(Bucket=bucket, Key="output/other-job/x", Body=b"x")),
    "read_other_bucket": attempt(lambda: s3.get_object(Bucket=other, Key="secret.txt")),
    "list_buckets": attempt(lambda: s3.list_buckets()),
    "describe_self": attempt(lambda: sm.describe_training_job(TrainingJobName=job)),
    "delete_endpoint": attempt(lambda: sm.delete_endpoint(EndpointName="production")),
    "launch_with_other_data": attempt(lambda: sm.create_training_job(**child)),
    "caller": boto3.client("sts").get_caller_identity()["Arn"],
    "native_api": native(),
    "environ": dict(os.environ),
    "credentials": [credentials.access_key, credentials.secret_key, credentials.token],
}
print("REPORT " + json.dumps(report))
"""


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {"SHIPYARD_ACCESS_KEY_ID": MASTER_KEY, "SHIPYARD_SECRET_ACCESS_KEY": MASTER_SECRET}
    with ServerProcess(tmp_path_factory.mktemp("secured"), env=env) as server:
        yield server


def _admin(service: str, server: ServerProcess) -> Any:
    return boto_client(service, server.url, aws_access_key_id=MASTER_KEY, aws_secret_access_key=MASTER_SECRET)


def _as(service: str, server: ServerProcess, key: str, secret: str, token: str) -> Any:
    return boto_client(
        service, server.url, aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token
    )


def test_a_job_acts_with_its_own_scoped_credentials_which_end_with_it(secured: ServerProcess) -> None:
    s3, sm = _admin("s3", secured), _admin("sagemaker", secured)
    for bucket in (BUCKET, OTHER):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=BUCKET, Key="input/train/data.csv", Body=b"1,2\n")
    s3.put_object(Bucket=BUCKET, Key="output/other-job/output/model.tar.gz", Body=b"theirs")
    s3.put_object(Bucket=OTHER, Key="secret.txt", Body=b"not yours")
    name = f"creds-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=BUCKET, Key=f"code/{name}/sourcedir.tar.gz", Body=tgz({"train.py": SCRIPT}))
    sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        HyperParameters={
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": json.dumps(f"s3://{BUCKET}/code/{name}/sourcedir.tar.gz"),
        },
        InputDataConfig=[
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/input/train"}
                },
            }
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
        Environment={"ROLE": ROLE, "IMAGE": IMAGE},
    )
    deadline = time.monotonic() + 300
    while (job := sm.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.05)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    events = _admin("logs", secured).filter_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/"
    )["events"]
    report = json.loads(next(e["message"] for e in events if e["message"].startswith("REPORT "))[7:])

    # What it needs works; everything else is AccessDenied.
    assert {k: report[k] for k in ("read_input", "list_input", "write_output", "describe_self")} == {
        "read_input": "ok",
        "list_input": "ok",
        "write_output": "ok",
        "describe_self": "ok",
    }
    for probe in ("list_bucket", "read_other_job", "write_other_job", "read_other_bucket", "list_buckets"):
        assert report[probe] == "AccessDenied", probe
    assert report["delete_endpoint"] == "AccessDeniedException"
    assert report["launch_with_other_data"] == "AccessDeniedException"
    with pytest.raises(ClientError, match="TrainingJob"):
        sm.describe_training_job(TrainingJobName=f"{name}-child")  # never created
    assert report["native_api"] == 403
    assert report["caller"] == f"arn:aws:sts::000000000000:assumed-role/SageMakerRole/{name}"
    assert s3.get_object(Bucket=BUCKET, Key=f"output/{name}/notes.txt")["Body"].read() == b"hi"
    # The server's key is nowhere the job can see: not in its environment, not in agent.json.
    key, secret, token = report["credentials"]
    assert key.startswith("ASIA") and token
    assert report["environ"]["AWS_ACCESS_KEY_ID"] == key
    assert MASTER_SECRET not in json.dumps(report["environ"]) and MASTER_KEY not in json.dumps(
        report["environ"]
    )
    config = secured.data_dir / "jobs" / name / "attempt-0" / "algo-1" / "agent.json"
    assert config.stat().st_mode & 0o777 == 0o600
    assert MASTER_SECRET not in config.read_text()
    # The job ended: its credentials with it.
    with pytest.raises(ClientError) as refused:
        _as("s3", secured, key, secret, token).get_object(Bucket=BUCKET, Key="input/train/data.csv")
    assert refused.value.response["Error"]["Code"] == "InvalidToken"
    with pytest.raises(ClientError) as refused:
        _as("sagemaker", secured, key, secret, token).describe_training_job(TrainingJobName=name)
    assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert "The security token included in the request is invalid" in str(refused.value)


def test_expired_and_forged_session_credentials_are_refused(secured: ServerProcess) -> None:
    """Credentials issued (into the server's own store) by a service whose clock says a day ago,
    for an hour: expired by the server's clock. A right key with another token is refused too."""
    db = Database(f"sqlite:///{Path(secured.data_dir) / 'shipyard.db'}")
    try:
        day_ago = ManualClock(dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        service = CredentialService(CredentialRepository(db), account_id="000000000000", clock=day_ago)
        old = service.issue(
            "arn:aws:sagemaker:us-east-1:000000000000:training-job/old",
            ADMINISTRATOR,
            dt.timedelta(hours=1),
            principal="arn:aws:sts::000000000000:assumed-role/R/old",
        )
        live = CredentialService(CredentialRepository(db), account_id="000000000000").issue(
            "arn:x",
            ADMINISTRATOR,
            dt.timedelta(hours=1),
            principal="arn:aws:sts::000000000000:assumed-role/R/x",
        )
    finally:
        db.engine.dispose()
    expired = _as("sagemaker", secured, old.access_key_id, old.secret_access_key, old.session_token)
    with pytest.raises(ClientError) as refused:
        expired.list_training_jobs()
    assert refused.value.response["Error"]["Code"] == "ExpiredTokenException"
    assert "The security token included in the request is expired" in str(refused.value)
    forged = _as("s3", secured, live.access_key_id, live.secret_access_key, "not-its-token")
    with pytest.raises(ClientError) as refused:
        forged.list_buckets()
    assert refused.value.response["Error"]["Code"] == "InvalidToken"
    without = boto_client(
        "s3", secured.url, aws_access_key_id=live.access_key_id, aws_secret_access_key=live.secret_access_key
    )
    with pytest.raises(ClientError) as refused:
        without.list_buckets()
    assert "must carry its session token" in refused.value.response["Error"]["Message"]
    # The live one, with its token, does what its policy says (here: everything).
    assert _as("s3", secured, live.access_key_id, live.secret_access_key, live.session_token).list_buckets()
