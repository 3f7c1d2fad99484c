"""Pipelines as the sagemaker SDK 2.x builds and drives them, unchanged: preprocessing → built-in
XGBoost → evaluation with a PropertyFile → a condition on the accuracy → RegisterModel or Fail;
caching on a second run; parameters overriding defaults; and ``@step`` function pipelines."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.server import ServerProcess
from tests._support import boto_client
from tests._titanic import numeric_csv

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
BUCKET = "sdk-pipelines"

PREPROCESS = """
import os
lines = open("/opt/ml/processing/input/titanic.csv").read().splitlines()[1:]
parts = {"train": lines[: len(lines) * 6 // 10], "validation": lines[len(lines) * 6 // 10 : len(lines) * 8 // 10],
         "test": lines[len(lines) * 8 // 10 :]}
for name, rows in parts.items():
    os.makedirs(f"/opt/ml/processing/{name}", exist_ok=True)
    open(f"/opt/ml/processing/{name}/{name}.csv", "w").write("\\n".join(rows) + "\\n")
print("rows", {k: len(v) for k, v in parts.items()})
"""

EVALUATE = """
import json, os, tarfile
import numpy as np, xgboost
with tarfile.open("/opt/ml/processing/model/model.tar.gz") as tar:
    tar.extractall("/tmp/model")
booster = xgboost.Booster()
booster.load_model("/tmp/model/xgboost-model")
data = np.loadtxt("/opt/ml/processing/test/test.csv", delimiter=",")
predicted = booster.predict(xgboost.DMatrix(data[:, 1:])) > 0.5
accuracy = float((predicted == data[:, 0].astype(bool)).mean())
os.makedirs("/opt/ml/processing/evaluation", exist_ok=True)
json.dump({"metrics": {"accuracy": {"value": accuracy}}}, open("/opt/ml/processing/evaluation/evaluation.json", "w"))
print("accuracy", accuracy)
"""


@pytest.fixture
def session(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    from sagemaker.workflow.pipeline_context import PipelineSession

    import shipyard.connector  # noqa: F401 - the SDK's waits, cut short

    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    boto_session = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    session = PipelineSession(
        boto_session=boto_session,
        sagemaker_client=boto_client("sagemaker", server.url),
        default_bucket=BUCKET,
    )
    session.default_bucket()  # made when missing, as on AWS
    yield session


def _steps(execution: Any) -> dict[str, dict[str, Any]]:
    return {s["StepName"]: s for s in execution.list_steps()}


def _titanic_pipeline(session: Any, code: Path, name: str) -> Any:
    from sagemaker import image_uris
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput
    from sagemaker.model import Model
    from sagemaker.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.processing import ProcessingInput, ProcessingOutput, ScriptProcessor
    from sagemaker.sklearn.processing import SKLearnProcessor
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import ConditionGreaterThanOrEqualTo
    from sagemaker.workflow.fail_step import FailStep
    from sagemaker.workflow.functions import Join, JsonGet
    from sagemaker.workflow.model_step import ModelStep
    from sagemaker.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
    from sagemaker.workflow.pipeline import Pipeline
    from sagemaker.workflow.properties import PropertyFile
    from sagemaker.workflow.steps import CacheConfig, ProcessingStep, TrainingStep

    (code / "preprocess.py").write_text(PREPROCESS)
    (code / "evaluate.py").write_text(EVALUATE)
    data = session.upload_string_as_file_body(
        numeric_csv("train", header=True).decode(), BUCKET, "titanic/titanic.csv"
    )
    rounds = ParameterInteger(name="Rounds", default_value=10)
    threshold = ParameterFloat(name="MinAccuracy", default_value=0.6)
    approval = ParameterString(name="ApprovalStatus", default_value="PendingManualApproval")
    cache = CacheConfig(enable_caching=True, expire_after="PT1H")

    preprocess = ProcessingStep(
        name="Preprocess",
        step_args=SKLearnProcessor(
            framework_version="1.2-1",
            instance_type="ml.m5.large",
            instance_count=1,
            role=ROLE,
            sagemaker_session=session,
        ).run(
            inputs=[ProcessingInput(source=data, destination="/opt/ml/processing/input")],
            outputs=[
                ProcessingOutput(output_name=n, source=f"/opt/ml/processing/{n}")
                for n in ("train", "validation", "test")
            ],
            code=str(code / "preprocess.py"),
        ),
        cache_config=cache,
    )
    outputs = preprocess.properties.ProcessingOutputConfig.Outputs
    image = image_uris.retrieve("xgboost", "us-east-1", "1.7-1")
    estimator = Estimator(
        image_uri=image,
        instance_type="ml.m5.large",
        instance_count=1,
        output_path=f"s3://{BUCKET}/models",
        role=ROLE,
        sagemaker_session=session,
    )
    estimator.set_hyperparameters(objective="binary:logistic", num_round=rounds, max_depth=3)
    train = TrainingStep(
        name="Train",
        step_args=estimator.fit(
            {
                c: TrainingInput(outputs[c].S3Output.S3Uri, content_type="text/csv")
                for c in ("train", "validation")
            }
        ),
        cache_config=cache,
    )
    report = PropertyFile(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
    evaluate = ProcessingStep(
        name="Evaluate",
        step_args=ScriptProcessor(
            image_uri=image,
            command=["python3"],
            instance_type="ml.m5.large",
            instance_count=1,
            role=ROLE,
            sagemaker_session=session,
        ).run(
            inputs=[
                ProcessingInput(train.properties.ModelArtifacts.S3ModelArtifacts, "/opt/ml/processing/model"),
                ProcessingInput(outputs["test"].S3Output.S3Uri, "/opt/ml/processing/test"),
            ],
            outputs=[ProcessingOutput(output_name="evaluation", source="/opt/ml/processing/evaluation")],
            code=str(code / "evaluate.py"),
        ),
        property_files=[report],
    )
    accuracy = JsonGet(step_name=evaluate.name, property_file=report, json_path="metrics.accuracy.value")
    model = Model(
        image_uri=image,
        model_data=train.properties.ModelArtifacts.S3ModelArtifacts,
        role=ROLE,
        sagemaker_session=session,
    )
    register = ModelStep(
        name="Register",
        step_args=model.register(
            content_types=["text/csv"],
            response_types=["text/csv"],
            inference_instances=["ml.m5.large"],
            transform_instances=["ml.m5.large"],
            model_package_group_name=f"{name}-models",
            approval_status=approval,
            model_metrics=ModelMetrics(
                model_statistics=MetricsSource(
                    s3_uri=Join(
                        on="/",
                        values=[
                            evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri,
                            "evaluation.json",
                        ],
                    ),
                    content_type="application/json",
                )
            ),
        ),
    )
    fail = FailStep(
        name="TooInaccurate",
        error_message=Join(on=" ", values=["accuracy", accuracy, "is below", threshold]),
    )
    check = ConditionStep(
        name="CheckAccuracy",
        conditions=[ConditionGreaterThanOrEqualTo(left=accuracy, right=threshold)],
        if_steps=[register],
        else_steps=[fail],
    )
    return Pipeline(
        name=name,
        parameters=[rounds, threshold, approval],
        steps=[preprocess, train, evaluate, check],
        sagemaker_session=session,
    )


def test_a_titanic_pipeline_runs_registers_its_model_and_reuses_cached_steps(
    session: Any, server: ServerProcess, tmp_path: Path
) -> None:
    pipeline = _titanic_pipeline(session, tmp_path, "titanic-pipeline")
    pipeline.upsert(role_arn=ROLE)
    pipeline.upsert(role_arn=ROLE, description="upserted again")  # an existing pipeline is updated
    assert pipeline.describe()["PipelineDescription"] == "upserted again"

    first = pipeline.start()
    first.wait()  # the connector polls quickly
    steps = _steps(first)
    assert {s: v["StepStatus"] for s, v in steps.items()} == {
        "Preprocess": "Succeeded",
        "Train": "Succeeded",
        "Evaluate": "Succeeded",
        "CheckAccuracy": "Succeeded",
        "Register-RegisterModel": "Succeeded",
    }
    assert steps["CheckAccuracy"]["Metadata"] == {"Condition": {"Outcome": "True"}}
    assert ":training-job/" in steps["Train"]["Metadata"]["TrainingJob"]["Arn"]
    package_arn = steps["Register-RegisterModel"]["Metadata"]["RegisterModel"]["Arn"]

    sm = boto_client("sagemaker", server.url)
    package = sm.describe_model_package(ModelPackageName=package_arn)
    assert package["ModelPackageGroupName"] == "titanic-pipeline-models"
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["InferenceSpecification"]["Containers"][0]["ModelDataUrl"].endswith("model.tar.gz")
    metrics_uri = package["ModelMetrics"]["ModelQuality"]["Statistics"]["S3Uri"]
    bucket, key = metrics_uri[5:].split("/", 1)
    report = json.loads(boto_client("s3", server.url).get_object(Bucket=bucket, Key=key)["Body"].read())
    assert report["metrics"]["accuracy"]["value"] >= 0.6
    sm.update_model_package(ModelPackageArn=package_arn, ModelApprovalStatus="Approved")
    approved = sm.list_model_packages(
        ModelPackageGroupName="titanic-pipeline-models", ModelApprovalStatus="Approved"
    )
    assert [p["ModelPackageArn"] for p in approved["ModelPackageSummaryList"]] == [package_arn]

    # The second run reuses the preprocessing and training steps; parameters override defaults.
    second = pipeline.start(parameters={"ApprovalStatus": "Approved"})
    second.wait(delay=1, max_attempts=300)
    again = _steps(second)
    for name in ("Preprocess", "Train"):
        assert again[name]["CacheHitResult"]["SourcePipelineExecutionArn"] == first.arn, name
        assert again[name]["Metadata"] == steps[name]["Metadata"], name
    assert "CacheHitResult" not in again["Evaluate"]
    assert {p["Name"]: p["Value"] for p in second.list_parameters()["PipelineParameters"]}[
        "ApprovalStatus"
    ] == "Approved"
    newer = sm.describe_model_package(
        ModelPackageName=again["Register-RegisterModel"]["Metadata"]["RegisterModel"]["Arn"]
    )
    assert (newer["ModelPackageVersion"], newer["ModelApprovalStatus"]) == (2, "Approved")

    # A threshold no model reaches takes the else branch: the Fail step fails the execution.
    third = pipeline.start(parameters={"MinAccuracy": 1.01})
    with pytest.raises(Exception, match="Failed"):
        third.wait(delay=1, max_attempts=300)
    failed = _steps(third)
    assert failed["CheckAccuracy"]["Metadata"] == {"Condition": {"Outcome": "False"}}
    assert failed["TooInaccurate"]["StepStatus"] == "Failed"
    assert failed["TooInaccurate"]["Metadata"]["Fail"]["ErrorMessage"].startswith("accuracy 0.")
    assert failed["TooInaccurate"]["Metadata"]["Fail"]["ErrorMessage"].endswith("is below 1.01")
    assert "Register-RegisterModel" not in failed
    described = third.describe()
    assert described["PipelineExecutionStatus"] == "Failed"
    assert "TooInaccurate" in described["FailureReason"]


STEP_IMAGE = "public.ecr.aws/sagemaker/sagemaker-distribution:2.1-cpu"


def test_step_decorated_functions_run_as_a_pipeline_with_parameters_and_a_condition(
    session: Any, server: ServerProcess
) -> None:
    from sagemaker.workflow.condition_step import ConditionStep
    from sagemaker.workflow.conditions import ConditionGreaterThanOrEqualTo
    from sagemaker.workflow.fail_step import FailStep
    from sagemaker.workflow.function_step import step
    from sagemaker.workflow.parameters import ParameterFloat
    from sagemaker.workflow.pipeline import Pipeline

    options = {"instance_type": "ml.m5.large", "image_uri": STEP_IMAGE, "role": ROLE}

    @step(name="prepare", **options)
    def prepare(fraction: float) -> dict[str, Any]:
        import socket
        import warnings

        with warnings.catch_warnings():  # setuptools 80 says pkg_resources is deprecated
            warnings.simplefilter("ignore")
            import pkg_resources  # as in AWS's images

        setuptools = pkg_resources.get_distribution("setuptools").version
        return {"rows": 100, "fraction": fraction, "host": socket.gethostname(), "setuptools": setuptools}

    @step(name="score", **options)
    def score(data: dict[str, Any]) -> float:
        return data["rows"] * data["fraction"] / 100

    fraction = ParameterFloat(name="Fraction", default_value=0.8)
    accuracy = score(prepare(fraction))
    check = ConditionStep(
        name="good-enough",
        conditions=[ConditionGreaterThanOrEqualTo(left=accuracy, right=0.5)],
        if_steps=[],
        else_steps=[FailStep(name="too-low", error_message="the score is below 0.5")],
    )
    pipeline = Pipeline(
        name="step-functions", parameters=[fraction], steps=[check], sagemaker_session=session
    )
    pipeline.upsert(role_arn=ROLE)

    execution = pipeline.start()
    execution.wait(delay=1, max_attempts=300)
    assert execution.result(step_name="score") == 0.8
    prepared = execution.result(step_name="prepare")
    assert prepared["host"] == "algo-1"  # it ran as a job
    assert int(prepared["setuptools"].split(".")[0]) < 81  # with pkg_resources, as AWS's images
    steps = _steps(execution)
    assert {s["StepStatus"] for s in steps.values()} == {"Succeeded"}
    assert steps["good-enough"]["Metadata"] == {"Condition": {"Outcome": "True"}}

    low = pipeline.start(parameters={"Fraction": 0.25})  # the parameter reaches the function
    with pytest.raises(Exception, match="Failed"):
        low.wait(delay=1, max_attempts=300)
    assert low.result(step_name="score") == 0.25
    assert _steps(low)["too-low"]["Metadata"]["Fail"]["ErrorMessage"] == "the score is below 0.5"
