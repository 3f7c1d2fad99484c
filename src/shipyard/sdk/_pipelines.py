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
import pickle
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from shipyard.errors import ValidationError
from shipyard.sdk._connection import ROLE, Connection, connect
from shipyard.sdk._progress import Progress
from shipyard.sdk._remote import (
    _RUNNER_SOURCE,
    RUNNER,
    RemoteError,
    RemoteFunction,
    RemoteOptions,
    _check_function,
    _check_size,
    _local_sources,
    _pickle_call,
    _python_tag,
    _with_cloudpickle,
)
from shipyard.sdk._training import _upload_local, image_for

PLACEHOLDER = "__shipyard_placeholder__"
_TERMINAL = ("Succeeded", "Failed", "Stopped")
_TYPES = {bool: "Boolean", int: "Integer", float: "Float", str: "String"}
_CODE = "/opt/ml/processing/input/code"
_STEPS = "/opt/ml/processing/input/steps"
_OUT = "/opt/ml/processing/output/result"


class Condition:
    """What a Condition step tests (made by comparing a step result or parameter with a value).
    Combine with ``|`` (or) and ``~`` (not); :meth:`Pipeline.fail_unless` takes several (and)."""

    def __init__(self, definition: dict[str, Any]) -> None:
        self.definition = definition

    def __or__(self, other: Condition) -> Condition:
        return Condition({"Type": "Or", "Conditions": [self.definition, other.definition]})

    def __invert__(self) -> Condition:
        return Condition({"Type": "Not", "Expression": self.definition})

    def __bool__(self) -> bool:
        raise TypeError(
            "A pipeline condition is decided when the pipeline runs, not in Python: pass it to "
            "Pipeline.fail_unless() (and combine conditions with | and ~, not 'or' and 'not')"
        )


class _Value:
    """Something known only when the pipeline runs: comparing it makes a :class:`Condition`."""

    def expression(self) -> Any:
        raise NotImplementedError

    def _compare(self, kind: str, other: Any) -> Condition:
        right = other.expression() if isinstance(other, _Value) else other
        return Condition({"Type": kind, "LeftValue": self.expression(), "RightValue": right})

    def __eq__(self, other: object) -> Condition:  # type: ignore[override]
        return self._compare("Equals", other)

    def __ne__(self, other: object) -> Condition:  # type: ignore[override]
        return ~self._compare("Equals", other)

    def __gt__(self, other: Any) -> Condition:
        return self._compare("GreaterThan", other)

    def __ge__(self, other: Any) -> Condition:
        return self._compare("GreaterThanOrEqualTo", other)

    def __lt__(self, other: Any) -> Condition:
        return self._compare("LessThan", other)

    def __le__(self, other: Any) -> Condition:
        return self._compare("LessThanOrEqualTo", other)

    def isin(self, values: Sequence[Any]) -> Condition:
        """True when the value is one of ``values``."""
        return Condition({"Type": "In", "QueryValue": self.expression(), "Values": list(values)})

    __hash__ = object.__hash__


class Parameter(_Value):
    """A pipeline parameter: its default, or the value a run is started with."""

    def __init__(self, name: str, default: Any) -> None:
        self.name = name
        self.default = default
        self.type = _TYPES[type(default)]

    def expression(self) -> Any:
        return {"Get": f"Parameters.{self.name}"}

    def placeholder(self) -> dict[str, Any]:
        return {PLACEHOLDER: ["parameter", self.name, [], self.type]}

    def __repr__(self) -> str:
        return f"Parameter({self.name!r}, default={self.default!r})"


class StepResult(_Value):
    """What a step returns, as later steps and conditions see it (``result["key"]`` is an item)."""

    def __init__(self, pipeline: Pipeline, step: str, path: tuple[str | int, ...] = ()) -> None:
        self.pipeline = pipeline
        self.step = step
        self.path = path

    def __getitem__(self, key: str | int) -> StepResult:
        return StepResult(self.pipeline, self.step, (*self.path, key))

    def expression(self) -> Any:
        path = "value" + "".join(f"[{p}]" if isinstance(p, int) else f"['{p}']" for p in self.path)
        return {
            "Std:JsonGet": {
                "PropertyFile": {"Get": f"Steps.{self.step}.PropertyFiles.result"},
                "Path": path,
            }
        }

    def placeholder(self) -> dict[str, Any]:
        return {PLACEHOLDER: ["step", self.step, list(self.path), None]}

    def __repr__(self) -> str:
        return f"<result of step {self.step!r}{''.join(f'[{p!r}]' for p in self.path)}>"


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
            "RoleArn": ROLE,
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


