"""Request validation and response shaping driven by botocore's SageMaker model."""

import datetime as dt
from decimal import Decimal

import pytest

from shipyard.errors import ValidationError
from shipyard.schema import ServiceSchema


@pytest.fixture(scope="module")
def schema() -> ServiceSchema:
    return ServiceSchema.load("sagemaker")


def _training_job(**changes: object) -> dict:
    body = {
        "TrainingJobName": "titanic-xgb-1",
        "AlgorithmSpecification": {
            "TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/x:1",
            "TrainingInputMode": "File",
        },
        "RoleArn": "arn:aws:iam::000000000000:role/SageMakerRole",
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "HyperParameters": {"num_round": "50", "sagemaker_program": '"train.py"'},
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": "s3://bucket/train",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
    }
    body.update(changes)
    return body


def test_valid_request_passes(schema: ServiceSchema) -> None:
    body = _training_job()
    assert schema.validate_input("CreateTrainingJob", body) == body


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"TrainingJobName": None},
            "Value null at 'trainingJobName' failed to satisfy constraint: Member must not be null",
        ),
        (
            {"StoppingCondition": {"MaxRuntimeInSeconds": 0}},
            "Value '0' at 'stoppingCondition.maxRuntimeInSeconds' failed to satisfy constraint: Member must have value greater than or equal to 1",
        ),
        (
            {"AlgorithmSpecification": {"TrainingInputMode": "Bogus"}},
            "at 'algorithmSpecification.trainingInputMode' failed to satisfy constraint: Member must satisfy enum value set: [",
        ),
        (
            {"TrainingJobName": "bad_name!"},
            "Member must satisfy regular expression pattern: [a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}",
        ),
        (
            {"HyperParameters": {"eta": 0.1}},
            "Value '0.1' at 'hyperParameters.eta' failed to satisfy constraint: Member must be a string",
        ),
        (
            {"InputDataConfig": [{"ChannelName": "train"}]},
            "Value null at 'inputDataConfig.1.member.dataSource'",
        ),
    ],
)
def test_violations_are_named_as_aws_names_them(schema: ServiceSchema, changes: dict, message: str) -> None:
    with pytest.raises(ValidationError) as exc:
        schema.validate_input("CreateTrainingJob", _training_job(**changes))
    assert message in exc.value.message
    assert exc.value.message.startswith("1 validation error detected: ")


def test_all_violations_are_reported(schema: ServiceSchema) -> None:
    with pytest.raises(ValidationError, match=r"^2 validation errors detected: ") as exc:
        schema.validate_input("CreateTrainingJob", _training_job(TrainingJobName=None, RoleArn=None))
    assert exc.value.field == "trainingJobName"


def test_ranges_types_and_timestamps(schema: ServiceSchema) -> None:
    with pytest.raises(
        ValidationError, match="maxResults' failed to satisfy constraint: Member must have value less"
    ):
        schema.validate_input("ListTrainingJobs", {"MaxResults": 1000})
    with pytest.raises(ValidationError, match="Member must be an integer"):
        schema.validate_input("ListTrainingJobs", {"MaxResults": "10"})
    params = schema.validate_input("ListTrainingJobs", {"CreationTimeAfter": 1_700_000_000.5})
    assert params["CreationTimeAfter"] == dt.datetime.fromtimestamp(1_700_000_000.5, tz=dt.UTC)


def test_shape_output(schema: ServiceSchema) -> None:
    created = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    result = {
        "TrainingJobName": "j",
        "TrainingJobArn": "arn:aws:sagemaker:us-east-1:000000000000:training-job/j",
        "TrainingJobStatus": "Completed",
        "SecondaryStatus": "Completed",
        "CreationTime": created,
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": Decimal(1), "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        "FailureReason": None,
        "FinalMetricDataList": [{"MetricName": "acc", "Value": Decimal("0.5"), "Timestamp": created}],
    }
    shaped = schema.shape_output("DescribeTrainingJob", result, strict=True)
    assert shaped["CreationTime"] == created.timestamp()
    assert shaped["ResourceConfig"]["InstanceCount"] == 1
    assert shaped["FinalMetricDataList"][0]["Value"] == 0.5
    assert "FailureReason" not in shaped
    with pytest.raises(ValueError, match="Bogus"):
        schema.shape_output("DescribeTrainingJob", {**result, "Bogus": 1}, strict=True)
    with pytest.raises(ValueError, match="TrainingJobStatus"):
        schema.shape_output("DescribeTrainingJob", {**result, "TrainingJobStatus": "Running"}, strict=True)


@pytest.mark.parametrize("bad", [1e20, "1e20", float("nan"), float("inf"), "soon"])
def test_out_of_range_timestamps_are_validation_errors(schema: ServiceSchema, bad: object) -> None:
    with pytest.raises(ValidationError, match="creationTimeAfter"):
        schema.validate_input("ListTrainingJobs", {"CreationTimeAfter": bad})


def test_java_character_classes_outside_brackets_are_classes() -> None:
    from shipyard.schema import _pattern

    printable = _pattern(r"\p{Print}+")  # application-autoscaling's PolicyName
    assert printable is not None and printable.fullmatch("invocations") and not printable.fullmatch("a\tb")
    tag = _pattern(r"[\p{L}\p{N}_.:/=+\-@]*")
    assert tag is not None and tag.fullmatch("a:b/c") and not tag.fullmatch("a!b")
