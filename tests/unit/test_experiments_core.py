"""The pure parts of SageMaker Experiments: Search expressions decided on records, metric
summaries, and a job's trial component built from its Describe answer."""

from __future__ import annotations

import datetime as dt

import pytest

from shipyard.core.experiments import (
    MetricStats,
    check_expression,
    job_of_component,
    matches,
    ordered,
    ownership_arn,
    parameter_value,
    processing_component,
    training_component,
    transform_component,
)
from shipyard.core.training import MetricPoint
from shipyard.errors import ValidationError

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
RECORD = {
    "TrialComponentName": "My-Run",
    "CreationTime": T0,
    "Parameters": {"lr": {"NumberValue": 0.1}, "SageMaker.InstanceType": {"StringValue": "ml.m5.large"}},
    "Metrics": [{"MetricName": "val:loss", "Min": 0.2, "Max": 0.9, "Last": 0.3, "Count": 3}],
    "Parents": [
        {"TrialName": "t1", "ExperimentName": "exp-a"},
        {"TrialName": "t2", "ExperimentName": "exp-b"},
    ],
    "Tags": [{"Key": "team", "Value": "ml"}],
    "Status": {"PrimaryStatus": "Completed"},
}


def _f(name: str, operator: str, value: str | None = None) -> dict[str, str]:
    return {"Name": name, "Operator": operator, **({"Value": value} if value is not None else {})}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ({}, True),
        ({"Filters": [_f("TrialComponentName", "Equals", "my-run")]}, True),  # names ignore case
        ({"Filters": [_f("Status.PrimaryStatus", "Equals", "completed")]}, False),  # other text does not
        ({"Filters": [_f("Parameters.lr", "LessThan", "0.5")]}, True),
        ({"Filters": [_f("Parameters.lr", "GreaterThanOrEqualTo", "0.1")]}, True),
        ({"Filters": [_f("Parameters.SageMaker.InstanceType", "Contains", "M5")]}, True),  # a dotted key
        ({"Filters": [_f("Metrics.val:loss.Min", "LessThan", "0.25")]}, True),
        ({"Filters": [_f("Metrics.val:loss.Max", "LessThan", "0.5")]}, False),
        ({"Filters": [_f("Parents.ExperimentName", "Equals", "exp-b")]}, True),
        ({"Filters": [_f("Parents.ExperimentName", "NotEquals", "exp-b")]}, False),
        ({"Filters": [_f("Parents.TrialName", "In", "t9, t2")]}, True),
        ({"Filters": [_f("Tags.team", "Equals", "ml")]}, True),
        ({"Filters": [_f("Parameters.momentum", "Exists")]}, False),
        ({"Filters": [_f("Parameters.momentum", "NotExists")]}, True),
        ({"Filters": [_f("CreationTime", "GreaterThan", "2026-11-30T00:00:00Z")]}, True),
        ({"Filters": [_f("CreationTime", "LessThan", str(T0.timestamp()))]}, False),
        (
            {
                "Filters": [_f("Parameters.lr", "Equals", "9"), _f("Tags.team", "Equals", "ml")],
                "Operator": "Or",
            },
            True,
        ),
        (
            {"SubExpressions": [{"Filters": [_f("Parameters.lr", "Equals", "9")]}, {"Filters": []}]},
            False,
        ),
    ],
)
def test_search_expressions_decide_records(expression: dict, expected: bool) -> None:
    check_expression(expression)
    assert matches(expression, RECORD) is expected


def test_nested_filters_need_one_parent_to_satisfy_every_filter() -> None:
    def nested(trial: str, experiment: str) -> dict:
        return {
            "NestedFilters": [
                {
                    "NestedPropertyName": "Parents",
                    "Filters": [
                        _f("Parents.TrialName", "Equals", trial),
                        _f("Parents.ExperimentName", "Equals", experiment),
                    ],
                }
            ]
        }

    assert matches(nested("t1", "exp-a"), RECORD)
    assert not matches(nested("t1", "exp-b"), RECORD)  # each holds for some parent, not the same one


def test_bad_expressions_are_refused_naming_the_filter() -> None:
    with pytest.raises(ValidationError, match=r"Filters\[0\].*Parameters.lr.*needs a Value"):
        check_expression({"Filters": [{"Name": "Parameters.lr", "Operator": "Equals"}]})
    with pytest.raises(ValidationError, match="'fast' is not a number"):
        matches({"Filters": [_f("Parameters.lr", "LessThan", "fast")]}, RECORD)
    with pytest.raises(ValidationError, match="must start with its NestedPropertyName"):
        check_expression(
            {"NestedFilters": [{"NestedPropertyName": "Parents", "Filters": [_f("Tags.x", "Exists")]}]}
        )


def test_ordering_puts_records_without_the_property_last_either_way() -> None:
    records = [
        {"n": "a", "Parameters": {"lr": {"NumberValue": 2.0}}},
        {"n": "b"},
        {"n": "c", "Parameters": {"lr": {"NumberValue": 1.0}}},
    ]
    assert [r["n"] for r in ordered(records, "Parameters.lr", ascending=True)] == ["c", "a", "b"]
    assert [r["n"] for r in ordered(records, "Parameters.lr", ascending=False)] == ["a", "c", "b"]


