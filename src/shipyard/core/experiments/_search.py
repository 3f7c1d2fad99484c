"""SageMaker Search over experiments, trials and trial components: a ``SearchExpression``
(Filters, NestedFilters, SubExpressions joined by And or Or) decided on a record, the record
being the Search answer's own document (``TrialComponent``: Parameters, Metrics, Parents, Tags,
Source, times), so a property name is a path into what the caller reads back.

Paths: ``Parameters.<name>`` (its NumberValue or StringValue), ``Metrics.<metric>.<Max|Min|Avg|
StdDev|Last|Count>``, ``Tags.<key>``, ``Parents.ExperimentName`` (any parent), and any member
by dotted name (``Source.SourceArn``, ``Status.PrimaryStatus``, ``CreationTime``). A key that
itself holds dots (``SageMaker.InstanceType``) is matched whole. Names and ARNs compare without
regard to case, as SageMaker keeps them; other text exactly; numbers and times as such.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from shipyard.errors import ValidationError

OPERATORS = (
    "Equals",
    "NotEquals",
    "GreaterThan",
    "GreaterThanOrEqualTo",
    "LessThan",
    "LessThanOrEqualTo",
    "Contains",
    "Exists",
    "NotExists",
    "In",
)
R = TypeVar("R", bound=Mapping[str, Any])
_STATS = ("Max", "Min", "Avg", "StdDev", "Last", "Count")


def check_expression(expression: Mapping[str, Any], *, where: str = "SearchExpression") -> None:
    """Refuse what cannot be decided, naming the member and the value (ValidationException)."""
    for i, item in enumerate(expression.get("Filters") or ()):
        _check_filter(item, f"{where}.Filters[{i}]")
    for i, nested in enumerate(expression.get("NestedFilters") or ()):
        for j, item in enumerate(nested.get("Filters") or ()):
            _check_filter(item, f"{where}.NestedFilters[{i}].Filters[{j}]")
            prefix = nested["NestedPropertyName"] + "."
            if not item["Name"].startswith(prefix):
                raise ValidationError(
                    f"{where}.NestedFilters[{i}].Filters[{j}].Name {item['Name']!r} must start with its "
                    f"NestedPropertyName {nested['NestedPropertyName']!r}",
                    field="Name",
                    value=item["Name"],
                )
    for i, sub in enumerate(expression.get("SubExpressions") or ()):
        check_expression(sub, where=f"{where}.SubExpressions[{i}]")


def _check_filter(item: Mapping[str, Any], where: str) -> None:
    operator = item.get("Operator") or "Equals"
    if operator in ("Exists", "NotExists"):
        return
    if item.get("Value") is None:
        raise ValidationError(
            f"{where} ({item['Name']!r} {operator}) needs a Value", field=f"{where}.Value", value=None
        )


def matches(expression: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether ``record`` satisfies ``expression`` (an empty expression matches everything)."""
    results = [_filter(item, record) for item in expression.get("Filters") or ()]
    results += [_nested(nested, record) for nested in expression.get("NestedFilters") or ()]
    results += [matches(sub, record) for sub in expression.get("SubExpressions") or ()]
    if not results:
        return True
    return any(results) if expression.get("Operator") == "Or" else all(results)


def values_at(record: Any, name: str) -> list[Any]:
    """Every value ``name`` reaches in ``record`` (lists fan out: ``Parents.TrialName``)."""
    return list(_walk(record, name.split(".")))


def _walk(node: Any, parts: Sequence[str]) -> Iterable[Any]:
    if isinstance(node, list):
        if parts and node and all(isinstance(m, Mapping) and "MetricName" in m for m in node):
            yield from _metric(node, parts)
            return
        if parts and node and all(isinstance(t, Mapping) and set(t) == {"Key", "Value"} for t in node):
            key = ".".join(parts)
            yield from (t["Value"] for t in node if t["Key"] == key)
            return
        for element in node:
            yield from _walk(element, parts)
        return
    if not parts:
        yield from _leaf(node)
        return
    if not isinstance(node, Mapping):
        return
    for cut in range(len(parts), 0, -1):  # the longest key first: "SageMaker.InstanceType"
        key = ".".join(parts[:cut])
        if key in node:
            yield from _walk(node[key], parts[cut:])
            return


