"""Hypothesis strategies for AWS JSON requests, from botocore's own shapes.

:func:`members` draws an operation's input the way a careless or hostile client would: mostly
well-typed values that respect the model's enums, lengths and ranges, mixed with junk of every
JSON type (null, wrong types, huge numbers, NaN, deep or empty containers) at any member, and
members left out whether they are required or not.
"""

from __future__ import annotations

import functools
import re
from typing import Any, ClassVar

from botocore.model import Shape
from hypothesis import strategies as st

_MAX_DEPTH = 5
_MAX_ITEMS = 3

# Strings that mean something to Shipyard's handlers: names, ARNs, S3 URIs, instance types, images.
_MEANINGFUL = [
    "",
    "a",
    "fuzz",
    "fuzz-bucket",
    "x" * 64,
    "x" * 1025,
    "..",
    "../../etc/passwd",
    "/",
    "%ff",
    "\u00e9\u4e2d",
    "ml.m5.large",
    "ml.t3.medium",
    "local",
    "s3://fuzz-bucket/",
    "s3://fuzz-bucket/key",
    "s3://",
    "s3:///..",
    "file:///etc/passwd",
    "arn:aws:iam::000000000000:role/fuzz",
    "arn:aws:sagemaker:us-east-1:000000000000:training-job/fuzz",
    "arn:aws:sagemaker:us-east-1:000000000000:model-package/fuzz/1",
    "arn:aws:sagemaker:us-east-1:000000000000:pipeline/fuzz/execution/x",
    "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
    "not/an:image",
    "2024-01-01T00:00:00Z",
    "NaN",
    "-1",
    "1e400",
    "Ascending",
    "Descending",
    "CreationTime",
    "Name",
    "{}",
    '{"Version": "2020-12-01", "Steps": []}',
    "[]",
]

_JUNK: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([2**31, 2**63, -(2**63) - 1, 10**30, -1, 0]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(_MEANINGFUL),
    st.just([]),
    st.just({}),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
)


def members(service: str, shape: Shape | None) -> st.SearchStrategy[dict[str, Any]]:
    """An operation's input: a JSON object drawn from its input shape (of ``service``)."""
    if shape is None:
        return st.dictionaries(st.text(max_size=8), _JUNK, max_size=3)
    return _Strategies(service).structure(shape, 0)


def _itself(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return strategy


class _Strategies:
    """One service's strategies, each shape's built once (so Hypothesis validates each once)."""

    _built: ClassVar[dict[tuple[str, str, int], st.SearchStrategy[Any]]] = {}

    def __init__(self, service: str) -> None:
        self.service = service

    def value(self, shape: Shape, depth: int) -> st.SearchStrategy[Any]:
        """Mostly a value of the shape's type, one time in eight junk."""
        key = (self.service, shape.name, depth)
        if key not in self._built:
            typed = self.typed(shape, depth)
            self._built[key] = st.sampled_from([typed] * 7 + [_JUNK]).flatmap(_itself)
        return self._built[key]

    def typed(self, shape: Shape, depth: int) -> st.SearchStrategy[Any]:
        kind = shape.type_name
        meta = shape.metadata
        if kind == "structure":
            return self.structure(shape, depth)
        if depth >= _MAX_DEPTH:
            return _JUNK
        if kind == "list":
            return st.lists(self.value(shape.member, depth + 1), max_size=_MAX_ITEMS)
        if kind == "map":
            return st.dictionaries(
                _string(shape.key), self.value(shape.value, depth + 1), max_size=_MAX_ITEMS
            )
        if kind == "string":
            return _string(shape)
        if kind in ("integer", "long"):
            low, high = meta.get("min"), meta.get("max")
            return st.one_of(
                st.integers(low, high),
                st.sampled_from([v for v in (low, high) if v is not None] or [0]),
                st.integers(),
            )
        if kind in ("float", "double"):
            return st.one_of(st.floats(meta.get("min"), meta.get("max")), st.floats())
        if kind == "boolean":
            return st.booleans()
        if kind == "timestamp":
            return st.one_of(
                st.floats(0, 4e9),
                st.integers(-(10**12), 10**12),
                st.sampled_from(["2024-01-01T00:00:00Z", "yesterday", "1e30", ""]),
            )
        if kind == "blob":
            return st.one_of(st.just("aGVsbG8="), st.text(max_size=8))
        return _JUNK

    def structure(self, shape: Shape, depth: int) -> st.SearchStrategy[dict[str, Any]]:
        if depth >= _MAX_DEPTH:
            return st.just({})
        required = set(shape.required_members)
        fields = {name: self.value(member, depth + 1) for name, member in shape.members.items()}
        always = {name: s for name, s in fields.items() if name in required}
        maybe = {name: s for name, s in fields.items() if name not in required}
        whole = st.fixed_dictionaries(always, optional=maybe)
        # ... and sometimes any member may be missing, the required ones too.
        partial = st.fixed_dictionaries({}, optional=fields)
        return st.one_of(whole, partial)


def _string(shape: Shape) -> st.SearchStrategy[str]:
    if shape.enum:
        return st.one_of(st.sampled_from(shape.enum), st.text(max_size=8))
    meta = shape.metadata
    options: list[st.SearchStrategy[str]] = [
        st.sampled_from(_MEANINGFUL),
        st.text(min_size=meta.get("min", 0), max_size=max(meta.get("min", 0), min(meta.get("max", 64), 64))),
    ]
    pattern = _regex(meta.get("pattern"))
    if pattern is not None:
        options.append(st.from_regex(pattern, fullmatch=True).filter(lambda s: len(s) <= 256))
    return st.one_of(options)


@functools.cache
def _regex(pattern: str | None) -> re.Pattern[str] | None:
    """A model pattern Hypothesis can draw from: simple ones only (no Java classes, lookarounds)."""
    if not pattern or "\\p" in pattern or "(?" in pattern or len(pattern) > 200:
        return None
    try:
        return re.compile(pattern)
    except re.error:
        return None