class PipelineRun:
    """One run (execution) of a pipeline: status, steps, wait, stop, retry, and step results."""

    def __init__(self, arn: str, connection: Connection | None = None) -> None:
        self.arn = arn
        self.connection = connection or connect()

    @property
    def _client(self) -> Any:
        return self.connection.client("sagemaker")

    def describe(self) -> dict[str, Any]:
        found = dict(self._client.describe_pipeline_execution(PipelineExecutionArn=self.arn))
        found.pop("ResponseMetadata", None)
        return found

    @property
    def status(self) -> str:
        """Executing, Stopping, Stopped, Failed or Succeeded."""
        return str(self.describe()["PipelineExecutionStatus"])

    @property
    def failure_reason(self) -> str | None:
        return self.describe().get("FailureReason")

    @property
    def parameters(self) -> dict[str, str]:
        found = self._client.list_pipeline_parameters_for_execution(PipelineExecutionArn=self.arn)
        return {p["Name"]: p["Value"] for p in found["PipelineParameters"]}

    def steps(self) -> list[dict[str, Any]]:
        """Each step that started, in the order it started: name, status, attempts, the job or
        resource it made (``job``), whether it reused a cached run (``cached_from``), failure."""
        found = self._client.list_pipeline_execution_steps(
            PipelineExecutionArn=self.arn, SortOrder="Ascending"
        )
        return [_step_view(s) for s in found["PipelineExecutionSteps"]]

    def wait(self, *, show: bool = True, poll: float = 0.2) -> PipelineRun:
        """Until the run ends, printing each step as it starts and ends."""
        seen: dict[str, str] = {}
        with Progress(f"Pipeline run {self.arn.rsplit('/', 1)[1]}", show=show) as progress:
            while True:
                described = self.describe()
                for step in self.steps():
                    if seen.get(step["name"]) != step["status"]:
                        seen[step["name"]] = step["status"]
                        progress.log(_step_line(step))
                status = described["PipelineExecutionStatus"]
                if status in _TERMINAL:
                    break
                progress.update(
                    f"{status}: {sum(s in ('Executing', 'Starting') for s in seen.values())} step(s) running"
                )
                time.sleep(poll)
            reason = described.get("FailureReason")
            progress.done(f"{status} in {progress.elapsed:.1f} s" + (f": {reason}" if reason else ""))
        return self

    @property
    def cost(self) -> float:
        """What this run's own jobs have cost so far (retries included, steps reused from the
        cache not: they cost nothing this time), at the site's prices."""
        return float(self._native()["cost_usd"])

    def _native(self) -> dict[str, Any]:
        pipeline, execution = self.arn.split(":pipeline/", 1)[1].split("/execution/")
        return dict(self.connection.native(f"pipelines/{pipeline}/executions/{execution}"))

    def stop(self) -> None:
        self._client.stop_pipeline_execution(PipelineExecutionArn=self.arn)

    def retry(self) -> PipelineRun:
        """Run a failed or stopped run on: its failed and stopped steps again."""
        self._client.retry_pipeline_execution(PipelineExecutionArn=self.arn)
        return self

    def result(self, step: StepResult | str) -> Any:
        """What a function step returned (or an item of it), or its exception raised again."""
        name = step.step if isinstance(step, StepResult) else step
        path = step.path if isinstance(step, StepResult) else ()
        found = {s["name"]: s for s in self.steps()}.get(name)
        if found is None or "job" not in found:
            raise ValidationError(f"Step {name!r} has not run in {self.arn}", field="step", value=name)
        sm = self._client
        job = sm.describe_processing_job(ProcessingJobName=found["job"])
        outputs = {o["OutputName"]: o["S3Output"]["S3Uri"] for o in job["ProcessingOutputConfig"]["Outputs"]}
        if "result" not in outputs:
            raise ValidationError(f"Step {name!r} is not a function step", field="step", value=name)
        files = _read_outcome(self.connection, outputs["result"])
        if "result.pkl" in files:
            value = pickle.loads(files["result.pkl"])  # the caller's own function's value
            for part in path:
                value = value[part]
            return value
        if "error.pkl" in files:
            raise pickle.loads(files["error.pkl"])
        reason = found.get("failure") or job.get("FailureReason")
        raise RemoteError(
            f"Step {name!r} left no result ({found['status']}): {reason}",
            job_name=found["job"],
            status=found["status"],
            failure_reason=reason,
            remote_traceback=files.get("traceback.txt", b"").decode(errors="replace") or None,
        )

    def __repr__(self) -> str:
        return f"PipelineRun({self.arn!r}, status={self.status!r})"


