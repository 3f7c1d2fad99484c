"""Per-job credentials: what a job's scope allows, how requests map to IAM actions, and the
credentials' life (issued at launch, revoked at the end, refused once expired)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from shipyard.api._access import check_session, request_actions
from shipyard.core.credentials import (
    Principal,
    is_session_key,
    job_scope,
    new_session,
    s3_grants,
    unreachable,
)
from shipyard.core.policy import NOTHING, Policy
from shipyard.core.training import TrainingJobSpec
from shipyard.errors import ExpiredSessionToken, InvalidSessionToken
from shipyard.runtime.contract import Outcome
from tests.unit._services import World, params

ACCOUNT = "000000000000"
MASTER_KEY, MASTER_SECRET = "AKIDSHIPYARDADMIN", "master-s3cret"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/service-role/SageMakerRole"

# A CreateTrainingJob request as the sagemaker SDK sends it (hyperparameters JSON-encoded).
TRAINING_REQUEST: dict[str, Any] = {
    "TrainingJobName": "churn-2026-01-01-00-00-00-000",
    "AlgorithmSpecification": {
        "TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
        "TrainingInputMode": "File",
    },
    "RoleArn": ROLE,
    "HyperParameters": {
        "sagemaker_program": '"train.py"',
        "sagemaker_submit_directory": '"s3://sagemaker-us-east-1-000000000000/churn/source/sourcedir.tar.gz"',
        "sagemaker_region": '"us-east-1"',
        "epochs": "3",
    },
    "InputDataConfig": [
        {
            "ChannelName": "train",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": "s3://datasets/churn/train",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
        },
        {
            "ChannelName": "test",
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://datasets/churn/test.csv"}
            },
        },
    ],
    "OutputDataConfig": {"S3OutputPath": "s3://models/churn/"},
    "CheckpointConfig": {"S3Uri": "s3://models/checkpoints/churn-2026"},
    "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
    "StoppingCondition": {"MaxRuntimeInSeconds": 7200},
}
JOB = "churn-2026-01-01-00-00-00-000"


def _job_principal(kind: str = "training", request: dict[str, Any] | None = None, **kw: Any) -> Principal:
    if request is None:
        request = dict(TrainingJobSpec.from_request(TRAINING_REQUEST).request)  # as the job stores it
    scope = job_scope(kind, request, account=ACCOUNT, **kw)
    return Principal(f"arn:aws:sts::{ACCOUNT}:assumed-role/SageMakerRole/{JOB}", (scope,))


def _allowed(principal: Principal, action: str, resource: str, **context: str) -> bool:
    return principal.decide(action, resource, {k.replace("_", ":"): v for k, v in context.items()}).allowed


def test_a_training_jobs_scope_reads_its_inputs_and_code_and_nothing_else() -> None:
    job = _job_principal()
    assert _allowed(job, "s3:GetObject", "arn:aws:s3:::datasets/churn/train/part-0.csv")
    assert _allowed(job, "s3:GetObject", "arn:aws:s3:::datasets/churn/test.csv")
    code = "arn:aws:s3:::sagemaker-us-east-1-000000000000/churn/source/sourcedir.tar.gz"
    assert _allowed(job, "s3:GetObject", code)
    assert not _allowed(job, "s3:GetObject", "arn:aws:s3:::datasets/other/train.csv")
    assert not _allowed(job, "s3:GetObject", "arn:aws:s3:::sagemaker-us-east-1-000000000000/other/x")
    assert not _allowed(job, "s3:PutObject", "arn:aws:s3:::datasets/churn/train/part-0.csv")
    # Listing: its inputs' prefixes only, never a whole bucket.
    assert _allowed(job, "s3:ListBucket", "arn:aws:s3:::datasets", s3_prefix="churn/train/")
    assert not _allowed(job, "s3:ListBucket", "arn:aws:s3:::datasets", s3_prefix="churn/")
    assert not _allowed(job, "s3:ListBucket", "arn:aws:s3:::datasets")
    assert _allowed(job, "s3:GetBucketLocation", "arn:aws:s3:::datasets")
    assert not _allowed(job, "s3:ListAllMyBuckets", "*")


def test_a_training_job_writes_its_own_output_folder_and_checkpoints() -> None:
    job = _job_principal()
    for action in ("s3:PutObject", "s3:GetObject", "s3:AbortMultipartUpload", "s3:DeleteObject"):
        assert _allowed(job, action, f"arn:aws:s3:::models/churn/{JOB}/output/model.tar.gz"), action
        assert _allowed(job, action, "arn:aws:s3:::models/checkpoints/churn-2026/step-10.pt"), action
    # Another job's folder under the same S3OutputPath, and a sibling of the checkpoint prefix.
    assert not _allowed(job, "s3:GetObject", "arn:aws:s3:::models/churn/other-job/output/model.tar.gz")
    assert not _allowed(job, "s3:PutObject", "arn:aws:s3:::models/churn/other-job/output/model.tar.gz")
    assert not _allowed(job, "s3:PutObject", "arn:aws:s3:::models/checkpoints/churn-2026-b/x")
    assert _allowed(job, "s3:ListBucket", "arn:aws:s3:::models", s3_prefix=f"churn/{JOB}/")
    assert not _allowed(job, "s3:ListBucket", "arn:aws:s3:::models", s3_prefix="churn/")


def test_a_remote_function_reaches_its_s3_base_uri() -> None:
    # The sagemaker SDK's @remote and @step drivers read the pickled call from, and write the result
    # to, the folder named by --s3_base_uri: the job's scope must cover it, and only it.
    request = dict(TrainingJobSpec.from_request(TRAINING_REQUEST).request)
    base = "s3://sagemaker-us-east-1-000000000000/remote/fn-2026"
    request["AlgorithmSpecification"] = {
        **request["AlgorithmSpecification"],
        "ContainerArguments": [
            "--region",
            "us-east-1",
            "--s3_base_uri",
            base,
            "--client_python_version",
            "3.11",
        ],
    }
    job = _job_principal(request=request)
    bucket = "arn:aws:s3:::sagemaker-us-east-1-000000000000"
    assert _allowed(job, "s3:GetObject", f"{bucket}/remote/fn-2026/fn/payload.pkl")
    assert _allowed(job, "s3:PutObject", f"{bucket}/remote/fn-2026/results/payload.pkl")
    assert not _allowed(job, "s3:PutObject", f"{bucket}/remote/fn-2026-b/results/payload.pkl")
    assert not _allowed(job, "s3:GetObject", f"{bucket}/remote/other/fn/payload.pkl")
    # Without the flag (or with it last, naming nothing) no such folder is granted.
    assert not _allowed(_job_principal(), "s3:GetObject", f"{bucket}/remote/fn-2026/fn/payload.pkl")


def test_a_job_launches_and_follows_jobs_but_deletes_and_stops_nothing() -> None:
    job = _job_principal()
    training = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/child"
    assert _allowed(job, "sagemaker:CreateTrainingJob", training)
    assert _allowed(job, "sagemaker:DescribeTrainingJob", training)
    assert _allowed(job, "sagemaker:ListTrainingJobs", "*")
    assert _allowed(
        job, "sagemaker:CreateProcessingJob", f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:processing-job/p"
    )
    assert _allowed(job, "sagemaker:DescribePipeline", f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:pipeline/p")
    assert _allowed(
        job, "logs:GetLogEvents", f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs"
    )
    assert _allowed(job, "cloudwatch:PutMetricData", "*")
    assert _allowed(job, "sts:GetCallerIdentity", "*")
    assert _allowed(job, "iam:GetRole", ROLE)
    assert not _allowed(job, "iam:GetRole", f"arn:aws:iam::{ACCOUNT}:role/Admin")
    for action, resource in [
        ("sagemaker:StopTrainingJob", training),
        ("sagemaker:DeleteEndpoint", f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/prod"),
        ("sagemaker:CreateEndpoint", f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/prod"),
        ("sagemaker:DeleteModel", f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:model/m"),
        ("sagemaker:DeletePipeline", f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:pipeline/p"),
        ("sagemaker:StartPipelineExecution", f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:pipeline/p"),
        ("sagemaker:CreateTrainingJob", "*"),
        ("application-autoscaling:RegisterScalableTarget", "*"),
    ]:
        assert not _allowed(job, action, resource), action


def test_processing_and_transform_scopes() -> None:
    processing = {
        "ProcessingJobName": "prep",
        "RoleArn": ROLE,
        "ProcessingInputs": [
            {
                "InputName": "code",
                "S3Input": {"S3Uri": "s3://b/code/prep.py", "LocalPath": "/opt/ml/processing/input/code"},
            },
            {"InputName": "list", "S3Input": {"S3Uri": "s3://b/lists/m.json", "S3DataType": "ManifestFile"}},
        ],
        "ProcessingOutputConfig": {
            "Outputs": [{"OutputName": "o", "S3Output": {"S3Uri": "s3://b/prepared"}}]
        },
    }
    job = _job_principal("processing", processing)
    assert _allowed(job, "s3:GetObject", "arn:aws:s3:::b/code/prep.py")
    assert _allowed(job, "s3:GetObject", "arn:aws:s3:::b/lists/m.json")
    assert not _allowed(job, "s3:GetObject", "arn:aws:s3:::b/lists/m.json.bak")  # a manifest is one object
    assert _allowed(job, "s3:PutObject", "arn:aws:s3:::b/prepared/train.csv")
    assert not _allowed(job, "s3:PutObject", "arn:aws:s3:::b/prepared-other/train.csv")
    transform = {
        "TransformJobName": "score",
        "ModelName": "m",
        "TransformInput": {"DataSource": {"S3DataSource": {"S3Uri": "s3://b/batch/in"}}},
        "TransformOutput": {"S3OutputPath": "s3://b/batch/out"},
    }
    model = {
        "model_data_url": "s3://b/models/model.tar.gz",
        "environment": {"SAGEMAKER_SUBMIT_DIRECTORY": "s3://b/models/code.tar.gz"},
    }
    job = _job_principal("transform", transform, model=model)
    assert _allowed(job, "s3:GetObject", "arn:aws:s3:::b/batch/in/1.csv")
    assert _allowed(job, "s3:GetObject", "arn:aws:s3:::b/models/model.tar.gz")
    assert _allowed(job, "s3:GetObject", "arn:aws:s3:::b/models/code.tar.gz")
    assert not _allowed(job, "s3:GetObject", "arn:aws:s3:::b/models/other.tar.gz")
    assert _allowed(job, "s3:PutObject", "arn:aws:s3:::b/batch/out/1.csv.out")


def test_the_scope_survives_the_store_as_a_policy_document() -> None:
    scope = job_scope("training", TRAINING_REQUEST, account=ACCOUNT)
    assert Policy.from_document(scope.to_document()) == scope


def test_a_job_may_launch_a_job_only_with_data_it_reaches_itself() -> None:
    parent = _job_principal()
    inside = {
        **TRAINING_REQUEST,
        "TrainingJobName": "child",
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3Uri": "s3://datasets/churn/train/2026"}},
            }
        ],
        "HyperParameters": {
            "sagemaker_submit_directory": f'"s3://models/churn/{JOB}/child/sourcedir.tar.gz"'
        },
        "OutputDataConfig": {"S3OutputPath": f"s3://models/churn/{JOB}/children"},
        "CheckpointConfig": {"S3Uri": f"s3://models/churn/{JOB}/children/checkpoints"},
    }
    assert unreachable(parent, s3_grants("training", inside)) == []
    wider = {
        **inside,
        "InputDataConfig": [
            {"ChannelName": "all", "DataSource": {"S3DataSource": {"S3Uri": "s3://datasets/"}}}
        ],
    }
    assert ("s3:GetObject", "arn:aws:s3:::datasets/*") in unreachable(parent, s3_grants("training", wider))
    elsewhere = {**inside, "OutputDataConfig": {"S3OutputPath": "s3://models/churn"}}  # other jobs' folders
    assert ("s3:PutObject", "arn:aws:s3:::models/churn/child/*") in unreachable(
        parent, s3_grants("training", elsewhere)
    )


def _get(path: str, **query: str) -> dict[str, Any]:
    return {"method": "GET", "path": path, "query": query, "headers": {}}


@pytest.mark.parametrize(
    ("protocol", "request_", "expected"),
    [
        ("s3", _get("/"), [("s3:ListAllMyBuckets", "*", {})]),
        ("s3", _get("/data/train/a%20b.csv"), [("s3:GetObject", "arn:aws:s3:::data/train/a b.csv", {})]),
        ("s3", {**_get("/data/k"), "method": "HEAD"}, [("s3:GetObject", "arn:aws:s3:::data/k", {})]),
        ("s3", {**_get("/data/k"), "method": "PUT"}, [("s3:PutObject", "arn:aws:s3:::data/k", {})]),
        ("s3", {**_get("/data/k"), "method": "DELETE"}, [("s3:DeleteObject", "arn:aws:s3:::data/k", {})]),
        (
            "s3",
            _get("/data", **{"list-type": "2", "prefix": "train/"}),
            [("s3:ListBucket", "arn:aws:s3:::data", {"s3:prefix": "train/"})],
        ),
        ("s3", _get("/data"), [("s3:ListBucket", "arn:aws:s3:::data", {})]),
        ("s3", _get("/data", location=""), [("s3:GetBucketLocation", "arn:aws:s3:::data", {})]),
        ("s3", {**_get("/data"), "method": "PUT"}, [("s3:CreateBucket", "arn:aws:s3:::data", {})]),
        (
            "s3",
            {**_get("/data/big", uploads=""), "method": "POST"},
            [("s3:PutObject", "arn:aws:s3:::data/big", {})],
        ),
        (
            "s3",
            {**_get("/data/big", uploadId="u1"), "method": "DELETE"},
            [("s3:AbortMultipartUpload", "arn:aws:s3:::data/big", {})],
        ),
        (
            "s3",
            {**_get("/out/copy"), "method": "PUT", "headers": {"x-amz-copy-source": "/data/train/a.csv"}},
            [
                ("s3:PutObject", "arn:aws:s3:::out/copy", {}),
                ("s3:GetObject", "arn:aws:s3:::data/train/a.csv", {}),
            ],
        ),
        (
            "s3",
            {**_get("/k.csv"), "headers": {"host": "data.localhost:8300"}},
            [("s3:GetObject", "arn:aws:s3:::data/k.csv", {})],
        ),
        (
            "json",
            {
                **_get("/"),
                "method": "POST",
                "target": "SageMaker.DeleteEndpoint",
                "body": b'{"EndpointName": "Prod"}',
            },
            [("sagemaker:DeleteEndpoint", f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:endpoint/prod", {})],
        ),
        (
            "json",
            {
                **_get("/"),
                "method": "POST",
                "target": "SageMaker.DescribeEndpointConfig",
                "body": b'{"EndpointConfigName": "c"}',
            },
            [
                (
                    "sagemaker:DescribeEndpointConfig",
                    f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:endpoint-config/c",
                    {},
                )
            ],
        ),
        (
            "json",
            {
                **_get("/"),
                "method": "POST",
                "target": "SageMaker.CreateTransformJob",
                "body": b'{"TransformJobName": "t", "ModelName": "m"}',
            },
            [("sagemaker:CreateTransformJob", f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:transform-job/t", {})],
        ),
        (
            "json",
            {**_get("/"), "method": "POST", "target": "SageMaker.ListTrainingJobs", "body": b"{}"},
            [("sagemaker:ListTrainingJobs", "*", {})],
        ),
        (
            "json",
            {
                **_get("/"),
                "method": "POST",
                "target": "Logs_20140328.GetLogEvents",
                "body": b'{"logGroupName": "/aws/sagemaker/TrainingJobs", "logStreamName": "j/algo-1"}',
            },
            [
                (
                    "logs:GetLogEvents",
                    f"arn:aws:logs:eu-west-1:{ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs:log-stream:j/algo-1",
                    {},
                )
            ],
        ),
        (
            "json",
            {
                **_get("/"),
                "method": "POST",
                "target": "GraniteServiceVersion20100801.PutMetricData",
                "body": b"{}",
            },
            [("cloudwatch:PutMetricData", "*", {})],
        ),
        (
            "query",
            {
                **_get("/"),
                "method": "POST",
                "service": "iam",
                "body": b"Action=GetRole&RoleName=SageMakerRole",
            },
            [("iam:GetRole", f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole", {})],
        ),
        (
            "query",
            {**_get("/"), "method": "POST", "service": "sts", "body": b"Action=GetCallerIdentity"},
            [("sts:GetCallerIdentity", "*", {})],
        ),
        (
            "runtime",
            {**_get("/endpoints/Prod/invocations"), "method": "POST"},
            [("sagemaker:InvokeEndpoint", f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:endpoint/prod", {})],
        ),
    ],
)
def test_request_actions_name_the_permission_each_request_needs(
    protocol: str, request_: dict[str, Any], expected: list[tuple[str, str, dict[str, str]]]
) -> None:
    found = request_actions(protocol, region="eu-west-1", account=ACCOUNT, **request_)
    assert [(r.action, r.resource, dict(r.context)) for r in found] == expected


# -- the credentials themselves --------------------------------------------------------------------
def test_session_credentials_look_like_sts_ones_and_do_not_print_their_secret() -> None:
    session = new_session("arn:x", "arn:y", Policy(()), dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert is_session_key(session.access_key_id) and len(session.access_key_id) == 20
    assert session.access_key_id[4:].isupper() or session.access_key_id[4:].isalnum()
    assert len(session.secret_access_key) == 40 and len(session.session_token) >= 100
    assert session.secret_access_key not in repr(session) and session.session_token not in repr(session)
    assert not is_session_key("AKIDSHIPYARD") and not is_session_key("asia0123456789abcdef")


def test_a_session_key_needs_its_own_unexpired_token() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    session = new_session("arn:x", "arn:y", Policy(()), now + dt.timedelta(hours=1))
    key = session.access_key_id
    assert check_session(session, key, session.session_token, now) is session
    with pytest.raises(InvalidSessionToken, match="must carry its session token"):
        check_session(session, key, "", now)
    with pytest.raises(InvalidSessionToken, match=f"is not the session token of {key}"):
        check_session(session, key, "another", now)
    with pytest.raises(InvalidSessionToken, match="unknown or was revoked"):
        check_session(None, key, session.session_token, now)
    with pytest.raises(ExpiredSessionToken, match="The security token included in the request is expired"):
        check_session(session, key, session.session_token, now + dt.timedelta(hours=1))


def test_each_launch_gets_its_own_credentials_which_end_with_the_job(world: World) -> None:
    world.create("j1", count=2)
    world.scheduler.tick()
    algo1, algo2 = world.backend.instances("j1")
    api = algo1.config.api
    assert api is not None and is_session_key(api.access_key_id) and api.session_token
    assert algo2.config.api == api  # one credential per attempt, for all its instances
    assert algo1.folder.config_path.stat().st_mode & 0o777 == 0o600
    session = world.credentials.lookup(api.access_key_id)
    assert session is not None and session.owner == world.job("j1").arn
    assert session.principal == "arn:aws:sts::000000000000:assumed-role/r/j1"
    # MaxRuntimeInSeconds (3600) plus the hour's margin.
    assert session.expiration == world.clock.now() + dt.timedelta(seconds=7200)
    assert api.expiration == session.expiration.isoformat()
    algo1.end()
    algo2.end(Outcome.FAILED, exit_code=1, failure_reason="AlgorithmError: boom")
    world.scheduler.tick()
    assert world.job("j1").state.status == "Failed"
    assert world.credentials.lookup(api.access_key_id) is None


def test_a_retried_attempt_gets_new_credentials_and_the_lost_ones_end(world: World) -> None:
    world.training.create(params("j1", retries=1), region="eu-west-1")
    world.scheduler.tick()
    (first,) = world.backend.instances("j1")
    first.die("the node went away")
    world.scheduler.tick()  # the attempt is lost: the job is retried
    world.scheduler.tick()
    (second,) = world.backend.instances("j1")
    assert first.config.api is not None and second.config.api is not None
    assert second.config.api.access_key_id != first.config.api.access_key_id
    assert world.credentials.lookup(first.config.api.access_key_id) is None
    assert world.credentials.lookup(second.config.api.access_key_id) is not None


@pytest.mark.parametrize("how", ["stopped", "lost"])
def test_credentials_end_on_every_way_a_job_ends(world: World, how: str) -> None:
    world.create("j1")
    world.scheduler.tick()
    (instance,) = world.backend.instances("j1")
    assert instance.config.api is not None
    key = instance.config.api.access_key_id
    if how == "stopped":
        world.training.stop("j1")
        instance.end(Outcome.STOPPED)
    else:
        instance.die()
    world.scheduler.tick()
    assert world.job("j1").state.status.is_terminal
    assert world.credentials.lookup(key) is None


def test_expired_credentials_are_purged(world: World) -> None:
    session = world.credentials.issue("arn:x", NOTHING, dt.timedelta(minutes=5), principal="arn:y")
    world.clock.advance(299)
    world.credentials.tick()
    assert world.credentials.lookup(session.access_key_id) is not None
    world.clock.advance(120)
    world.credentials.tick()  # the first purge is due at once, the next a minute on
    assert world.credentials.lookup(session.access_key_id) is None


def test_agents_do_not_inherit_the_servers_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from shipyard.compute._base import agent_env

    for name in (
        "SHIPYARD_SECRET_ACCESS_KEY",
        "SHIPYARD_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.setenv(name, "server-secret")
    assert "server-secret" not in agent_env().values()


def test_remote_agents_reach_the_servers_s3_api_with_their_jobs_credentials(tmp_path: Any) -> None:
    from shipyard.config import Settings
    from shipyard.runtime.contract import JobApi, StoreAccess
    from shipyard.services._platform import _agent_store_config

    settings = Settings(data_dir=tmp_path, access_key_id=MASTER_KEY, secret_access_key=MASTER_SECRET)
    template = StoreAccess.from_json(_agent_store_config(settings, remote=True))
    assert MASTER_SECRET not in str(template.to_json()) and template.job_credentials
    api = JobApi("http://server:8300", "ASIAAAAAAAAAAAAAAAAA", "s" * 40, "token", "2026-01-01T01:00:00+00:00")
    signed = template.signed_as(api)
    assert (signed.access_key_id, signed.secret_access_key, signed.session_token) == (
        api.access_key_id,
        "s" * 40,
        "token",
    )
    assert StoreAccess.from_json(signed.to_json()) == signed
    real_s3 = StoreAccess(
        "s3", endpoint_url="https://s3.example", access_key_id="SITE", secret_access_key="x"
    )
    assert real_s3.signed_as(api) == real_s3  # the site's own store keeps its keys
