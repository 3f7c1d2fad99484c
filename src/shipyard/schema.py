"""Requests and responses shaped by botocore's own service model.

:meth:`ServiceSchema.validate_input` checks a decoded AWS JSON request body against the operation's
input shape — required members, JSON types, enums, numeric ranges, lengths and patterns — and
reports every violation at once in AWS's own words::

    2 validation errors detected: Value '0' at 'resourceConfig.instanceCount' failed to satisfy
    constraint: Member must have value greater than or equal to 1; Value null at 'roleArn' failed
    to satisfy constraint: Member must not be null

It converts wire values to Python ones (timestamps to aware datetimes, blobs to bytes). Members the
model does not know are kept and ignored: a client with a newer botocore may send them.

:meth:`ServiceSchema.shape_output` turns a handler's result (datetimes, Decimals, enums, bytes)
into the JSON the output shape describes, dropping None members; ``strict=True`` (used by the
tests) also refuses members the shape does not have and values of the wrong type.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import enum
import functools
import re
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Any

from botocore.model import OperationModel, ServiceModel, Shape

from shipyard.errors import ValidationError

_MAX_REPORTED = 10


class ServiceSchema:
    """One AWS service's model, for validating requests and shaping responses."""

    def __init__(self, model: ServiceModel) -> None:
        self.model = model
        self.operation_names = frozenset(model.operation_names)

    @classmethod
    @functools.cache
    def load(cls, service_name: str) -> ServiceSchema:
        import botocore.session

        return cls(botocore.session.get_session().get_service_model(service_name))

    def has_operation(self, name: str) -> bool:
        return name in self.operation_names

    @functools.cache  # noqa: B019 - one schema per service, alive for the process
    def _operation(self, name: str) -> OperationModel:
        return self.model.operation_model(name)

    def input_shape(self, operation: str) -> Shape | None:
        return self._operation(operation).input_shape

    def output_shape(self, operation: str) -> Shape | None:
        return self._operation(operation).output_shape

    # -- input ----------------------------------------------------------------------------------
    def validate_input(
        self,
        operation: str,
        params: object,
        *,
        extra_enum_values: Mapping[str, Collection[str]] | None = None,
    ) -> dict[str, Any]:
        """Validate and convert a request body; raise ValidationError listing every violation.

        ``extra_enum_values`` widens an enum shape by name: a site's own instance types are valid
        ``TrainingInstanceType`` values although botocore's model lists only AWS's.
        """
        shape = self._operation(operation).input_shape
        if shape is None:
            return {}
        problems: list[tuple[str, Any, str]] = []
        result = _check(shape, params, "", problems, extra_enum_values or {})
        if problems:
            count = len(problems)
            shown = "; ".join(
                f"Value {_show(value)} at '{path}' failed to satisfy constraint: {why}"
                for path, value, why in problems[:_MAX_REPORTED]
            )
            noun = "error" if count == 1 else "errors"
            path, value, _ = problems[0]
            raise ValidationError(f"{count} validation {noun} detected: {shown}", field=path, value=value)
        return result

    # -- output ---------------------------------------------------------------------------------
    def shape_output(
        self, operation: str, result: Mapping[str, Any], *, strict: bool = False
    ) -> dict[str, Any]:
        shape = self._operation(operation).output_shape
        if shape is None:
            return {}
        return _render(shape, result, shape.name, strict)

    # -- values built by the server -------------------------------------------------------------
    def coerce_input(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """A request the server built (a pipeline step's resolved arguments) with each value as
        the member it fills expects it: a Float parameter in HyperParameters (strings) becomes
        ``"0.3"``, a String parameter in InstanceCount a number. What cannot be converted is left
        for :meth:`validate_input` to name."""
        shape = self.input_shape(operation)
        return _typed(shape, dict(params)) if shape is not None else dict(params)

    def output_path_problem(self, operation: str, path: list[str | int]) -> str | None:
        """Why ``path`` does not exist in the operation's answer (None when it may)."""
        shape = self.output_shape(operation)
        if shape is None:
            return f"{operation} answers nothing"
        return _walk_shape(shape, path)

    def member_path_problem(self, operation: str, member: str, path: list[str | int]) -> str | None:
        """As :meth:`output_path_problem`, within the answer's member ``member``."""
        shape = self.output_shape(operation)
        if shape is None or member not in shape.members:
            return f"{operation} answers no {member}"
        return _walk_shape(shape.members[member], path)


# Instance types are enums in botocore's model; a site's own types (its instance catalog) are valid too.
SAGEMAKER_INSTANCE_TYPE_SHAPES = (
    "TrainingInstanceType",
    "ProcessingInstanceType",
    "ProductionVariantInstanceType",
    "TransformInstanceType",
)


def sagemaker_enum_widening(instance_types: Collection[str]) -> dict[str, Collection[str]]:
    """``extra_enum_values`` for SageMaker: the site's instance types for the instance-type shapes."""
    names = frozenset(instance_types)
    return {shape: names for shape in SAGEMAKER_INSTANCE_TYPE_SHAPES}


def _typed(shape: Shape, value: Any) -> Any:
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        members = shape.members
        return {k: _typed(members[k], v) if k in members else v for k, v in value.items()}
    if kind == "list" and isinstance(value, list):
        return [_typed(shape.member, v) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: _typed(shape.value, v) for k, v in value.items()}
    try:
        if kind == "string" and isinstance(value, bool):
            return "true" if value else "false"
        if kind == "string" and isinstance(value, int | float):
            return str(value)
        if kind in ("integer", "long") and isinstance(value, str | float) and not isinstance(value, bool):
            number = float(value)
            return int(number) if number.is_integer() else value
        if kind in ("float", "double") and isinstance(value, str):
            return float(value)
        if kind == "boolean" and isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    except ValueError:
        pass  # validation names it
    return value


def _walk_shape(shape: Shape, path: list[str | int]) -> str | None:
    for part in path:
        if shape.type_name == "structure":
            members = shape.members
            if not isinstance(part, str) or part not in members:
                return f"{shape.name} has no member {part!r} (it has {', '.join(members)})"
            shape = members[part]
        elif shape.type_name == "list":
            shape = shape.member
        elif shape.type_name == "map":
            shape = shape.value
        else:
            return f"{shape.name} is a {shape.type_name}: {part!r} cannot be read from it"
    return None


def _camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _join(path: str, member: str) -> str:
    return f"{path}.{_camel(member)}" if path else _camel(member)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return "'" + str(value)[:100] + "'"
    return f"'{value}'"


# Java's Unicode classes, as fragments of a Python character class. They err on the side of
# accepting: every non-ASCII character counts as a letter, mark, number, punctuation or symbol.
_JAVA_CLASSES = {
    r"\p{L}": "a-zA-Z\u00aa-\uffff",
    r"\p{M}": "\u0300-\u036f",
    r"\p{N}": "0-9",
    r"\p{Z}": " \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000",
    r"\p{P}": "!-/:-@\\[-`{-~",
    r"\p{S}": "!-/:-@\\[-`{-~",
    r"\p{Alnum}": "a-zA-Z0-9",
    r"\p{Print}": "\x20-\x7e",
    r"\p{Punct}": "!-/:-@\\[-`{-~",
}


@functools.lru_cache(maxsize=4096)
def _pattern(pattern: str) -> re.Pattern[str] | None:
    """Compile a model pattern (Java regex syntax) for Python; None when Python cannot."""
    translated, inside, i = "", False, 0
    while i < len(pattern):  # a Java class is a bracket expression of its own outside brackets
        java = next((j for j in _JAVA_CLASSES if pattern.startswith(j, i)), None)
        if java is not None:
            members = _JAVA_CLASSES[java]
            translated += members if inside else f"[{members}]"
            i += len(java)
            continue
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            translated += pattern[i : i + 2]
            i += 2
            continue
        if char == "[" and not inside:
            inside = True
        elif char == "]" and inside:
            inside = False
        translated += char
        i += 1
    try:
        return re.compile(translated, re.DOTALL)
    except re.error:
        return None


def _check(
    shape: Shape,
    value: Any,
    path: str,
    problems: list[tuple[str, Any, str]],
    extra: Mapping[str, Collection[str]],
) -> Any:
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        if not isinstance(value, dict):
            problems.append((path or shape.name, value, f"Member must be a JSON object ({shape.name})"))
            return value
        out = dict(value)
        members = shape.members
        for required in shape.required_members:
            if value.get(required) is None:
                problems.append((_join(path, required), None, "Member must not be null"))
        set_members = [name for name in members if value.get(name) is not None]
        if shape.metadata.get("union") and len(set_members) != 1:
            problems.append(
                (path or shape.name, value, f"Exactly one member must be set, got {len(set_members)}")
            )
        for name in set_members:
            out[name] = _check(members[name], value[name], _join(path, name), problems, extra)
        return out
    if kind == "list":
        if not isinstance(value, list):
            problems.append((path, value, "Member must be a JSON array"))
            return value
        _length(meta, len(value), path, value, problems)
        member = shape.member
        return [
            _check(member, item, f"{path}.{i + 1}.member", problems, extra) for i, item in enumerate(value)
        ]
    if kind == "map":
        if not isinstance(value, dict):
            problems.append((path, value, "Member must be a JSON object (map)"))
            return value
        _length(meta, len(value), path, value, problems)
        key_shape, value_shape = shape.key, shape.value
        out_map = {}
        for key, item in value.items():
            _check(key_shape, key, f"{path}.key", problems, extra)
            out_map[key] = _check(value_shape, item, f"{path}.{key}", problems, extra)
        return out_map
    if kind == "string":
        if not isinstance(value, str):
            problems.append((path, value, "Member must be a string"))
            return value
        if shape.enum and value not in shape.enum and value not in extra.get(shape.name, ()):
            problems.append((path, value, f"Member must satisfy enum value set: [{', '.join(shape.enum)}]"))
        _length(meta, len(value), path, value, problems)
        if "pattern" in meta:
            compiled = _pattern(meta["pattern"])
            if compiled is not None and not compiled.fullmatch(value):
                problems.append(
                    (path, value, f"Member must satisfy regular expression pattern: {meta['pattern']}")
                )
        return value
    if kind in ("integer", "long"):
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append((path, value, "Member must be an integer"))
            return value
        _range(meta, value, path, problems)
        return value
    if kind in ("float", "double"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append((path, value, "Member must be a number"))
            return value
        _range(meta, value, path, problems)
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            problems.append((path, value, "Member must be a boolean"))
        return value
    if kind == "timestamp":
        return _timestamp(value, path, problems)
    if kind == "blob":
        if not isinstance(value, str):
            problems.append((path, value, "Member must be a base64-encoded string"))
            return value
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            problems.append((path, value[:40], "Member must be valid base64"))
            return value
        _length(meta, len(data), path, value[:40], problems)
        return data
    return value


def _length(
    meta: Mapping[str, Any], length: int, path: str, value: Any, problems: list[tuple[str, Any, str]]
) -> None:
    if "min" in meta and length < meta["min"]:
        problems.append((path, value, f"Member must have length greater than or equal to {meta['min']}"))
    if "max" in meta and length > meta["max"]:
        problems.append((path, value, f"Member must have length less than or equal to {meta['max']}"))


def _range(meta: Mapping[str, Any], value: float, path: str, problems: list[tuple[str, Any, str]]) -> None:
    if "min" in meta and value < meta["min"]:
        problems.append((path, value, f"Member must have value greater than or equal to {meta['min']}"))
    if "max" in meta and value > meta["max"]:
        problems.append((path, value, f"Member must have value less than or equal to {meta['max']}"))


def _timestamp(value: Any, path: str, problems: list[tuple[str, Any, str]]) -> Any:
    if isinstance(value, bool):
        problems.append((path, value, "Member must be a timestamp"))
        return value
    if isinstance(value, int | float):
        try:
            return dt.datetime.fromtimestamp(value, tz=dt.UTC)
        except (OverflowError, OSError, ValueError):  # 1e20, NaN, inf
            problems.append((path, value, "Member must be a timestamp within range"))
            return value
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            try:
                return dt.datetime.fromtimestamp(float(value), tz=dt.UTC)
            except (OverflowError, OSError, ValueError):
                problems.append((path, value, "Member must be a timestamp (epoch seconds or ISO 8601)"))
                return value
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    problems.append((path, value, "Member must be a timestamp"))
    return value


def _render(shape: Shape, value: Any, path: str, strict: bool) -> Any:
    kind = shape.type_name
    if isinstance(value, enum.Enum):
        value = value.value
    if kind == "structure":
        if not isinstance(value, Mapping):
            return _bad(strict, path, value, "an object")
        members = shape.members
        out = {}
        for name, item in value.items():
            if item is None:
                continue
            if name not in members:
                if strict:
                    raise ValueError(f"{path}.{name} is not a member of {shape.name}")
                continue
            out[name] = _render(members[name], item, f"{path}.{name}", strict)
        return out
    if kind == "list":
        if not isinstance(value, list | tuple):
            return _bad(strict, path, value, "a list")
        return [_render(shape.member, item, f"{path}[{i}]", strict) for i, item in enumerate(value)]
    if kind == "map":
        if not isinstance(value, Mapping):
            return _bad(strict, path, value, "a map")
        return {k: _render(shape.value, v, f"{path}.{k}", strict) for k, v in value.items()}
    if kind == "timestamp":
        if isinstance(value, dt.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=dt.UTC)
            return value.timestamp()
        return value if isinstance(value, int | float) else _bad(strict, path, value, "a datetime")
    if kind in ("integer", "long"):
        if isinstance(value, Decimal) or (isinstance(value, float) and value.is_integer()):
            return int(value)
        return (
            value
            if isinstance(value, int) and not isinstance(value, bool)
            else _bad(strict, path, value, "an int")
        )
    if kind in ("float", "double"):
        if isinstance(value, Decimal | int) and not isinstance(value, bool):
            return float(value)
        return value if isinstance(value, float) else _bad(strict, path, value, "a number")
    if kind == "blob":
        return base64.b64encode(value).decode() if isinstance(value, bytes) else value
    if kind == "string":
        if strict and shape.enum and value not in shape.enum:
            raise ValueError(f"{path}={value!r} is not one of {shape.enum}")
        return value if isinstance(value, str) else _bad(strict, path, value, "a string")
    if kind == "boolean":
        return value if isinstance(value, bool) else _bad(strict, path, value, "a boolean")
    return value


def _bad(strict: bool, path: str, value: Any, expected: str) -> Any:
    if strict:
        raise ValueError(f"{path} must be {expected}, got {value!r}")
    return value
