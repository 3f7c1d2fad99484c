"""Property paths, expressions (``Get``, ``Std:Join``, ``Std:JsonGet``) and conditions, evaluated
against a :class:`Scope`: what an execution's parameters, variables and step properties are is
the caller's business; this module only walks them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol

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
            return str(operand.get("On", "")).join(as_text(p) for p in parts)
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


def as_text(value: Any) -> str:
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


def check_condition(condition: Any, path: str) -> None:
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
        check_condition(condition["Expression"], f"{path}.Expression")
    if kind == "Or":
        for i, c in enumerate(condition["Conditions"]):
            check_condition(c, f"{path}.Conditions[{i}]")
