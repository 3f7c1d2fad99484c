"""What a pipeline knows only when it runs: its parameters, its steps' results (and items of
them), and the conditions made by comparing them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.sdk._pipelines import Pipeline

PLACEHOLDER = "__shipyard_placeholder__"
_TYPES = {bool: "Boolean", int: "Integer", float: "Float", str: "String"}


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