# -- a function step ----------------------------------------------------------------------------
class _FunctionStep:
    def __init__(
        self,
        name: str,
        func: Callable[..., Any],
        args: Any,
        kwargs: Any,
        options: RemoteOptions,
        needs: list[str],
        parameters: list[str],
        retries: int,
        cache: str | None,
    ) -> None:
        self.name = name
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.options = options
        self.needs = needs
        self.parameters = parameters
        self.retries = retries
        self.cache = cache

    def definition(self, pipeline: Pipeline, bucket: str) -> dict[str, Any]:
        connection = pipeline.connection
        with tempfile.TemporaryDirectory(prefix="shipyard-pipeline-") as work:
            call = Path(work) / "call" / "call.pkl"
            call.parent.mkdir()
            with call.open("wb") as f:
                _pickle_call(self.func, tuple(self.args), dict(self.kwargs), f)
            code = Path(work) / "code"
            sources = _local_sources(sys.modules.get(getattr(self.func, "__module__", "") or ""))
            _check_size(self.name, sources)
            for arcname, path in sources.items():
                (code / arcname).parent.mkdir(parents=True, exist_ok=True)
                (code / arcname).write_bytes(path.read_bytes())
            code.mkdir(exist_ok=True)
            (code / RUNNER).write_text(_RUNNER_SOURCE)
            (code / "requirements.txt").write_text(
                "\n".join(_with_cloudpickle(self.options.requirements)) + "\n"
            )
            call_uri, code_uri = _upload_local(connection, call.parent), _upload_local(connection, code)
        inputs = [_input("code", code_uri, _CODE), _input("call", call_uri, "/opt/ml/processing/input/call")]
        for need in self.needs:
            result = {"Get": f"Steps.{need}.ProcessingOutputConfig.Outputs['result'].S3Output.S3Uri"}
            inputs.append(_input(f"step-{need}", result, f"{_STEPS}/{need}"))
        destination = {
            "Std:Join": {
                "On": "/",
                "Values": [
                    "s3:/",
                    bucket,
                    "pipelines",
                    pipeline.name,
                    {"Get": "Execution.PipelineExecutionId"},
                    self.name,
                ],
            }
        }
        environment: dict[str, Any] = {
            "SHIPYARD_CALL": "/opt/ml/processing/input/call/call.pkl",
            "SHIPYARD_OUT": _OUT,
            "SHIPYARD_STEPS": _STEPS,
            "SM_HP_PYTHON": _python_tag(),
            "SM_OUTPUT_DIR": "/opt/ml/output",
            **{f"SHIPYARD_PARAM_{p}": {"Get": f"Parameters.{p}"} for p in self.parameters},
        }
        definition: dict[str, Any] = {
            "Name": self.name,
            "Type": "Processing",
            "DisplayName": getattr(self.func, "__qualname__", self.name)[:82],
            "Arguments": {
                "ProcessingResources": {
                    "ClusterConfig": {
                        "InstanceCount": 1,
                        "InstanceType": self.options.instance_type,
                        "VolumeSizeInGB": 30,
                    }
                },
                "AppSpecification": {
                    "ImageUri": image_for(self.options.framework, self.options.framework_version, None),
                    "ContainerEntrypoint": ["python3", f"{_CODE}/{RUNNER}"],
                },
                "RoleArn": ROLE,
                "ProcessingInputs": inputs,
                "ProcessingOutputConfig": {
                    "Outputs": [
                        {
                            "OutputName": "result",
                            "S3Output": {"S3Uri": destination, "LocalPath": _OUT, "S3UploadMode": "EndOfJob"},
                        }
                    ]
                },
                "Environment": environment,
                "StoppingCondition": {"MaxRuntimeInSeconds": self.options.max_run},
            },
            "PropertyFiles": [
                {"PropertyFileName": "result", "OutputName": "result", "FilePath": "result.json"}
            ],
        }
        checks = [c[0] for c in pipeline._checks if _before(pipeline, c[0], self.name)]
        if checks:
            definition["DependsOn"] = checks
        if self.retries:
            definition["RetryPolicies"] = [
                {
                    "ExceptionType": [
                        "SageMaker.JOB_INTERNAL_ERROR",
                        "SageMaker.CAPACITY_ERROR",
                        "Step.SERVICE_FAULT",
                    ],
                    "IntervalSeconds": 1,
                    "BackoffRate": 2.0,
                    "MaxAttempts": self.retries,
                }
            ]
        if self.cache:
            definition["CacheConfig"] = {"Enabled": True, "ExpireAfter": self.cache}
        return definition