def _leaf(node: Any) -> Iterable[Any]:
    if node is None:
        return
    if isinstance(node, Mapping) and ("NumberValue" in node or "StringValue" in node):
        yield node.get("NumberValue", node.get("StringValue"))  # a parameter's value
    elif isinstance(node, Mapping) and "Value" in node and set(node) <= {"Value", "MediaType"}:
        yield node["Value"]  # an artifact's
    elif isinstance(node, list):
        for element in node:
            yield from _leaf(element)
    else:
        yield node


def _metric(summaries: Sequence[Mapping[str, Any]], parts: Sequence[str]) -> Iterable[Any]:
    stat = parts[-1] if len(parts) > 1 and parts[-1] in _STATS else None
    name = ".".join(parts[:-1] if stat else parts)
    for summary in summaries:
        if summary["MetricName"] == name:
            if stat is None:
                yield summary
            elif summary.get(stat) is not None:
                yield summary[stat]


def _filter(item: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    name = item["Name"]
    operator = item.get("Operator") or "Equals"
    found = values_at(record, name)
    if operator == "Exists":
        return bool(found)
    if operator == "NotExists":
        return not found
    if operator == "NotEquals":
        return not any(_compare(v, "Equals", item["Value"], name) for v in found)
    return any(_compare(v, operator, item["Value"], name) for v in found)


def _nested(nested: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """True when one element of the nested property satisfies every filter (not one each)."""
    prefix = nested["NestedPropertyName"]
    elements = values_at(record, prefix) if prefix else [record]
    for element in elements:
        relative = [{**f, "Name": f["Name"][len(prefix) + 1 :]} for f in nested.get("Filters") or ()]
        if all(_filter(f, element) for f in relative):
            return True
    return False


def _compare(found: Any, operator: str, wanted: str, name: str) -> bool:
    if operator == "In":
        return any(_compare(found, "Equals", w.strip(), name) for w in wanted.split(","))
    if isinstance(found, bool):
        found = str(found).lower()
    if isinstance(found, int | float):
        target: Any = _number(wanted, name)
    elif isinstance(found, dt.datetime):
        target = _time(wanted, name)
        found = found if found.tzinfo else found.replace(tzinfo=dt.UTC)
    else:
        found = str(found)
        target = wanted
        if operator == "Contains" or _caseless(name):
            found, target = found.lower(), target.lower()
    if operator == "Contains":
        return isinstance(found, str) and target in found
    if operator == "Equals":
        return bool(found == target)
    return bool(
        {
            "GreaterThan": lambda: found > target,
            "GreaterThanOrEqualTo": lambda: found >= target,
            "LessThan": lambda: found < target,
            "LessThanOrEqualTo": lambda: found <= target,
        }[operator]()
    )


def _caseless(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last.endswith("Name") or last.endswith("Arn")


def _number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValidationError(
            f"Filter {name!r}: {text!r} is not a number, and {name} holds numbers", field="Value", value=text
        ) from None


def _time(text: str, name: str) -> dt.datetime:
    try:
        value = dt.datetime.fromtimestamp(float(text), dt.UTC)
    except ValueError:
        try:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValidationError(
                f"Filter {name!r}: {text!r} is not a time (ISO 8601 or epoch seconds)",
                field="Value",
                value=text,
            ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def sort_key(record: Mapping[str, Any], sort_by: str) -> tuple[int, Any]:
    """A key that orders records by ``sort_by``, those without it last (either order)."""
    found = [v for v in values_at(record, sort_by) if not isinstance(v, Mapping)]
    if not found:
        return (1, 0)
    value = found[0]
    if isinstance(value, dt.datetime):
        return (0, (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).timestamp())
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value))
    return (0, str(value).lower())


def ordered(records: Sequence[R], sort_by: str, *, ascending: bool) -> list[R]:
    """``records`` sorted by ``sort_by``; records lacking it last whatever the order; values of
    different types (a number and a text) by their type's name first, so sorting never fails."""

    def key(record: R) -> tuple[int, str, Any]:
        missing, value = sort_key(record, sort_by)
        return (missing, type(value).__name__, value)

    present = [r for r in records if key(r)[0] == 0]
    absent = [r for r in records if key(r)[0] == 1]
    return sorted(present, key=key, reverse=not ascending) + absent
