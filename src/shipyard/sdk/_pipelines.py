"""Pipelines in Python: each step is a function call, results flow into later steps.

    @shipyard.remote(instance_type="ml.m5.large")
    def prepare(fraction): ...

    @shipyard.remote
    def train(data, rounds): ...

    pipeline = shipyard.Pipeline("titanic", parameters={"fraction": 0.8, "rounds": 10})
    data = pipeline.step(prepare, pipeline.parameter("fraction"))
    model = pipeline.step(train, data, rounds=pipeline.parameter("rounds"), retries=2, cache=True)
    pipeline.fail_unless(model["accuracy"] >= 0.7, "the model is not accurate enough")
    run = pipeline.run(fraction=0.9)        # creates or updates it, starts it, waits
    run.result(model)                        # what train returned

Nothing here is new to the server: :meth:`Pipeline.definition` is a SageMaker pipeline definition
(Version 2020-12-01), so the same pipeline shows in boto3 and the ``sagemaker`` SDK, and runs with
the same engine, caching and retries. Each step is a Processing step that runs the function with
``shipyard.remote``'s runner: the call (function and arguments) is pickled on the caller's side
and uploaded by content; an argument that is a parameter or an earlier step's result (or an item
of one) travels as a reference the job replaces with the value, so steps depend on each other by
their data. A step leaves its return value pickled (for later steps and :meth:`PipelineRun.result`)
and as JSON (``result.json``, a property file, for conditions). A step's ``retries`` cover what
SageMaker's retry policies cover: its instance lost, capacity, the service failing it, not an
exception raised by the function.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from shipyard.errors import ValidationError
from shipyard.sdk._conditions import _TYPES, Condition, Parameter, StepResult
from shipyard.sdk._connection import Connection, connect
from shipyard.sdk._function_steps import _FunctionStep, _parameters_in, _placeholders
from shipyard.sdk._pipeline_runs import PipelineRun
from shipyard.sdk._remote import RemoteFunction, RemoteOptions
from shipyard.sdk._remote_caller import _check_function


class Pipeline:
    """A named pipeline: build it with :meth:`step` (and :meth:`fail_unless`), then :meth:`run`.

    Args:
        name: The pipeline's name (letters, digits and hyphens).
        parameters: Name → default value (bool, int, float or str); :meth:`start` overrides them.
        description: Shown by DescribePipeline and ``shipyard pipelines list``.
        parallelism: How many steps may run at once (default: all that are ready).
        connection: The server (default: :func:`shipyard.connect`).

    A ``Pipeline`` built without steps is a handle on one that exists (``start``, ``runs``).
    """

    def __init__(
        self,
        name: str,
        *,
        parameters: Mapping[str, bool | int | float | str] | None = None,
        description: str | None = None,
        parallelism: int | None = None,
        connection: Connection | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.parallelism = parallelism
        self._connection = connection
        self.parameters: dict[str, Parameter] = {}
        for key, default in (parameters or {}).items():
            if type(default) not in _TYPES:
                raise ValidationError(
                    f"Parameter {key!r}: a default is a bool, int, float or str, not {type(default).__name__}",
                    field="parameters",
                    value=key,
                )
            self.parameters[key] = Parameter(key, default)
        self._steps: list[_FunctionStep] = []
        self._checks: list[tuple[str, list[Condition], str]] = []
        self._order: list[str] = []  # steps and checks, as added

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = connect()
        return self._connection

    def parameter(self, name: str) -> Parameter:
        """The parameter ``name``, to pass to a step or compare in a condition."""
        if name not in self.parameters:
            raise ValidationError(
                f"Pipeline {self.name!r} has no parameter {name!r} ({', '.join(self.parameters) or 'none'})",
                field="name",
                value=name,
            )
        return self.parameters[name]

    # -- building -------------------------------------------------------------------------------
    def step(
        self,
        function: Callable[..., Any],
        *args: Any,
        name: str | None = None,
        after: Sequence[StepResult] = (),
        retries: int = 0,
        cache: bool | str = False,
        **kwargs: Any,
    ) -> StepResult:
        """Add a step that calls ``function(*args, **kwargs)`` as a job; returns its result.

        Args:
            function: A ``@shipyard.remote`` function (its instance type, framework,
                requirements and run time apply) or a plain function (the defaults).
            args / kwargs: Its arguments: values, parameters, earlier steps' results (or items of
                them), also inside lists, tuples and dicts.
            name: The step's name (default: the function's, made unique).
            after: Steps that must succeed first although no result of theirs is passed.
            retries: Attempts after the first when the step's job fails for a reason outside
                the function (its instance lost, capacity); an exception it raises is final.
            cache: Reuse an earlier run's result when the call is the same: True (for a day) or an
                ISO 8601 duration ("PT1H", "P7D").
        """
        if isinstance(function, RemoteFunction):
            options, func = function.options, function._func
        else:
            _check_function(function)
            options, func = RemoteOptions(), function
        step_name = name or self._unique(getattr(func, "__name__", "step"))
        if any(s.name == step_name for s in self._steps):
            raise ValidationError(
                f"Pipeline {self.name!r} already has a step {step_name!r}", field="name", value=step_name
            )
        references: list[StepResult] = list(after)
        call_args = _placeholders(args, references)
        call_kwargs = _placeholders(kwargs, references)
        known = {s.name for s in self._steps}
        for reference in references:
            if reference.pipeline is not self or reference.step not in known:
                raise ValidationError(
                    f"Step {step_name!r} uses the result of {reference.step!r}, which is not an earlier step "
                    f"of pipeline {self.name!r}",
                    field="args",
                    value=reference.step,
                )
        used = _parameters_in((args, kwargs))
        for parameter in used:
            if self.parameters.get(parameter.name) is not parameter:
                raise ValidationError(
                    f"Step {step_name!r} uses parameter {parameter.name!r} of another pipeline",
                    field="args",
                    value=parameter.name,
                )
        self._steps.append(
            _FunctionStep(
                step_name,
                func,
                call_args,
                call_kwargs,
                options,
                sorted({r.step for r in references}),
                sorted(p.name for p in used),
                retries,
                "P1D" if cache is True else (cache or None),
            )
        )
        self._order.append(step_name)
        return StepResult(self, step_name)

    def fail_unless(self, *conditions: Condition, message: str, name: str | None = None) -> None:
        """Fail the run (with ``message``) unless every condition holds, once the steps they read
        have run; steps added later wait for this check."""
        if not conditions:
            raise ValidationError("fail_unless() needs a condition", field="conditions")
        check = name or self._unique("check")
        self._checks.append((check, list(conditions), message))
        self._order.append(check)

    def _unique(self, base: str) -> str:
        taken = (
            {s.name for s in self._steps}
            | {c[0] for c in self._checks}
            | {f"{c[0]}-failed" for c in self._checks}
        )
        base = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in base) or "step"
        name, n = base, 1
        while name in taken:
            n += 1
            name = f"{base}-{n}"
        return name

    def definition(self) -> str:
        """The SageMaker pipeline definition (JSON); uploads each step's call and code (once, by
        content) to the server's object store."""
        if not self._steps:
            raise ValidationError(f"Pipeline {self.name!r} has no steps to define", field="steps")
        bucket = self.connection.bucket
        steps: list[dict[str, Any]] = [step.definition(self, bucket) for step in self._steps]
        for name, conditions, message in self._checks:
            steps.append(
                {
                    "Name": name,
                    "Type": "Condition",
                    "Arguments": {
                        "Conditions": [c.definition for c in conditions],
                        "IfSteps": [],
                        "ElseSteps": [
                            {"Name": f"{name}-failed", "Type": "Fail", "Arguments": {"ErrorMessage": message}}
                        ],
                    },
                }
            )
        parameters = [
            {"Name": p.name, "Type": p.type, "DefaultValue": p.default} for p in self.parameters.values()
        ]
        return json.dumps(
            {
                "Version": "2020-12-01",
                "Metadata": {"shipyard": "sdk"},
                "Parameters": parameters,
                "Steps": steps,
            }
        )

    # -- running --------------------------------------------------------------------------------
    def upsert(self) -> str:
        """Create the pipeline, or update its definition; its ARN."""
        client = self.connection.client("sagemaker")
        request: dict[str, Any] = {
            "PipelineName": self.name,
            "PipelineDefinition": self.definition(),
            "RoleArn": self.connection.role,
        }
        if self.description:
            request["PipelineDescription"] = self.description
        if self.parallelism:
            request["ParallelismConfiguration"] = {"MaxParallelExecutionSteps": self.parallelism}
        try:
            return str(client.create_pipeline(**request)["PipelineArn"])
        except client.exceptions.ClientError as exc:
            if "already exists" not in str(exc):
                raise
        return str(client.update_pipeline(**request)["PipelineArn"])

    def start(self, **parameters: Any) -> PipelineRun:
        """Start a run (creating or updating the pipeline first when it was built here), with
        ``parameters`` overriding their defaults."""
        if self._steps:
            self.upsert()
        request: dict[str, Any] = {"PipelineName": self.name}
        if parameters:
            request["PipelineParameters"] = [{"Name": k, "Value": _text(v)} for k, v in parameters.items()]
        arn = self.connection.client("sagemaker").start_pipeline_execution(**request)["PipelineExecutionArn"]
        return PipelineRun(arn, self.connection)

    def run(self, *, show: bool = True, **parameters: Any) -> PipelineRun:
        """:meth:`start` and wait for the run to end, showing its steps as they go."""
        return self.start(**parameters).wait(show=show)

    def runs(self, *, limit: int = 20) -> list[PipelineRun]:
        """The pipeline's runs, newest first."""
        found = self.connection.client("sagemaker").list_pipeline_executions(
            PipelineName=self.name, MaxResults=limit
        )
        return [
            PipelineRun(s["PipelineExecutionArn"], self.connection)
            for s in found["PipelineExecutionSummaries"]
        ]

    def __repr__(self) -> str:
        return f"Pipeline({self.name!r}, steps={[s.name for s in self._steps]})"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