def test_metric_summaries_keep_the_latest_value_as_last() -> None:
    stats = MetricStats.of(3.0, T0 + dt.timedelta(seconds=2))
    stats = stats.add(1.0, T0)  # arrives late: not the last
    stats = stats.add(2.0, T0 + dt.timedelta(seconds=1))
    summary = MetricStats.from_json(stats.to_json()).summary("loss")
    assert (summary["Min"], summary["Max"], summary["Last"], summary["Count"]) == (1.0, 3.0, 3.0, 3)
    assert summary["Avg"] == 2.0 and summary["StdDev"] == pytest.approx(1.0)
    assert MetricStats.of(5.0, T0).summary("x")["StdDev"] == 0.0


def test_hyperparameters_become_numbers_where_they_are_numbers() -> None:
    assert parameter_value("0.01") == {"NumberValue": 0.01}
    assert parameter_value('"train.py"') == {"StringValue": '"train.py"'}
    assert parameter_value("nan") == {"StringValue": "nan"}
    assert parameter_value(True) == {"StringValue": "true"}


def test_a_training_jobs_trial_component_carries_its_parameters_metrics_and_artifacts() -> None:
    arn = "arn:aws:sagemaker:us-east-1:000000000000:training-job/Job-1"
    answer = {
        "TrainingJobName": "Job-1",
        "TrainingJobArn": arn,
        "TrainingJobStatus": "Failed",
        "FailureReason": "AlgorithmError: boom",
        "HyperParameters": {"epochs": "3"},
        "AlgorithmSpecification": {"TrainingImage": "img:1"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 2},
        "InputDataConfig": [
            {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://b/train"}}}
        ],
        "ModelArtifacts": {"S3ModelArtifacts": "s3://b/out/model.tar.gz"},
        "CreationTime": T0,
        "TrainingStartTime": T0,
        "TrainingEndTime": T0 + dt.timedelta(minutes=1),
        "ExperimentConfig": {"TrialComponentDisplayName": "first try", "RunName": "exp-run"},
    }
    series = {
        "acc": [MetricPoint("acc", 0.5, T0, 0), MetricPoint("acc", 0.7, T0 + dt.timedelta(seconds=1), 1)]
    }
    component = training_component(answer, series)
    assert (
        component["TrialComponentName"] == "Job-1-aws-training-job"
        and component["DisplayName"] == "first try"
    )
    assert component["Status"] == {"PrimaryStatus": "Failed", "Message": "AlgorithmError: boom"}
    assert component["Parameters"]["epochs"] == {"NumberValue": 3.0}
    assert component["Parameters"]["SageMaker.InstanceCount"] == {"NumberValue": 2.0}
    assert component["InputArtifacts"]["train"] == {"Value": "s3://b/train"}
    assert component["OutputArtifacts"] == {}  # a failed job's model is not an output
    assert [(m["MetricName"], m["Last"], m["Count"]) for m in component["Metrics"]] == [("acc", 0.7, 2)]
    assert component["Source"] == {"SourceArn": arn, "SourceType": "SageMakerTrainingJob"}


def test_a_jobs_trial_component_is_owned_through_its_job() -> None:
    prefix = "arn:aws:sagemaker:us-east-1:000000000000"
    assert job_of_component("Job-1-AWS-Processing-Job")[1] == "Job-1"  # type: ignore[index]
    assert job_of_component("-aws-training-job") is None and job_of_component("mine") is None
    assert ownership_arn(f"{prefix}:experiment-trial-component/job-1-aws-transform-job") == (
        f"{prefix}:transform-job/job-1"
    )
    assert (
        ownership_arn(f"{prefix}:experiment-trial-component/mine")
        == f"{prefix}:experiment-trial-component/mine"
    )


def test_processing_and_transform_jobs_are_trial_components_too() -> None:
    prefix = "arn:aws:sagemaker:us-east-1:000000000000"
    processing = processing_component(
        {
            "ProcessingJobName": "prep",
            "ProcessingJobArn": f"{prefix}:processing-job/prep",
            "ProcessingJobStatus": "Completed",
            "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1}},
            "AppSpecification": {"ImageUri": "img:2"},
            "ProcessingInputs": [{"InputName": "raw", "S3Input": {"S3Uri": "s3://b/raw"}}],
            "ProcessingOutputConfig": {
                "Outputs": [{"OutputName": "clean", "S3Output": {"S3Uri": "s3://b/clean"}}]
            },
            "CreationTime": T0,
        }
    )
    assert processing["TrialComponentName"] == "prep-aws-processing-job"
    assert processing["InputArtifacts"]["raw"] == {"Value": "s3://b/raw"}
    assert processing["OutputArtifacts"] == {"clean": {"Value": "s3://b/clean"}}
    assert processing["Source"]["SourceType"] == "SageMakerProcessingJob"
    transform = transform_component(
        {
            "TransformJobName": "score",
            "TransformJobArn": f"{prefix}:transform-job/score",
            "TransformJobStatus": "InProgress",
            "ModelName": "m",
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 2},
            "TransformInput": {"DataSource": {"S3DataSource": {"S3Uri": "s3://b/in"}}},
            "TransformOutput": {"S3OutputPath": "s3://b/out"},
            "CreationTime": T0,
        }
    )
    assert transform["TrialComponentName"] == "score-aws-transform-job"
    assert transform["Parameters"]["SageMaker.ModelName"] == {"StringValue": "m"}
    assert transform["Status"] == {"PrimaryStatus": "InProgress"}
