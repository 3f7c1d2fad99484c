"""A pipeline definition (Version 2020-12-01) parsed and checked: parameters, steps (a Condition's
IfSteps and ElseSteps flattened, each knowing its branch), every step's dependencies, and every
reference checked before anything runs."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from shipyard.core.pipelines._expressions import check_condition, parse_path, references
from shipyard.errors import ValidationError

VERSION = "2020-12-01"

# Step types Shipyard runs, with the job (or resource) kind each creates.
JOB_STEP_TYPES = ("Processing", "Training", "Tuning", "Transform")
STEP_TYPES = (*JOB_STEP_TYPES, "Model", "CreateModel", "RegisterModel", "Condition", "Fail")

EXECUTION_VARIABLES = (
    "PipelineExecutionId",
    "PipelineExecutionArn",
    "PipelineName",
    "PipelineArn",
    "StartDateTime",
    "CurrentDateTime",
)

# What a step's cache key is made of, per type (SageMaker's "default cache key attributes").
CACHE_KEY_ATTRIBUTES: Mapping[str, tuple[str, ...]] = {
    "Processing": ("AppSpecification", "Environment", "ProcessingInputs"),
    "Training": (
        "AlgorithmSpecification",
        "CheckpointConfig",
        "DebugHookConfig",
        "DebugRuleConfigurations",
        "Environment",
        "HyperParameters",
        "InputDataConfig",
    ),
    "Tuning": ("HyperParameterTuningJobConfig", "TrainingJobDefinition", "TrainingJobDefinitions"),
    "Transform": ("DataProcessing", "Environment", "ModelName", "TransformInput"),
}

# Retry policies: the failures each exception type covers.
STEP_EXCEPTION_TYPES = ("Step.SERVICE_FAULT", "Step.THROTTLING")
JOB_EXCEPTION_TYPES = ("SageMaker.JOB_INTERNAL_ERROR", "SageMaker.CAPACITY_ERROR", "SageMaker.RESOURCE_LIMIT")


class DefinitionError(ValidationError):
    """A definition that cannot run: the message names the step and the path within it."""


class ParameterType(enum.Enum):
    STRING = "String"
    INTEGER = "Integer"
    FLOAT = "Float"
    BOOLEAN = "Boolean"


@dataclasses.dataclass(frozen=True)
class Parameter:
    name: str
    type: ParameterType
    default: Any = None

    def coerce(self, value: Any, *, field: str) -> Any:
        """A value given for this parameter (StartPipelineExecution sends strings) as its type."""
        try:
            if self.type is ParameterType.INTEGER:
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                return int(value)
            if self.type is ParameterType.FLOAT:
                if isinstance(value, bool):
                    raise ValueError
                return float(value)
            if self.type is ParameterType.BOOLEAN:
                if isinstance(value, bool):
                    return value
                lowered = str(value).strip().lower()
                if lowered not in ("true", "false"):
                    raise ValueError
                return lowered == "true"
            return value if isinstance(value, str) else json.dumps(value)
        except (TypeError, ValueError):
            raise ValidationError(
                f"Parameter {self.name!r} is of type {self.type.value}; {value!r} is not a "
                f"{self.type.value.lower()}",
                field=field,
                value=value,
            ) from None


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """One of a step's RetryPolicies: which failures it covers and how it waits between attempts."""

    exception_types: tuple[str, ...]
    interval_seconds: float = 1.0
    backoff_rate: float = 2.0
    max_attempts: int | None = None
    expire_after_minutes: float | None = None

    def covers(self, exception_type: str) -> bool:
        return exception_type in self.exception_types

    def delay(self, retries_so_far: int) -> float:
        """Seconds before the next attempt, after ``retries_so_far`` retries under this policy."""
        return self.interval_seconds * self.backoff_rate**retries_so_far

    def allows(self, retries_so_far: int, first_started: dt.datetime, now: dt.datetime) -> bool:
        if self.max_attempts is not None and retries_so_far >= self.max_attempts:
            return False
        if self.expire_after_minutes is not None:
            return (now - first_started).total_seconds() < self.expire_after_minutes * 60
        return self.max_attempts is not None


@dataclasses.dataclass(frozen=True)
class PropertyFile:
    name: str
    output_name: str
    file_path: str


@dataclasses.dataclass(frozen=True)
class CacheConfig:
    enabled: bool
    expire_after: dt.timedelta | None


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of a definition. ``branch`` is the Condition step and outcome that select it."""

    name: str
    type: str
    arguments: Any
    path: str  # where it is in the definition ("Steps[2]", "Steps[3].Arguments.IfSteps[0]")
    depends_on: tuple[str, ...] = ()
    cache: CacheConfig | None = None
    retry_policies: tuple[RetryPolicy, ...] = ()
    property_files: tuple[PropertyFile, ...] = ()
    branch: tuple[str, bool] | None = None
    display_name: str | None = None
    description: str | None = None

    @property
    def is_job(self) -> bool:
        return self.type in JOB_STEP_TYPES

    def property_file(self, name: str) -> PropertyFile | None:
        return next((f for f in self.property_files if f.name == name), None)

    def cache_key(self, arguments: Mapping[str, Any], pipeline: str) -> str:
        """What must be equal for a previous run of this step to be reused: the pipeline, the
        step, and the resolved arguments SageMaker compares for the step's type."""
        picked = {k: arguments.get(k) for k in CACHE_KEY_ATTRIBUTES.get(self.type, ())}
        raw = json.dumps([pipeline, self.name, self.type, picked], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()


# -- the definition -----------------------------------------------------------------------------
_UNIT = re.compile(r"(\d+(?:\.\d+)?)([A-Za-z])")
_DATE_UNITS = {"y": 365 * 86400, "m": 30 * 86400, "w": 7 * 86400, "d": 86400}
_TIME_UNITS = {"h": 3600, "m": 60, "s": 1}


def parse_duration(text: str) -> dt.timedelta:
    """An ISO 8601 duration as CacheConfig's ExpireAfter takes it (``PT1H``, ``30d``, ``T16m``,
    ``P30DT5H``); a month counts 30 days and a year 365."""
    body = text.strip()
    body = body[1:] if body[:1] in ("P", "p") else body
    date, _, time = body.partition("T") if "T" in body else body.partition("t")
    seconds = 0.0
    for part, units in ((date, _DATE_UNITS), (time, _TIME_UNITS)):
        matched = _UNIT.findall(part)
        if "".join(n + u for n, u in matched) != part or any(u.lower() not in units for _, u in matched):
            raise ValueError(f"{text!r} is not an ISO 8601 duration (e.g. PT1H, P30D, T16m)")
        seconds += sum(float(n) * units[u.lower()] for n, u in matched)
    if not date and not time:
        raise ValueError(f"{text!r} is not an ISO 8601 duration (e.g. PT1H, P30D, T16m)")
    return dt.timedelta(seconds=seconds)


@dataclasses.dataclass(frozen=True)
class Definition:
    parameters: Mapping[str, Parameter]
    steps: Mapping[str, Step]  # in definition order, branches' steps after their condition

    @classmethod
    def parse(cls, text: str) -> Definition:
        """Parse a definition; DefinitionError naming the step and path for what cannot run."""
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise DefinitionError(
                f"The pipeline definition is not JSON: {exc}", field="PipelineDefinition"
            ) from None
        if not isinstance(document, dict):
            raise DefinitionError("The pipeline definition must be a JSON object", field="PipelineDefinition")
        version = document.get("Version")
        if version != VERSION:
            raise DefinitionError(
                f"Definition Version {version!r} is not supported; Shipyard runs Version {VERSION!r}",
                field="PipelineDefinition.Version",
                value=version,
            )
        parameters: dict[str, Parameter] = {}
        for i, raw in enumerate(document.get("Parameters") or []):
            where = f"Parameters[{i}]"
            if not isinstance(raw, dict) or not isinstance(raw.get("Name"), str):
                raise DefinitionError(f"{where} needs a Name", field=where, value=raw)
            try:
                kind = ParameterType(raw.get("Type", "String"))
            except ValueError:
                raise DefinitionError(
                    f"{where} ({raw['Name']}): Type {raw.get('Type')!r} is not one of "
                    + ", ".join(t.value for t in ParameterType),
                    field=f"{where}.Type",
                    value=raw.get("Type"),
                ) from None
            parameter = Parameter(raw["Name"], kind)
            default = raw.get("DefaultValue")
            if default is not None:
                parameter = dataclasses.replace(
                    parameter, default=parameter.coerce(default, field=f"{where}.DefaultValue")
                )
            parameters[parameter.name] = parameter
        steps: dict[str, Step] = {}
        raw_steps = document.get("Steps")
        if not isinstance(raw_steps, list) or not raw_steps:
            raise DefinitionError("The pipeline definition has no Steps", field="PipelineDefinition.Steps")
        for i, raw in enumerate(raw_steps):
            _parse_step(raw, f"Steps[{i}]", None, steps)
        definition = cls(parameters, steps)
        definition._check_references()
        return definition

    def dependencies(self, name: str) -> set[str]:
        """The steps that must succeed before ``name`` may start."""
        step = self.steps[name]
        found = set(step.depends_on)
        for reference, _ in references(step.arguments):
            if reference.startswith("Steps."):
                found.add(reference.split(".")[1])
        if step.branch is not None:
            found.add(step.branch[0])
        found.discard(name)
        return found

    def _check_references(self) -> None:
        for step in self.steps.values():
            for dependency in step.depends_on:
                if dependency not in self.steps:
                    raise DefinitionError(
                        f"Step {step.name!r} ({step.path}.DependsOn) depends on {dependency!r}, which is not a step",
                        field=f"{step.path}.DependsOn",
                        value=dependency,
                    )
            for reference, where in references(step.arguments):
                self._check_reference(step, reference, f"{step.path}.Arguments.{where}")
        # A cycle would never start: find one and name it.
        state: dict[str, int] = {}

        def visit(name: str, trail: list[str]) -> None:
            state[name] = 1
            for dependency in sorted(self.dependencies(name)):
                if state.get(dependency) == 1:
                    cycle = (
                        [*trail[trail.index(dependency) :], dependency]
                        if dependency in trail
                        else [name, dependency]
                    )
                    raise DefinitionError(
                        "The steps depend on each other in a cycle: " + " → ".join(cycle),
                        field="PipelineDefinition.Steps",
                        value=cycle,
                    )
                if state.get(dependency) is None:
                    visit(dependency, [*trail, dependency])
            state[name] = 2

        for name in self.steps:
            if name not in state:
                visit(name, [name])

    def _check_reference(self, step: Step, reference: str, where: str) -> None:
        kind, _, rest = reference.partition(".")
        problem = None
        if kind == "Parameters":
            if rest not in self.parameters:
                problem = f"there is no parameter {rest!r}"
        elif kind == "Execution":
            if rest not in EXECUTION_VARIABLES:
                problem = f"there is no execution variable {rest!r} ({', '.join(EXECUTION_VARIABLES)})"
        elif kind == "Steps":
            target, _, path = rest.partition(".")
            if target not in self.steps:
                problem = f"there is no step {target!r}"
            elif path.startswith("PropertyFiles."):
                file = path.removeprefix("PropertyFiles.")
                if self.steps[target].property_file(file) is None:
                    problem = f"step {target!r} has no property file {file!r}"
            else:
                try:
                    parse_path(path)
                except ValueError as exc:
                    problem = str(exc)
        else:
            problem = "a Get reads Parameters.<name>, Execution.<variable> or Steps.<step>.<property>"
        if problem:
            raise DefinitionError(
                f"Step {step.name!r}: {where} refers to {reference!r}, but {problem}",
                field=where,
                value=reference,
            )


def _parse_step(raw: Any, path: str, branch: tuple[str, bool] | None, steps: dict[str, Step]) -> None:
    if not isinstance(raw, dict) or not isinstance(raw.get("Name"), str) or not raw["Name"]:
        raise DefinitionError(f"{path} needs a Name", field=path, value=raw)
    name = raw["Name"]
    label = f"Step {name!r} ({path})"
    if name in steps:
        raise DefinitionError(
            f"{label}: another step is named {name!r} too", field=f"{path}.Name", value=name
        )
    kind = raw.get("Type")
    if kind not in STEP_TYPES:
        raise DefinitionError(
            f"{label} has Type {kind!r}, which Shipyard does not run (it runs {', '.join(STEP_TYPES)})",
            field=f"{path}.Type",
            value=kind,
        )
    arguments = raw.get("Arguments", {})
    if kind != "Fail" and not isinstance(arguments, dict):
        raise DefinitionError(f"{label}: Arguments must be an object", field=f"{path}.Arguments")
    try:
        depends_on = tuple(raw.get("DependsOn") or ())
        if not all(isinstance(d, str) for d in depends_on):
            raise ValueError("DependsOn must list step names")
        cache = None
        if raw.get("CacheConfig"):
            config = raw["CacheConfig"]
            expire = config.get("ExpireAfter")
            cache = CacheConfig(bool(config.get("Enabled")), parse_duration(expire) if expire else None)
        retry = tuple(
            _retry_policy(p, f"RetryPolicies[{i}]") for i, p in enumerate(raw.get("RetryPolicies") or [])
        )
        files = tuple(
            PropertyFile(f["PropertyFileName"], f["OutputName"], f["FilePath"])
            for f in raw.get("PropertyFiles") or []
        )
        if kind == "Condition":
            for i, condition in enumerate(arguments.get("Conditions") or []):
                check_condition(condition, f"Arguments.Conditions[{i}]")
            if not arguments.get("Conditions"):
                raise ValueError("Arguments.Conditions is missing")
    except (KeyError, TypeError, ValueError) as exc:
        detail = f"{exc.args[0]} is missing" if isinstance(exc, KeyError) else str(exc)
        raise DefinitionError(f"{label}: {detail}", field=path, value=name) from None
    nested = {}
    if kind == "Condition":
        nested = {"IfSteps": arguments.get("IfSteps") or [], "ElseSteps": arguments.get("ElseSteps") or []}
        arguments = {"Conditions": arguments["Conditions"]}
    steps[name] = Step(
        name,
        kind,
        arguments,
        path,
        depends_on,
        cache,
        retry,
        files,
        branch,
        raw.get("DisplayName"),
        raw.get("Description"),
    )
    for member, branch_steps in nested.items():
        for i, inner in enumerate(branch_steps):
            _parse_step(inner, f"{path}.Arguments.{member}[{i}]", (name, member == "IfSteps"), steps)


def _retry_policy(raw: Mapping[str, Any], where: str) -> RetryPolicy:
    types = tuple(raw["ExceptionType"])
    for t in types:
        if t not in STEP_EXCEPTION_TYPES + JOB_EXCEPTION_TYPES:
            raise ValueError(
                f"{where}.ExceptionType {t!r} is not one of {', '.join(STEP_EXCEPTION_TYPES + JOB_EXCEPTION_TYPES)}"
            )
    return RetryPolicy(
        types,
        float(raw.get("IntervalSeconds", 1)),
        float(raw.get("BackoffRate", 2.0)),
        int(raw["MaxAttempts"]) if raw.get("MaxAttempts") is not None else None,
        float(raw["ExpireAfterMin"]) if raw.get("ExpireAfterMin") is not None else None,
    )
