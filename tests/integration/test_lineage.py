"""SageMaker lineage through boto3 against a real server: contexts and actions (create, describe
by name or ARN, update, list with filters and pages, tags, delete), associations joining them with
artifacts and trial components, QueryLineage over them, and BatchGetMetrics reading back what
BatchPutMetrics logged."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client

ACCOUNT = "000000000000"


def _error(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as failed:
        call()
    error = failed.value.response["Error"]
    return error["Code"], error["Message"]


def test_contexts_and_actions_answer_as_sagemaker_does(server: ServerProcess) -> None:
    sm = boto_client("sagemaker", server.url)
    run = uuid.uuid4().hex[:8]
    endpoint_uri = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/ep-{run}"
    arn = sm.create_context(
        ContextName=f"Ep-{run}",
        Source={"SourceUri": endpoint_uri, "SourceType": "ARN"},
        ContextType="Endpoint",
        Description="the churn endpoint",
        Properties={"stage": "prod"},
        Tags=[{"Key": "team", "Value": "ml"}],
    )["ContextArn"]
    assert arn == f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:context/ep-{run}"  # lower-cased, as SageMaker's
    code, message = _error(
        lambda: sm.create_context(ContextName=f"ep-{run}", Source={"SourceUri": "x"}, ContextType="Endpoint")
    )
    assert code == "ValidationException" and "already exists" in message
    for name in (f"ep-{run}", arn):
        described = sm.describe_context(ContextName=name)
        assert described["ContextName"] == f"Ep-{run}" and described["ContextArn"] == arn
        assert described["Source"]["SourceUri"] == endpoint_uri and described["Properties"] == {
            "stage": "prod"
        }
    assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "team", "Value": "ml"}]
    sm.update_context(ContextName=f"ep-{run}", Properties={"owner": "ana"}, PropertiesToRemove=["stage"])
    assert sm.describe_context(ContextName=arn)["Properties"] == {"owner": "ana"}
    for i in range(3):
        sm.create_context(
            ContextName=f"other-{run}-{i}", Source={"SourceUri": f"s3://b/{run}"}, ContextType="Data"
        )

    # Lists filter by SourceUri and type, and page in the order asked.
    assert [c["ContextArn"] for c in sm.list_contexts(SourceUri=endpoint_uri)["ContextSummaries"]] == [arn]
    first = sm.list_contexts(ContextType="Data", MaxResults=2, SortBy="Name", SortOrder="Ascending")
    rest = sm.list_contexts(
        ContextType="Data", MaxResults=2, SortBy="Name", SortOrder="Ascending", NextToken=first["NextToken"]
    )
    names = [c["ContextName"] for c in first["ContextSummaries"] + rest["ContextSummaries"]]
    assert names[-3:] == [f"other-{run}-0", f"other-{run}-1", f"other-{run}-2"] and "NextToken" not in rest
    later = sm.list_contexts(CreatedAfter=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert later["ContextSummaries"] == []

    action_arn = sm.create_action(
        ActionName=f"deploy-{run}",
        Source={"SourceUri": f"s3://b/{run}/model.tar.gz"},
        ActionType="ModelDeployment",
        Status="InProgress",
    )["ActionArn"]
    assert action_arn.endswith(f":action/deploy-{run}")
    sm.update_action(ActionName=f"deploy-{run}", Status="Completed")
    assert sm.describe_action(ActionName=f"deploy-{run}")["Status"] == "Completed"
    [summary] = sm.list_actions(ActionType="ModelDeployment", SourceUri=f"s3://b/{run}/model.tar.gz")[
        "ActionSummaries"
    ]
    assert (summary["ActionArn"], summary["Status"]) == (action_arn, "Completed")
    code, message = _error(
        lambda: sm.create_action(ActionName="bad_name", Source={"SourceUri": "x"}, ActionType="t")
    )
    assert code == "ValidationException" and "actionName" in message

    # Deleting a context takes its associations with it; a missing one is ResourceNotFound.
    sm.add_association(SourceArn=action_arn, DestinationArn=arn, AssociationType="AssociatedWith")
    assert sm.delete_context(ContextName=f"ep-{run}")["ContextArn"] == arn
    assert sm.list_associations(SourceArn=action_arn)["AssociationSummaries"] == []
    code, message = _error(lambda: sm.describe_context(ContextName=f"ep-{run}"))
    assert code == "ResourceNotFound" and arn in message
    assert sm.list_tags(ResourceArn=arn)["Tags"] == []
    sm.delete_action(ActionName=f"deploy-{run}")
    code, _ = _error(lambda: sm.delete_action(ActionName=f"deploy-{run}"))
    assert code == "ResourceNotFound"


def test_query_lineage_walks_the_associations(server: ServerProcess) -> None:
    sm = boto_client("sagemaker", server.url)
    run = uuid.uuid4().hex[:8]
    data = sm.create_artifact(ArtifactType="DataSet", Source={"SourceUri": f"s3://b/{run}/train.csv"})[
        "ArtifactArn"
    ]
    component = sm.create_trial_component(TrialComponentName=f"fit-{run}")["TrialComponentArn"]
    model = sm.create_artifact(ArtifactType="Model", Source={"SourceUri": f"s3://b/{run}/model.tar.gz"})[
        "ArtifactArn"
    ]
    deploy = sm.create_action(
        ActionName=f"deploy-{run}", Source={"SourceUri": model}, ActionType="ModelDeployment"
    )["ActionArn"]
    endpoint = sm.create_context(ContextName=f"ep-{run}", Source={"SourceUri": "ep"}, ContextType="Endpoint")[
        "ContextArn"
    ]
    for source, destination, kind in (
        (data, component, "ContributedTo"),
        (component, model, "Produced"),
        (model, deploy, "ContributedTo"),
        (deploy, endpoint, "AssociatedWith"),
    ):
        sm.add_association(SourceArn=source, DestinationArn=destination, AssociationType=kind)
    [edge] = sm.list_associations(SourceArn=deploy)["AssociationSummaries"]
    assert (edge["SourceType"], edge["DestinationType"], edge["DestinationName"]) == (
        "ModelDeployment",
        "Endpoint",
        f"ep-{run}",
    )

    down = sm.query_lineage(StartArns=[data], Direction="Descendants", IncludeEdges=False)
    assert [(v["Arn"], v["LineageType"], v.get("Type")) for v in down["Vertices"]] == [
        (component, "TrialComponent", None),
        (model, "Artifact", "Model"),
        (deploy, "Action", "ModelDeployment"),
        (endpoint, "Context", "Endpoint"),
    ]
    assert down["Edges"] == []
    datasets = sm.query_lineage(
        StartArns=[endpoint],
        Direction="Ascendants",
        Filters={"LineageTypes": ["Artifact"], "Types": ["DataSet"]},
        IncludeEdges=True,
    )
    assert {v["Arn"] for v in datasets["Vertices"]} == {endpoint, deploy, model, component, data}
    assert len(datasets["Edges"]) == 4
    assert sm.query_lineage(StartArns=[endpoint], Direction="Descendants")["Vertices"] == []
    shallow = sm.query_lineage(StartArns=[data], Direction="Both", MaxDepth=1, IncludeSource=True)
    assert shallow["Vertices"] == [{"Arn": component, "LineageType": "TrialComponent"}]
    paged = sm.query_lineage(StartArns=[data], Direction="Descendants", MaxResults=3)
    rest = sm.query_lineage(
        StartArns=[data], Direction="Descendants", MaxResults=3, NextToken=paged["NextToken"]
    )
    assert [v["Arn"] for v in paged["Vertices"] + rest["Vertices"]] == [component, model, deploy, endpoint]
    code, message = _error(lambda: sm.query_lineage(StartArns=[data], MaxDepth=20))
    assert code == "ValidationException" and "20" in message


def test_batch_get_metrics_reads_back_what_was_logged(server: ServerProcess) -> None:
    sm = boto_client("sagemaker", server.url)
    metrics = boto_client("sagemaker-metrics", server.url)
    name = f"run-{uuid.uuid4().hex[:8]}"
    arn = sm.create_trial_component(TrialComponentName=name)["TrialComponentArn"]
    start = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    data = [
        {
            "MetricName": "loss",
            "Value": value,
            "Step": step,
            "Timestamp": start + dt.timedelta(seconds=20 * step),
        }
        for step, value in enumerate([0.9, 0.6, 0.5, 0.2])
    ]
    assert metrics.batch_put_metrics(TrialComponentName=name, MetricData=data).get("Errors", []) == []

    def query(**overrides: Any) -> dict[str, Any]:
        base = {
            "MetricName": "loss",
            "ResourceArn": arn,
            "MetricStat": "Avg",
            "Period": "IterationNumber",
            "XAxisType": "IterationNumber",
        }
        return {**base, **overrides}

    results = metrics.batch_get_metrics(
        MetricQueries=[
            query(),
            query(MetricStat="Min", Period="OneMinute", XAxisType="Timestamp"),
            query(MetricName="accuracy"),
            query(ResourceArn=arn.replace(name, f"{name}-none")),
        ]
    )["MetricQueryResults"]
    assert results[0] == {
        "Status": "Complete",
        "XAxisValues": [0, 1, 2, 3],
        "MetricValues": [0.9, 0.6, 0.5, 0.2],
    }
    minute = int(start.timestamp())
    assert results[1]["XAxisValues"] == [minute, minute + 60] and results[1]["MetricValues"] == [0.5, 0.2]
    assert results[2]["Status"] == "ValidationError" and "loss" in results[2]["Message"]
    assert results[3]["Status"] == "ValidationError" and f"{name}-none" in results[3]["Message"]
    # The summary DescribeTrialComponent answers agrees with the series.
    [summary] = sm.describe_trial_component(TrialComponentName=name)["Metrics"]
    assert (summary["Count"], summary["Min"], summary["Last"]) == (4, 0.2, 0.2)
    code, message = _error(lambda: metrics.batch_get_metrics(MetricQueries=[query(MetricStat="Median")]))
    assert code == "ValidationException" and "Median" in message
