"""The SDK's pipelines: function steps whose results flow into later steps, parameters, a check
that fails the run, caching, and results read back; the definition is SageMaker's own."""

from __future__ import annotations

import json
from typing import Any

import pytest

import shipyard
from shipyard.errors import ValidationError
from shipyard.server import ServerProcess
from tests._support import boto_client


def test_a_pipeline_of_functions_runs_checks_caches_and_returns_its_results(server: ServerProcess) -> None:
    connection = shipyard.connect(server.url)

    @shipyard.remote(connection=connection)
    def prepare(rows: int, seed: int = 0) -> dict[str, Any]:
        import random

        rng = random.Random(seed)
        return {"values": [rng.random() for _ in range(rows)], "rows": rows}

    def score(data: dict[str, Any], threshold: float) -> dict[str, float]:
        above = sum(v > threshold for v in data["values"])
        return {"share": above / data["rows"], "threshold": threshold}

    pipeline = shipyard.Pipeline(
        "sdk-functions", parameters={"rows": 200, "threshold": 0.5}, connection=connection
    )
    data = pipeline.step(prepare, pipeline.parameter("rows"), seed=7, cache=True)
    scored = pipeline.step(score, data, threshold=pipeline.parameter("threshold"))
    pipeline.fail_unless(scored["share"] >= 0.2, message="too few values above the threshold")

    definition = json.loads(pipeline.definition())
    assert [s["Type"] for s in definition["Steps"]] == ["Processing", "Processing", "Condition"]
    assert {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]} == {"rows": 200, "threshold": 0.5}

    run = pipeline.run(show=False)
    assert run.status == "Succeeded", run.failure_reason
    values = run.result(data)
    assert values["rows"] == 200 and len(values["values"]) == 200
    share = run.result(scored["share"])
    assert 0.3 < share < 0.7
    assert [s["name"] for s in run.steps()] == ["prepare", "score", "check"]

    # Parameters override defaults; the unchanged first step is reused from the cache.
    strict = pipeline.start(threshold=0.99).wait(show=False)
    assert strict.status == "Failed"
    steps = {s["name"]: s for s in strict.steps()}
    assert steps["prepare"]["cached_from"] == run.arn
    assert steps["check"]["outcome"] == "False"
    assert steps["check-failed"]["failure"] == "too few values above the threshold"
    assert strict.result(scored)["threshold"] == 0.99
    assert strict.parameters == {"rows": "200", "threshold": "0.99"}
    assert 0 < strict.cost < run.cost  # the cached step cost nothing the second time

    # The same pipeline, as any SageMaker client sees it.
    sm = boto_client("sagemaker", server.url)
    assert json.loads(sm.describe_pipeline(PipelineName="sdk-functions")["PipelineDefinition"]) == definition
    assert [r.arn for r in shipyard.Pipeline("sdk-functions", connection=connection).runs()] == [
        strict.arn,
        run.arn,
    ]


def test_a_failing_function_step_raises_its_exception_from_result(server: ServerProcess) -> None:
    connection = shipyard.connect(server.url)

    def divide(a: float, b: float) -> float:
        return a / b

    pipeline = shipyard.Pipeline("sdk-failing", parameters={"b": 0.0}, connection=connection)
    quotient = pipeline.step(divide, 1.0, pipeline.parameter("b"), retries=2)
    run = pipeline.run(show=False)
    assert run.status == "Failed"
    [step] = run.steps()
    assert step["attempts"] == 1  # the function's own exception is not retried
    with pytest.raises(ZeroDivisionError):
        run.result(quotient)
    assert pipeline.run(show=False, b=4.0).result(quotient) == 0.25


def test_pipeline_mistakes_are_refused_before_anything_runs(server: ServerProcess) -> None:
    connection = shipyard.connect(server.url)
    first = shipyard.Pipeline("one", parameters={"n": 1}, connection=connection)
    other = shipyard.Pipeline("two", connection=connection)
    result = first.step(lambda n: n, first.parameter("n"), name="ident")
    with pytest.raises(ValidationError, match="not an earlier step of pipeline 'two'"):
        other.step(lambda x: x, result)
    with pytest.raises(ValidationError, match="has no parameter 'm'"):
        first.parameter("m")
    with pytest.raises(ValidationError, match="already has a step 'ident'"):
        first.step(lambda n: n, 1, name="ident")
    with pytest.raises(ValidationError, match="a bool, int, float or str"):
        shipyard.Pipeline("three", parameters={"x": [1]}, connection=connection)
    with pytest.raises(TypeError, match="decided when the pipeline runs"):
        if result > 1:
            pass
