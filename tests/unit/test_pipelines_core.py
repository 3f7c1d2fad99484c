"""Pipeline definitions without a server: parsing and its errors, dependencies, expressions,
conditions, parameters, retry policies and cache keys."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from shipyard.core.pipelines import (
    Definition,
    DefinitionError,
    Parameter,
    ParameterType,
    ResolutionError,
    RetryPolicy,
    decide,
    evaluate,
    parse_duration,
    parse_path,
    walk,
)
from shipyard.errors import ValidationError


def _definition(
    steps: list[dict[str, Any]], parameters: list[dict[str, Any]] | None = None, **extra: Any
) -> str:
    return json.dumps({"Version": "2020-12-01", "Parameters": parameters or [], "Steps": steps, **extra})


def _training(name: str, **arguments: Any) -> dict[str, Any]:
    return {"Name": name, "Type": "Training", "Arguments": {"RoleArn": "r", **arguments}}


class Scope:
    def __init__(self, **properties: Any) -> None:
        self.properties = properties
        self.files: dict[str, Any] = {}

    def parameter(self, name: str) -> Any:
        return {"Rate": 0.5, "Deep": True, "Label": "x"}[name]

    def execution_variable(self, name: str) -> Any:
        return {"PipelineExecutionId": "abc123"}[name]

    def step_properties(self, step: str) -> Any:
        if step not in self.properties:
            raise ResolutionError(f"step {step!r} has not run")
        return self.properties[step]

    def property_file(self, step: str, name: str) -> Any:
        return self.files[f"{step}/{name}"]

    def json_file(self, s3_uri: str) -> Any:
        return self.files[s3_uri]


def test_paths_read_names_indexes_and_quoted_keys() -> None:
    assert parse_path("ProcessingOutputConfig.Outputs['train'].S3Output.S3Uri") == [
        "ProcessingOutputConfig",
        "Outputs",
        "train",
        "S3Output",
        "S3Uri",
    ]
    assert parse_path("TrainingJobSummaries[0].TrainingJobName") == [
        "TrainingJobSummaries",
        0,
        "TrainingJobName",
    ]
    assert parse_path('value["a b"][-1]') == ["value", "a b", -1]
    with pytest.raises(ValueError, match="cannot read the path"):
        parse_path("Outputs[train]")
    outputs = {
        "Outputs": [{"OutputName": "test", "S3Uri": "s3://t"}, {"OutputName": "train", "S3Uri": "s3://tr"}]
    }
    assert walk(outputs, ["Outputs", "train", "S3Uri"], where="Steps.p") == "s3://tr"  # by name
    with pytest.raises(KeyError, match=r"Steps.p.Outputs.validation does not exist \(no element is named"):
        walk(outputs, ["Outputs", "validation"], where="Steps.p")


def test_branches_are_flattened_and_dependencies_inferred_from_references() -> None:
    condition = {
        "Name": "check",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [
                {
                    "Type": "GreaterThanOrEqualTo",
                    "LeftValue": {
                        "Std:JsonGet": {
                            "PropertyFile": {"Get": "Steps.evaluate.PropertyFiles.report"},
                            "Path": "metrics.accuracy.value",
                        }
                    },
                    "RightValue": 0.7,
                }
            ],
            "IfSteps": [
                {"Name": "register", "Type": "RegisterModel", "Arguments": {"ModelPackageGroupName": "g"}}
            ],
            "ElseSteps": [{"Name": "fail", "Type": "Fail", "Arguments": {"ErrorMessage": "low"}}],
        },
    }
    evaluate_step = {
        **_training(
            "evaluate", HyperParameters={"model": {"Get": "Steps.train.ModelArtifacts.S3ModelArtifacts"}}
        ),
        "Type": "Processing",
        "PropertyFiles": [
            {"PropertyFileName": "report", "OutputName": "evaluation", "FilePath": "evaluation.json"}
        ],
    }
    definition = Definition.parse(
        _definition(
            [_training("train"), evaluate_step, condition, {**_training("other"), "DependsOn": ["train"]}]
        )
    )
    assert list(definition.steps) == ["train", "evaluate", "check", "register", "fail", "other"]
    assert definition.dependencies("evaluate") == {"train"}
    assert definition.dependencies("check") == {"evaluate"}
    assert definition.dependencies("register") == {"check"}
    assert definition.steps["register"].branch == ("check", True)
    assert definition.steps["fail"].branch == ("check", False)
    assert definition.steps["register"].path == "Steps[2].Arguments.IfSteps[0]"
    assert definition.dependencies("other") == {"train"}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{nope", "not JSON"),
        (json.dumps({"Version": "2017-01-01", "Steps": []}), "Version '2017-01-01' is not supported"),
        (_definition([]), "has no Steps"),
        (_definition([_training("a"), _training("a")]), "another step is named 'a'"),
        (_definition([{"Name": "l", "Type": "Lambda"}]), "Step 'l' (Steps[0]) has Type 'Lambda'"),
        (_definition([{**_training("a"), "DependsOn": ["b"]}]), "depends on 'b', which is not a step"),
        (
            _definition([_training("a", HyperParameters={"x": {"Get": "Parameters.Nope"}})]),
            "Steps[0].Arguments.HyperParameters.x refers to 'Parameters.Nope', but there is no parameter 'Nope'",
        ),
        (
            _definition([_training("a", Environment={"X": {"Get": "Execution.Today"}})]),
            "there is no execution variable 'Today'",
        ),
        (
            _definition(
                [
                    _training(
                        "a",
                        X={"Std:JsonGet": {"PropertyFile": {"Get": "Steps.a.PropertyFiles.r"}, "Path": "x"}},
                    )
                ]
            ),
            "step 'a' has no property file 'r'",
        ),
        (
            _definition([{"Name": "c", "Type": "Condition", "Arguments": {"Conditions": [{"Type": "And"}]}}]),
            "Arguments.Conditions[0].Type 'And' is not a condition type",
        ),
        (
            _definition(
                [{**_training("a"), "RetryPolicies": [{"ExceptionType": ["Step.OOPS"], "MaxAttempts": 2}]}]
            ),
            "RetryPolicies[0].ExceptionType 'Step.OOPS' is not one of",
        ),
        (
            _definition([{**_training("a"), "CacheConfig": {"Enabled": True, "ExpireAfter": "soon"}}]),
            "not an ISO 8601 duration",
        ),
        (
            _definition([{**_training("a"), "DependsOn": ["b"]}, {**_training("b"), "DependsOn": ["a"]}]),
            "cycle: a → b → a",
        ),
        (
            _definition([_training("a")], [{"Name": "n", "Type": "Integer", "DefaultValue": "x"}]),
            "'x' is not a integer",
        ),
    ],
)
def test_what_cannot_run_is_named(document: str, message: str) -> None:
    with pytest.raises(DefinitionError if "integer" not in message else ValidationError) as caught:
        Definition.parse(document)
    assert message in caught.value.message


def test_expressions_resolve_against_the_scope() -> None:
    scope = Scope(train={"ModelArtifacts": {"S3ModelArtifacts": "s3://b/model.tar.gz"}})
    scope.files["evaluate/report"] = {"metrics": {"accuracy": {"value": 0.81}}}
    scope.files["s3://b/f2/results.json"] = {"Result": {"score": [0.1, 0.9]}, "Exception": None}
    tree = {
        "Model": {"Get": "Steps.train.ModelArtifacts.S3ModelArtifacts"},
        "Path": {"Std:Join": {"On": "/", "Values": ["s3:/", "b", {"Get": "Execution.PipelineExecutionId"}]}},
        "Flags": {
            "Std:Join": {"On": ",", "Values": [{"Get": "Parameters.Deep"}, {"Get": "Parameters.Rate"}, 3]}
        },
        "Accuracy": {
            "Std:JsonGet": {
                "PropertyFile": {"Get": "Steps.evaluate.PropertyFiles.report"},
                "Path": "metrics.accuracy.value",
            }
        },
        "Score": {"Std:JsonGet": {"S3Uri": "s3://b/f2/results.json", "Path": "Result['score'][1]"}},
        "List": [{"Get": "Parameters.Label"}, "plain"],
    }
    assert evaluate(tree, scope) == {
        "Model": "s3://b/model.tar.gz",
        "Path": "s3://b/abc123",
        "Flags": "true,0.5,3",
        "Accuracy": 0.81,
        "Score": 0.9,
        "List": ["x", "plain"],
    }
    with pytest.raises(ResolutionError, match=r"Steps\.train\.ModelArtifacts\.Nope does not exist"):
        evaluate({"Get": "Steps.train.ModelArtifacts.Nope"}, scope)
    with pytest.raises(ResolutionError, match="step 'later' has not run"):
        evaluate({"Get": "Steps.later.ModelName"}, scope)


def test_conditions_compare_numbers_as_numbers_and_combine() -> None:
    scope = Scope()

    def holds(condition: dict[str, Any]) -> bool:
        return decide(condition, scope)

    assert holds(
        {"Type": "GreaterThanOrEqualTo", "LeftValue": "0.81", "RightValue": {"Get": "Parameters.Rate"}}
    )
    assert not holds({"Type": "LessThan", "LeftValue": 10, "RightValue": 9.5})
    assert holds({"Type": "Equals", "LeftValue": 1, "RightValue": 1.0})
    assert holds({"Type": "Equals", "LeftValue": {"Get": "Parameters.Label"}, "RightValue": "x"})
    assert holds({"Type": "In", "QueryValue": 2, "Values": [1, "2", 3]})
    assert holds({"Type": "Not", "Expression": {"Type": "Equals", "LeftValue": "a", "RightValue": "b"}})
    assert holds(
        {
            "Type": "Or",
            "Conditions": [
                {"Type": "Equals", "LeftValue": 1, "RightValue": 2},
                {"Type": "Equals", "LeftValue": {"Get": "Parameters.Deep"}, "RightValue": True},
            ],
        }
    )
    with pytest.raises(ResolutionError, match="GreaterThan cannot compare 'a' with 1"):
        holds({"Type": "GreaterThan", "LeftValue": "a", "RightValue": 1})


def test_parameters_take_what_start_sends() -> None:
    flag = Parameter("Deep", ParameterType.BOOLEAN)
    assert flag.coerce("True", field="p") is True and flag.coerce("false", field="p") is False
    assert Parameter("N", ParameterType.INTEGER).coerce("3", field="p") == 3
    assert Parameter("N", ParameterType.INTEGER).coerce(3.0, field="p") == 3
    assert Parameter("R", ParameterType.FLOAT).coerce("0.25", field="p") == 0.25
    for kind, value in (
        (ParameterType.INTEGER, "3.5"),
        (ParameterType.BOOLEAN, "yes"),
        (ParameterType.FLOAT, "x"),
    ):
        with pytest.raises(ValidationError, match=f"Parameter 'p' is of type {kind.value}"):
            Parameter("p", kind).coerce(value, field="PipelineParameters.p")


def test_retry_policies_count_attempts_or_time_and_back_off() -> None:
    started = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    policy = RetryPolicy(
        ("SageMaker.JOB_INTERNAL_ERROR",), interval_seconds=2, backoff_rate=3, max_attempts=2
    )
    assert policy.covers("SageMaker.JOB_INTERNAL_ERROR") and not policy.covers("Step.THROTTLING")
    assert [policy.delay(n) for n in range(3)] == [2, 6, 18]
    assert policy.allows(1, started, started) and not policy.allows(2, started, started)
    timed = RetryPolicy(("Step.SERVICE_FAULT",), expire_after_minutes=10)
    assert timed.allows(50, started, started + dt.timedelta(minutes=9))
    assert not timed.allows(0, started, started + dt.timedelta(minutes=10))


def test_the_cache_key_is_the_attributes_sagemaker_compares() -> None:
    step = Definition.parse(_definition([{**_training("a"), "Type": "Processing"}])).steps["a"]
    base = {
        "AppSpecification": {"ImageUri": "i"},
        "ProcessingInputs": [{"S3Input": {"S3Uri": "s3://in"}}],
        "ProcessingOutputConfig": {"Outputs": [{"S3Output": {"S3Uri": "s3://out/run-1"}}]},
    }
    other_output = {
        **base,
        "ProcessingOutputConfig": {"Outputs": [{"S3Output": {"S3Uri": "s3://out/run-2"}}]},
    }
    other_input = {**base, "ProcessingInputs": [{"S3Input": {"S3Uri": "s3://in-2"}}]}
    assert step.cache_key(base, "p") == step.cache_key(other_output, "p")  # outputs are not compared
    assert step.cache_key(base, "p") != step.cache_key(other_input, "p")
    assert step.cache_key(base, "p") != step.cache_key(base, "another-pipeline")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT1H", 3600),
        ("30d", 30 * 86400),
        ("T16m", 960),
        ("P30DT5H", 30 * 86400 + 5 * 3600),
        ("P1W", 604800),
        ("PT90S", 90),
    ],
)
def test_cache_expiry_durations(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds
