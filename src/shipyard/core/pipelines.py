"""SageMaker pipeline definitions (Version 2020-12-01): parsed, checked and evaluated, without I/O.

The definition JSON is the program. :class:`Definition` parses it into steps (the steps of a
Condition's IfSteps and ElseSteps flattened, each knowing its branch), works out every step's
dependencies (``DependsOn``, the steps its arguments refer to, its condition), and checks that
each reference can be resolved before anything runs. :func:`evaluate` resolves an argument tree
against a :class:`Scope`: ``Get`` (parameters, execution variables, step properties, property
files), ``Std:Join`` and ``Std:JsonGet``. :func:`decide` evaluates a Condition step's conditions.

What a step's properties are (its job's Describe answer, say) and how a property file is read are
the caller's business: this module only walks them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

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


# -- property paths -----------------------------------------------------------------------------
_SEGMENT = re.compile(
    r"""\.(?P<name>[A-Za-z0-9_\-:]+)|\[(?P<index>-?\d+)\]|\[(?P<q>['"])(?P<key>(?:(?!(?P=q)).)*)(?P=q)\]"""
)


def parse_path(path: str) -> list[str | int]:
    """``A.B[0]['k'].C`` → ``["A", "B", 0, "k", "C"]``; ValueError if it is not such a path."""
    text = "." + path if path and path[0] not in ".[" else path
    parts: list[str | int] = []
    position = 0
    while position < len(text):
        match = _SEGMENT.match(text, position)
        if match is None:
            raise ValueError(f"cannot read the path {path!r} at {text[position:]!r}")
        if match["name"] is not None:
            parts.append(match["name"])
        elif match["index"] is not None:
            parts.append(int(match["index"]))
        else:
            parts.append(match["key"])
        position = match.end()
    if not parts:
        raise ValueError("the path is empty")
    return parts


def walk(value: Any, parts: Sequence[str | int], *, where: str) -> Any:
    """Follow ``parts`` into JSON-like ``value``. A string key into a list picks the element
    whose name is that key (``Outputs['train']`` is the output named train, as in SageMaker's
    property paths). KeyError with a message when a part is missing."""
    current = value
    for i, part in enumerate(parts):
        shown = where + "".join(f"[{p!r}]" if not isinstance(p, str) else f".{p}" for p in parts[: i + 1])
        if isinstance(part, int):
            if not isinstance(current, list) or not -len(current) <= part < len(current):
                raise KeyError(f"{shown} does not exist")
            current = current[part]
        elif isinstance(current, Mapping):
            if part not in current:
                raise KeyError(f"{shown} does not exist")
            current = current[part]
        elif isinstance(current, list):
            found = [
                item
                for item in current
                if isinstance(item, Mapping)
                and any(k.endswith("Name") and v == part for k, v in item.items())
            ]
            if not found:
                raise KeyError(f"{shown} does not exist (no element is named {part!r})")
            current = found[0]
        else:
            raise KeyError(f"{shown} does not exist")
    return current


# -- expressions --------------------------------------------------------------------------------
class Scope(Protocol):
    """What expressions read at run time."""

    def parameter(self, name: str) -> Any: ...

    def execution_variable(self, name: str) -> Any: ...

    def step_properties(self, step: str) -> Mapping[str, Any]: ...

    def property_file(self, step: str, name: str) -> Any: ...

    def json_file(self, s3_uri: str) -> Any: ...


class ResolutionError(Exception):
    """A reference that cannot be resolved now (the message says which and why)."""


def _get(reference: str, scope: Scope) -> Any:
    kind, _, rest = reference.partition(".")
    if kind == "Parameters":
        return scope.parameter(rest)
    if kind == "Execution":
        return scope.execution_variable(rest)
    if kind == "Steps":
        step, _, path = rest.partition(".")
        if path.startswith("PropertyFiles."):
            return {"PropertyFile": (step, path.removeprefix("PropertyFiles."))}
        try:
            parts = parse_path(path)
        except ValueError as exc:
            raise ResolutionError(f"{reference}: {exc}") from None
        try:
            return walk(scope.step_properties(step), parts, where=f"Steps.{step}")
        except KeyError as exc:
            raise ResolutionError(exc.args[0]) from None
    raise ResolutionError(f"{reference!r} is not a parameter, execution variable or step property")


def _json_path(document: Any, path: str, where: str) -> Any:
    try:
        return walk(document, parse_path(path), where=where)
    except (KeyError, ValueError) as exc:
        raise ResolutionError(str(exc.args[0])) from None


def evaluate(value: Any, scope: Scope) -> Any:
    """Resolve every expression in ``value`` (a JSON tree); ResolutionError if one cannot be."""
    if isinstance(value, list):
        return [evaluate(v, scope) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, operand),) = value.items()
        if key == "Get" and isinstance(operand, str):
            return _get(operand, scope)
        if key == "Std:Join" and isinstance(operand, dict):
            parts = evaluate(operand.get("Values", []), scope)
            return str(operand.get("On", "")).join(_text(p) for p in parts)
        if key == "Std:JsonGet" and isinstance(operand, dict):
            path = evaluate(operand.get("Path"), scope)
            if "PropertyFile" in operand:
                ref = evaluate(operand["PropertyFile"], scope)
                if not isinstance(ref, dict) or "PropertyFile" not in ref:
                    raise ResolutionError(
                        f"Std:JsonGet's PropertyFile {operand['PropertyFile']!r} is not one"
                    )
                step, name = ref["PropertyFile"]
                document = scope.property_file(step, name)
                return _json_path(document, str(path), f"property file {name} of step {step}")
            uri = evaluate(operand.get("S3Uri"), scope)
            return _json_path(scope.json_file(str(uri)), str(path), str(uri))
    return {k: evaluate(v, scope) for k, v in value.items()}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def references(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every ``Get`` reference in ``value``, with where it is: ``(reference, path)``."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from references(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("Get"), str):
            yield value["Get"], path
            return
        for key, item in value.items():
            yield from references(item, f"{path}.{key}" if path else key)


# -- conditions ---------------------------------------------------------------------------------
_COMPARISONS: Mapping[str, Callable[[Any, Any], bool]] = {
    "Equals": lambda a, b: a == b,
    "GreaterThan": lambda a, b: a > b,
    "GreaterThanOrEqualTo": lambda a, b: a >= b,
    "LessThan": lambda a, b: a < b,
    "LessThanOrEqualTo": lambda a, b: a <= b,
}
CONDITION_TYPES = (*_COMPARISONS, "In", "Not", "Or")


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _comparable(left: Any, right: Any) -> tuple[Any, Any]:
    """Numbers compare as numbers (a numeric string counts when the other side is a number)."""
    a, b = _number(left), _number(right)
    numeric = isinstance(left, int | float) or isinstance(right, int | float)
    if (
        a is not None
        and b is not None
        and numeric
        and not isinstance(left, bool)
        and not isinstance(right, bool)
    ):
        return a, b
    return left, right


def decide(condition: Mapping[str, Any], scope: Scope) -> bool:
    """The outcome of one condition of a Condition step."""
    kind = str(condition.get("Type"))
    if kind in _COMPARISONS:
        left, right = _comparable(
            evaluate(condition["LeftValue"], scope), evaluate(condition["RightValue"], scope)
        )
        try:
            return _COMPARISONS[kind](left, right)
        except TypeError:
            raise ResolutionError(f"{kind} cannot compare {left!r} with {right!r}") from None
    if kind == "In":
        query = evaluate(condition["QueryValue"], scope)
        return any(
            _comparable(query, v)[0] == _comparable(query, v)[1] for v in evaluate(condition["Values"], scope)
        )
    if kind == "Not":
        return not decide(condition["Expression"], scope)
    if kind == "Or":
        return any(decide(c, scope) for c in condition["Conditions"])
    raise ResolutionError(f"unknown condition type {kind!r}")


def _check_condition(condition: Any, path: str) -> None:
    if not isinstance(condition, dict):
        raise ValueError(f"{path} must be an object")
    kind = str(condition.get("Type"))
    needed = {
        **{k: ("LeftValue", "RightValue") for k in _COMPARISONS},
        "In": ("QueryValue", "Values"),
        "Not": ("Expression",),
        "Or": ("Conditions",),
    }.get(kind)
    if needed is None:
        raise ValueError(f"{path}.Type {kind!r} is not a condition type ({', '.join(CONDITION_TYPES)})")
    for member in needed:
        if member not in condition:
            raise ValueError(f"{path}.{member} is missing")
    if kind == "Not":
        _check_condition(condition["Expression"], f"{path}.Expression")
    if kind == "Or":
        for i, c in enumerate(condition["Conditions"]):
            _check_condition(c, f"{path}.Conditions[{i}]")


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
                _check_condition(condition, f"Arguments.Conditions[{i}]")
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


def exception_type(failure_reason: str | None, *, job: bool) -> str | None:
    """The retry policy exception type a failure counts as, or None when no policy covers it
    (a job's own error: the algorithm failed, as on SageMaker)."""
    reason = failure_reason or ""
    if job:
        if reason.startswith("InternalServerError"):
            return "SageMaker.JOB_INTERNAL_ERROR"
        if reason.startswith("CapacityError"):
            return "SageMaker.CAPACITY_ERROR"
        return None
    return None


# -- pipelines and their executions -------------------------------------------------------------
class ExecutionStatus(enum.StrEnum):
    EXECUTING = "Executing"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    FAILED = "Failed"
    SUCCEEDED = "Succeeded"

    @property
    def is_terminal(self) -> bool:
        return self in (ExecutionStatus.STOPPED, ExecutionStatus.FAILED, ExecutionStatus.SUCCEEDED)


class StepStatus(enum.StrEnum):
    STARTING = "Starting"
    EXECUTING = "Executing"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    FAILED = "Failed"
    SUCCEEDED = "Succeeded"

    @property
    def is_terminal(self) -> bool:
        return self in (StepStatus.STOPPED, StepStatus.FAILED, StepStatus.SUCCEEDED)


@dataclasses.dataclass(frozen=True)
class Pipeline:
    name: str
    arn: str
    created: dt.datetime
    last_modified: dt.datetime
    definition: str
    version: int = 1
    display_name: str | None = None
    description: str | None = None
    role_arn: str | None = None
    parallelism: int | None = None
    last_run: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class StepRun:
    """One step of an execution, as far as it got. ``job`` is ``{"kind", "name", "arn"}`` of what
    it created (a job, a model, a model package); ``properties`` what later steps read of it."""

    name: str
    type: str
    status: StepStatus
    started: dt.datetime
    ended: dt.datetime | None = None
    attempts: int = 1
    job: Mapping[str, Any] | None = None
    properties: Mapping[str, Any] | None = None
    property_files: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    cache_key: str | None = None
    cache_source: str | None = None  # the execution whose run this one reused
    failure_reason: str | None = None
    retry_at: dt.datetime | None = None
    retries: Mapping[str, int] = dataclasses.field(default_factory=dict)  # per policy index
    earlier_jobs: tuple[str, ...] = ()  # the jobs of attempts before this one

    @property
    def jobs(self) -> tuple[str, ...]:
        """Every job this step ran, oldest first."""
        current = (self.job or {}).get("arn") and (self.job or {}).get("name")
        return (*self.earlier_jobs, current) if current else self.earlier_jobs

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["status"] = self.status.value
        for key in ("started", "ended", "retry_at"):
            data[key] = data[key].isoformat() if data[key] else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepRun:
        values = dict(data)
        values["status"] = StepStatus(values["status"])
        for key in ("started", "ended", "retry_at"):
            values[key] = dt.datetime.fromisoformat(values[key]) if values.get(key) else None
        values["earlier_jobs"] = tuple(values.get("earlier_jobs") or ())
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Execution:
    arn: str
    pipeline: str
    pipeline_arn: str
    created: dt.datetime
    status: ExecutionStatus
    definition: str
    parameters: Mapping[str, Any]  # every parameter's value for this run, typed
    last_modified: dt.datetime
    display_name: str | None = None
    description: str | None = None
    parallelism: int | None = None
    failure_reason: str | None = None
    steps: Mapping[str, StepRun] = dataclasses.field(default_factory=dict)
    owner: str | None = None
    region: str = "us-east-1"
    ended: dt.datetime | None = None

    @property
    def id(self) -> str:
        return self.arn.rsplit("/", 1)[1]

    def with_step(self, run: StepRun, now: dt.datetime) -> Execution:
        return dataclasses.replace(self, steps={**self.steps, run.name: run}, last_modified=now)

    def parameter_list(self) -> list[dict[str, str]]:
        return [{"Name": k, "Value": _text(v)} for k, v in self.parameters.items()]
