"""SageMaker ML Lineage as the sagemaker SDK 2.x's lineage classes use it, unchanged: a Context and
an Action made with ``Context.create``/``Action.create``, associated with artifacts and a training
job's trial component, then walked with ``LineageQuery`` and the helpers built on it
(``EndpointContext.dataset_artifacts``/``training_job_arns``, ``ModelArtifact.endpoint_contexts``,
``Context.actions``); and ``Run.log_metric`` read back through BatchGetMetrics."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shipyard.server import ServerProcess
from tests._support import boto_client

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
IMAGE = "236514542706.dkr.ecr.us-east-1.amazonaws.com/sagemaker-base-python-310:1.0"


@pytest.fixture(scope="module")
def session(server: ServerProcess) -> Iterator[Any]:
    import boto3

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", server.url)
        patch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
        import sagemaker

        boto_session = boto3.Session(
            aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"
        )
        yield sagemaker.Session(
            boto_session=boto_session,
            sagemaker_client=boto_client("sagemaker", server.url),
            sagemaker_metrics_client=boto_client("sagemaker-metrics", server.url),
            default_bucket="sdk-lineage",
        )


def _training_job(sm: Any, name: str) -> str:
    """A training job; it fails at once (there is no train.py), which is all the lineage needs:
    its trial component exists with it."""
    sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        HyperParameters={"sagemaker_program": '"train.py"'},
        OutputDataConfig={"S3OutputPath": "s3://sdk-lineage/out"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 60},
    )
    return str(sm.describe_training_job(TrainingJobName=name)["TrainingJobArn"])


def test_lineage_query_walks_what_the_sdks_classes_made(session: Any) -> None:
    from sagemaker.lineage.action import Action
    from sagemaker.lineage.artifact import Artifact, DatasetArtifact, ModelArtifact
    from sagemaker.lineage.association import Association
    from sagemaker.lineage.context import Context, EndpointContext
    from sagemaker.lineage.query import (
        LineageEntityEnum,
        LineageFilter,
        LineageQuery,
        LineageQueryDirectionEnum,
        LineageSourceEnum,
    )

    sm = session.sagemaker_client
    run = uuid.uuid4().hex[:8]
    job_arn = _training_job(sm, f"fit-{run}")
    component_arn = sm.describe_trial_component(TrialComponentName=f"fit-{run}-aws-training-job")[
        "TrialComponentArn"
    ]
    dataset = Artifact.create(
        artifact_name="train-data",
        source_uri=f"s3://sdk-lineage/{run}/train.csv",
        artifact_type="DataSet",
        sagemaker_session=session,
    )
    model = Artifact.create(
        artifact_name="model",
        source_uri=f"s3://sdk-lineage/{run}/model.tar.gz",
        artifact_type="Model",
        sagemaker_session=session,
    )
    deployment = Action.create(
        action_name=f"deploy-{run}",
        source_uri=model.source.source_uri,
        action_type="ModelDeployment",
        status="Completed",
        properties={"variant": "AllTraffic"},
        sagemaker_session=session,
    )
    endpoint = Context.create(
        context_name=f"endpoint-{run}",
        source_uri=f"arn:aws:sagemaker:us-east-1:000000000000:endpoint/ep-{run}",
        context_type="Endpoint",
        properties={"stage": "prod"},
        sagemaker_session=session,
    )
    for source, destination, kind in (
        (dataset.artifact_arn, component_arn, "ContributedTo"),
        (component_arn, model.artifact_arn, "Produced"),
        (model.artifact_arn, deployment.action_arn, "ContributedTo"),
        (deployment.action_arn, endpoint.context_arn, "AssociatedWith"),
    ):
        Association.create(
            source_arn=source, destination_arn=destination, association_type=kind, sagemaker_session=session
        )

    loaded = Context.load(context_name=f"endpoint-{run}", sagemaker_session=session)
    assert (loaded.context_type, loaded.properties) == ("Endpoint", {"stage": "prod"})
    assert Action.load(action_name=f"deploy-{run}", sagemaker_session=session).status == "Completed"
    [listed] = list(Context.list(source_uri=endpoint.source.source_uri, sagemaker_session=session))
    assert listed.context_arn == endpoint.context_arn

    result = LineageQuery(session).query(
        start_arns=[endpoint.context_arn], direction=LineageQueryDirectionEnum.ASCENDANTS
    )
    assert {(v.arn, v.lineage_entity, v.lineage_source) for v in result.vertices} == {
        (endpoint.context_arn, "Context", "Endpoint"),
        (deployment.action_arn, "Action", "ModelDeployment"),
        (model.artifact_arn, "Artifact", "Model"),
        (component_arn, "TrialComponent", "TrainingJob"),
        (dataset.artifact_arn, "Artifact", "DataSet"),
    }
    assert len(result.edges) == 4 and result.startarn == [endpoint.context_arn]
    jobs = LineageQuery(session).query(
        start_arns=[dataset.artifact_arn],
        direction=LineageQueryDirectionEnum.DESCENDANTS,
        include_edges=False,
        query_filter=LineageFilter(
            entities=[LineageEntityEnum.TRIAL_COMPONENT], sources=[LineageSourceEnum.TRAINING_JOB]
        ),
    )
    assert [v.arn for v in jobs.vertices] == [component_arn]

    # The helpers built on LineageQuery, each turning vertices back into SDK objects.
    endpoint_context = EndpointContext.load(context_name=f"endpoint-{run}", sagemaker_session=session)
    [found] = endpoint_context.dataset_artifacts()
    assert isinstance(found, DatasetArtifact) and found.artifact_arn == dataset.artifact_arn
    assert endpoint_context.training_job_arns() == [job_arn]
    [action] = endpoint_context.actions(direction=LineageQueryDirectionEnum.ASCENDANTS)
    assert isinstance(action, Action) and action.properties == {"variant": "AllTraffic"}
    model_artifact = ModelArtifact.load(artifact_arn=model.artifact_arn, sagemaker_session=session)
    [context] = model_artifact.endpoint_contexts()
    assert isinstance(context, EndpointContext) and context.context_name == f"endpoint-{run}"

    endpoint.delete(disassociate=True)
    assert LineageQuery(session).query(start_arns=[deployment.action_arn]).vertices != []
    assert sm.list_associations(DestinationArn=endpoint.context_arn)["AssociationSummaries"] == []


def test_run_log_metric_reads_back_through_batch_get_metrics(session: Any) -> None:
    from sagemaker.experiments.run import Run

    experiment = f"metrics-{uuid.uuid4().hex[:8]}"
    with Run(experiment_name=experiment, run_name="curve", sagemaker_session=session) as run:
        for step, loss in enumerate([0.9, 0.5, 0.4, 0.1]):
            run.log_metric("loss", loss, step=step)
        component_arn = run._trial_component.trial_component_arn
    metrics = session.sagemaker_metrics_client  # the client Run logged through
    query = {
        "MetricName": "loss",
        "ResourceArn": component_arn,
        "MetricStat": "Avg",
        "Period": "IterationNumber",
        "XAxisType": "IterationNumber",
    }
    [by_step, overall] = metrics.batch_get_metrics(
        MetricQueries=[query, {**query, "Period": "OneHour", "XAxisType": "Timestamp", "MetricStat": "Min"}]
    )["MetricQueryResults"]
    assert by_step["Status"] == "Complete"
    assert (by_step["XAxisValues"], by_step["MetricValues"]) == ([0, 1, 2, 3], [0.9, 0.5, 0.4, 0.1])
    assert overall["Status"] == "Complete" and min(overall["MetricValues"]) == 0.1
