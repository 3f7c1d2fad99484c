"""A pipeline's function step: its call and code uploaded, and the Processing step that runs it
with ``shipyard.remote``'s runner; arguments that are parameters or earlier steps' results travel
as references the job replaces with their values."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.sdk._conditions import Parameter, StepResult
from shipyard.sdk._remote import RemoteOptions
from shipyard.sdk._remote_caller import (
    _check_size,
    _local_sources,
    _pickle_call,
    _python_tag,
    _with_cloudpickle,
)
from shipyard.sdk._remote_runner import _RUNNER_SOURCE, RUNNER
from shipyard.sdk._training import _upload_local, image_for

if TYPE_CHECKING:
    from shipyard.sdk._pipelines import Pipeline

_CODE = "/opt/ml/processing/input/code"
_STEPS = "/opt/ml/processing/input/steps"
_OUT = "/opt/ml/processing/output/result"


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
                "RoleArn": connection.role,
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