def _before(pipeline: Pipeline, check: str, step: str) -> bool:
    """Whether ``check`` was added before ``step`` (so the step waits for it)."""
    return pipeline._order.index(check) < pipeline._order.index(step)


def _input(name: str, uri: Any, local: str) -> dict[str, Any]:
    return {
        "InputName": name,
        "S3Input": {"S3Uri": uri, "LocalPath": local, "S3DataType": "S3Prefix", "S3InputMode": "File"},
    }


def _placeholders(value: Any, found: list[StepResult]) -> Any:
    """The arguments as they travel: parameters and step results replaced by references."""
    if isinstance(value, StepResult):
        found.append(value)
        return value.placeholder()
    if isinstance(value, Parameter):
        return value.placeholder()
    if isinstance(value, dict):
        return {k: _placeholders(v, found) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v, found) for v in value]
    if type(value) is tuple:
        return tuple(_placeholders(v, found) for v in value)
    return value


def _parameters_in(value: Any) -> set[Parameter]:
    if isinstance(value, Parameter):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_parameters_in(v) for v in value.values())) if value else set()
    if isinstance(value, list | tuple):
        return set().union(*(_parameters_in(v) for v in value)) if value else set()
    return set()


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _read_outcome(connection: Connection, uri: str) -> dict[str, bytes]:
    from botocore.exceptions import ClientError

    bucket, prefix = uri[len("s3://") :].split("/", 1)
    s3 = connection.client("s3")
    files = {}
    for name in ("result.pkl", "error.pkl", "traceback.txt"):
        try:
            files[name] = s3.get_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/{name}")["Body"].read()
        except ClientError:
            continue
    return files


def _step_view(step: Mapping[str, Any]) -> dict[str, Any]:
    metadata = step.get("Metadata") or {}
    view: dict[str, Any] = {
        "name": step["StepName"],
        "status": step["StepStatus"],
        "attempts": step.get("AttemptCount", 1),
        "started": step.get("StartTime"),
        "ended": step.get("EndTime"),
    }
    for kind, value in metadata.items():
        if "Arn" in value:
            view["job"] = str(value["Arn"]).rsplit("/", 1)[1] if kind != "RegisterModel" else value["Arn"]
            view["kind"] = kind
        if kind == "Condition":
            view["outcome"] = value.get("Outcome")
    if step.get("CacheHitResult"):
        view["cached_from"] = step["CacheHitResult"]["SourcePipelineExecutionArn"]
    if step.get("FailureReason"):
        view["failure"] = step["FailureReason"]
    return view


def _step_line(step: Mapping[str, Any]) -> str:
    extra = ""
    if step.get("cached_from"):
        extra = f" (cached from run {str(step['cached_from']).rsplit('/', 1)[1]})"
    elif step.get("outcome"):
        extra = f" ({step['outcome']})"
    elif step.get("job"):
        extra = f" ({step['job']})"
    if step["status"] == "Failed" and step.get("failure"):
        extra += f": {str(step['failure']).splitlines()[0][:200]}"
    return f"step {step['name']}: {step['status']}{extra}"


def _iter_pipelines(connection: Connection) -> Iterator[dict[str, Any]]:
    client = connection.client("sagemaker")
    token = None
    while True:
        page = client.list_pipelines(**({"NextToken": token} if token else {}), MaxResults=100)
        yield from page["PipelineSummaries"]
        token = page.get("NextToken")
        if not token:
            return


def pipelines(connection: Connection | None = None) -> list[dict[str, Any]]:
    """Every pipeline on the server (name, description, created, last run), newest first."""
    return [
        {
            "name": p["PipelineName"],
            "description": p.get("PipelineDescription"),
            "created": p.get("CreationTime"),
            "last_run": p.get("LastExecutionTime"),
        }
        for p in _iter_pipelines(connection or connect())
    ]
