"""Experiments on a lab's shared server (``auth = "on"``): a user's experiments, trials and trial
components, and the trial components of their jobs, are invisible and untouchable to another
user; the administrator sees everything. boto3 only, as each student's notebook would call."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from shipyard.services.identity import ADMIN_CREDENTIALS, read_credentials
from tests._support import boto_client

ACCOUNT = "000000000000"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ShipyardExecutionRole"
IMAGE = "236514542706.dkr.ecr.us-east-1.amazonaws.com/sagemaker-base-python-310:1.0"


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with ServerProcess(tmp_path_factory.mktemp("experiments-lab"), env={"SHIPYARD_AUTH": "on"}) as server:
        admin = read_credentials(server.data_dir / ADMIN_CREDENTIALS)
        assert admin is not None
        keys = {"admin": admin}
        iam = boto_client("iam", server.url, aws_access_key_id=admin[0], aws_secret_access_key=admin[1])
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": ["sagemaker:*", "s3:*"], "Resource": "*"},
                {"Effect": "Allow", "Action": "iam:PassRole", "Resource": ROLE},
            ],
        }
        for user in ("alice", "bob"):
            iam.create_user(UserName=user)
            iam.put_user_policy(UserName=user, PolicyName="work", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = (key["AccessKeyId"], key["SecretAccessKey"])

        def client(who: str, service: str = "sagemaker") -> Any:
            key, secret = keys[who]
            return boto_client(service, server.url, aws_access_key_id=key, aws_secret_access_key=secret)

        yield {who: client for who in keys} | {"client": client}


def _denied(call: Any, action: str) -> None:
    with pytest.raises(ClientError) as refused:
        call()
    error = refused.value.response["Error"]
    assert error["Code"] == "AccessDeniedException", error
    assert f"user/bob is not authorized to perform: {action}" in error["Message"], error["Message"]


def test_a_users_experiments_and_job_components_are_theirs_alone(clients: dict[str, Any]) -> None:
    client = clients["client"]
    alice, bob, admin = client("alice"), client("bob"), client("admin")
    alice.create_experiment(ExperimentName="alice-exp")
    alice.create_trial(TrialName="alice-trial", ExperimentName="alice-exp")
    alice.create_trial_component(TrialComponentName="alice-run")
    alice.associate_trial_component(TrialComponentName="alice-run", TrialName="alice-trial")
    client("alice", "s3").create_bucket(Bucket="alice-data")
    alice.create_training_job(
        TrainingJobName="alice-job",
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        HyperParameters={"sagemaker_program": '"train.py"'},
        OutputDataConfig={"S3OutputPath": "s3://alice-data/out"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
        ExperimentConfig={"ExperimentName": "alice-exp", "TrialName": "alice-trial"},
    )
    job_arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/alice-job"

    # Invisible: bob's lists and searches leave alice's out; hers and the administrator's show it.
    for who, sees in ((bob, False), (alice, True), (admin, True)):
        names = [e["ExperimentName"] for e in who.list_experiments()["ExperimentSummaries"]]
        assert ("alice-exp" in names) is sees
        found = who.search(Resource="ExperimentTrialComponent")["Results"]
        names = {r["TrialComponent"]["TrialComponentName"] for r in found}
        assert names == ({"alice-run", "alice-job-aws-training-job"} if sees else set())
        listed = who.list_trial_components(SourceArn=job_arn)["TrialComponentSummaries"]
        assert bool(listed) is sees

    # Untouchable: each call refused naming the action, the job's component through its job.
    _denied(lambda: bob.describe_experiment(ExperimentName="alice-exp"), "sagemaker:DescribeExperiment")
    _denied(
        lambda: bob.create_trial(TrialName="bob-trial", ExperimentName="alice-exp"), "sagemaker:CreateTrial"
    )
    _denied(
        lambda: bob.describe_trial_component(TrialComponentName="alice-job-aws-training-job"),
        "sagemaker:DescribeTrialComponent",
    )
    _denied(
        lambda: bob.delete_trial_component(TrialComponentName="alice-run"), "sagemaker:DeleteTrialComponent"
    )
    metrics = client("bob", "sagemaker-metrics")
    _denied(
        lambda: metrics.batch_put_metrics(
            TrialComponentName="alice-run", MetricData=[{"MetricName": "loss", "Value": 1.0, "Timestamp": 0}]
        ),
        "sagemaker:BatchPutMetrics",
    )
    bob.create_trial_component(TrialComponentName="bob-run")
    _denied(
        lambda: bob.associate_trial_component(TrialComponentName="bob-run", TrialName="alice-trial"),
        "sagemaker:AssociateTrialComponent",
    )
    artifact = alice.create_artifact(ArtifactType="Dataset", Source={"SourceUri": "s3://alice-data/x"})[
        "ArtifactArn"
    ]
    assert bob.list_artifacts()["ArtifactSummaries"] == []
    _denied(lambda: bob.describe_artifact(ArtifactArn=artifact), "sagemaker:DescribeArtifact")
    run_arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:experiment-trial-component/alice-run"
    _denied(
        lambda: bob.add_association(SourceArn=artifact, DestinationArn=run_arn), "sagemaker:AddAssociation"
    )
    alice.add_association(SourceArn=artifact, DestinationArn=run_arn, AssociationType="ContributedTo")
    assert bob.list_associations()["AssociationSummaries"] == []
    assert len(alice.list_associations(SourceArn=artifact)["AssociationSummaries"]) == 1
    components = alice.list_trial_components(TrialName="alice-trial")["TrialComponentSummaries"]
    assert sorted(c["TrialComponentName"] for c in components) == ["alice-job-aws-training-job", "alice-run"]


def test_a_users_contexts_actions_lineage_and_metric_series_are_theirs_alone(clients: dict[str, Any]) -> None:
    client = clients["client"]
    alice, bob, admin = client("alice"), client("bob"), client("admin")
    context = alice.create_context(
        ContextName="alice-endpoint", Source={"SourceUri": "alice-ep"}, ContextType="Endpoint"
    )["ContextArn"]
    action = alice.create_action(
        ActionName="alice-deploy", Source={"SourceUri": "alice-model"}, ActionType="ModelDeployment"
    )["ActionArn"]
    alice.add_association(SourceArn=action, DestinationArn=context)
    _denied(lambda: bob.describe_context(ContextName="alice-endpoint"), "sagemaker:DescribeContext")
    _denied(lambda: bob.delete_action(ActionName="alice-deploy"), "sagemaker:DeleteAction")
    assert bob.list_contexts()["ContextSummaries"] == [] and bob.list_actions()["ActionSummaries"] == []
    assert [c["ContextArn"] for c in admin.list_contexts()["ContextSummaries"]] == [context]
    _denied(lambda: bob.query_lineage(StartArns=[context]), "sagemaker:QueryLineage")
    assert alice.query_lineage(StartArns=[context])["Vertices"] == [
        {"Arn": action, "LineageType": "Action", "Type": "ModelDeployment"}
    ]
    # Bob's own context, associated (by the administrator) with alice's action: bob's query from it
    # leaves alice's action out, and the edge to it.
    mine = bob.create_context(
        ContextName="bob-endpoint", Source={"SourceUri": "bob-ep"}, ContextType="Endpoint"
    )["ContextArn"]
    admin.add_association(SourceArn=action, DestinationArn=mine)
    seen = bob.query_lineage(StartArns=[mine], IncludeEdges=True)
    assert seen["Vertices"] == [] and seen["Edges"] == []
    assert len(admin.query_lineage(StartArns=[mine], IncludeEdges=True)["Edges"]) == 1

    metrics = {who: client(who, "sagemaker-metrics") for who in ("alice", "bob")}
    alice.create_trial_component(TrialComponentName="alice-series")
    metrics["alice"].batch_put_metrics(
        TrialComponentName="alice-series", MetricData=[{"MetricName": "loss", "Value": 0.5, "Timestamp": 0}]
    )
    query = {
        "MetricName": "loss",
        "ResourceArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:experiment-trial-component/alice-series",
        "MetricStat": "Last",
        "Period": "OneHour",
        "XAxisType": "Timestamp",
    }
    [result] = metrics["alice"].batch_get_metrics(MetricQueries=[query])["MetricQueryResults"]
    assert result["MetricValues"] == [0.5]
    _denied(lambda: metrics["bob"].batch_get_metrics(MetricQueries=[query]), "sagemaker:BatchGetMetrics")
