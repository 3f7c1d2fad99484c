"""The roles a SageMaker request passes to what it creates (pure).

A job acts as the role its request names (``RoleArn``; a model's ``ExecutionRoleArn``), so
naming one is *passing* it, which IAM guards with ``iam:PassRole`` on the role's ARN. This
module finds the role ARNs in a request: :func:`passed_roles` for the SageMaker operations that
take one, with where each was found (``TrainingJobDefinitions[1].RoleArn``), for the error that
names it. A pipeline passes every role its steps name, so :func:`pipeline_roles` walks a
definition: the role members of its steps (in condition branches too), and its parameters'
default values that are role ARNs (a step may take its role from a parameter); the values a
``StartPipelineExecution`` gives parameters are passed roles too.

Only values that are role ARNs (``arn:aws:iam::<account>:role/<path><name>``) are returned; any
other value is left to the request's validation, which names it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from typing import Any, TypeGuard

# The request members that pass a role, by operation (a dotted path; [] is every item of a list).
_ROLE_MEMBERS: dict[str, tuple[str, ...]] = {
    "CreateTrainingJob": ("RoleArn",),
    "CreateProcessingJob": ("RoleArn",),
    "CreateModel": ("ExecutionRoleArn",),
    "CreateEndpointConfig": ("ExecutionRoleArn",),  # an endpoint for inference components
    "CreateHyperParameterTuningJob": ("TrainingJobDefinition.RoleArn", "TrainingJobDefinitions[].RoleArn"),
    "CreatePipeline": ("RoleArn",),
    "UpdatePipeline": ("RoleArn",),
    "StartPipelineExecution": ("RoleArn",),
    "CreateNotebookInstance": ("RoleArn",),
    "UpdateNotebookInstance": ("RoleArn",),
}
# Every SageMaker operation that passes a role (a transform job: its model's).
ROLE_OPERATIONS = frozenset({*_ROLE_MEMBERS, "CreateTransformJob"})
# Members of a pipeline step's arguments that name a role.
_STEP_ROLE_KEYS = frozenset({"RoleArn", "ExecutionRoleArn"})
# Operations whose pipeline definition passes the roles its steps name.
PIPELINE_DEFINERS = frozenset({"CreatePipeline", "UpdatePipeline"})


@dataclasses.dataclass(frozen=True)
class RoleReference:
    """A role ARN a request passes, and the member that names it (``RoleArn``,
    ``PipelineDefinition.Steps[0].Arguments.RoleArn``, ``PipelineParameters[2].Value``)."""

    member: str
    arn: str


def is_role_arn(value: object) -> TypeGuard[str]:
    """Whether ``value`` is an IAM role's ARN (``arn:<partition>:iam::<account>:role/...``)."""
    if not isinstance(value, str):
        return False
    parts = value.split(":", 5)
    return (
        len(parts) == 6
        and parts[0] == "arn"
        and parts[2] == "iam"
        and parts[5].startswith("role/")
        and len(parts[5]) > len("role/")
        and not parts[5].endswith("/")
    )


def passed_roles(operation: str, params: Mapping[str, Any]) -> list[RoleReference]:
    """The roles a SageMaker request passes through its own members (not those of a pipeline
    definition: :func:`pipeline_roles`), in the order the members are listed."""
    found: list[RoleReference] = []
    for path in _ROLE_MEMBERS.get(operation, ()):
        for member, value in _values(params, path.split("."), ""):
            if is_role_arn(value):
                found.append(RoleReference(member, value))
    if operation == "StartPipelineExecution":
        for index, parameter in enumerate(_list(params.get("PipelineParameters"))):
            value = parameter.get("Value") if isinstance(parameter, Mapping) else None
            if is_role_arn(value):
                found.append(RoleReference(f"PipelineParameters[{index}].Value", value))
    return found


def pipeline_roles(definition: str, member: str = "PipelineDefinition") -> list[RoleReference]:
    """The roles a pipeline definition (JSON text) passes: its steps' role members with a
    literal value, wherever the steps nest, and the default values of its parameters that are
    role ARNs. A definition that is not JSON names none (its create fails on its own)."""
    try:
        document = json.loads(definition)
    except ValueError:
        return []
    if not isinstance(document, Mapping):
        return []
    found = [
        RoleReference(path, value)
        for path, value in _role_members(document.get("Steps"), f"{member}.Steps")
        if is_role_arn(value)
    ]
    for index, parameter in enumerate(_list(document.get("Parameters"))):
        value = parameter.get("DefaultValue") if isinstance(parameter, Mapping) else None
        if is_role_arn(value):
            found.append(RoleReference(f"{member}.Parameters[{index}].DefaultValue", value))
    return found


def _values(value: Any, path: list[str], prefix: str) -> Iterator[tuple[str, Any]]:
    """The values at a dotted ``path`` (``Name[]`` steps into each item of a list)."""
    if not path:
        yield prefix, value
        return
    if not isinstance(value, Mapping):
        return
    head, rest = path[0], path[1:]
    name = head.removesuffix("[]")
    joined = f"{prefix}.{name}" if prefix else name
    if head.endswith("[]"):
        for index, item in enumerate(_list(value.get(name))):
            yield from _values(item, rest, f"{joined}[{index}]")
    elif name in value:
        yield from _values(value[name], rest, joined)


def _role_members(value: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in _STEP_ROLE_KEYS and isinstance(item, str):
                yield f"{path}.{key}", item
            else:
                yield from _role_members(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _role_members(item, f"{path}[{index}]")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def could_not_assume(reference: RoleReference, recorded_arn: str | None = None) -> str:
    """SageMaker's words for a role that does not exist, naming the member; ``recorded_arn``:
    the ARN of a role with the same name (another path), to point at."""
    hint = f" (a role of that name is recorded as {recorded_arn})" if recorded_arn else ""
    return (
        f"Could not assume role {reference.arn} ({reference.member}): no such role exists on this "
        f"server{hint}. Please ensure that the role exists and allows principal "
        "'sagemaker.amazonaws.com' to assume the role."
    )
