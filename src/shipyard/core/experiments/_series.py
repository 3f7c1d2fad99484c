"""SageMaker Metrics' BatchGetMetrics, decided on a metric's series: its points put in buckets by
``Period`` (a minute, five, an hour of time; or one step each, ``IterationNumber``), each bucket
reduced by ``MetricStat``, the x axis the bucket's start time (epoch seconds) or its step.
``Start`` and ``End`` bound the x axis, both included (epoch seconds, or steps).

A time Period with the IterationNumber x axis has no one step to show per bucket, and a step
bucket of points logged without a Step has none either: both answer the query's Status
``ValidationError`` with a message saying so, as does an unknown metric (naming those there
are); the other queries of the batch are answered all the same.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

PERIOD_SECONDS = {"OneMinute": 60, "FiveMinute": 300, "OneHour": 3600}
MAX_POINTS = 10_000  # a longer answer is cut there, Status "Truncated"
_STATS: dict[str, Callable[[list[float]], float]] = {
    "Min": min,
    "Max": max,
    "Avg": statistics.fmean,
    "Count": lambda values: float(len(values)),
    "StdDev": lambda values: statistics.stdev(values) if len(values) > 1 else 0.0,
    "Last": lambda values: values[-1],
}


@dataclasses.dataclass(frozen=True)
class SeriesPoint:
    """One logged value of a metric (BatchPutMetrics' RawMetricData, or a job's metric point)."""

    value: float
    timestamp: dt.datetime
    step: int | None = None


def metric_query_result(
    series: Mapping[str, Sequence[SeriesPoint]], query: Mapping[str, Any]
) -> dict[str, Any]:
    """One MetricQueryResult for ``query`` (a MetricQuery) over a resource's ``series``."""
    name, stat, period, axis = query["MetricName"], query["MetricStat"], query["Period"], query["XAxisType"]
    if name not in series:
        known = ", ".join(sorted(series)) or "none"
        return _invalid(f"MetricName '{name}': the resource logged no such metric (it has: {known})")
    points = sorted(series[name], key=lambda p: (p.timestamp, p.step if p.step is not None else -1))
    buckets: dict[int, list[SeriesPoint]] = {}
    if period == "IterationNumber":
        for point in points:
            if point.step is not None:
                buckets.setdefault(point.step, []).append(point)
        if not buckets and points:
            return _invalid(
                f"Period 'IterationNumber': metric '{name}' was logged without a Step; ask for a time Period"
            )
    elif axis == "IterationNumber":
        return _invalid(
            f"XAxisType 'IterationNumber' needs Period 'IterationNumber' (got '{period}'): a time "
            "period has no one step to show; ask for XAxisType 'Timestamp'"
        )
    else:
        width = PERIOD_SECONDS[period]
        for point in points:
            start = math.floor(point.timestamp.timestamp() / width) * width
            buckets.setdefault(int(start), []).append(point)
    rows = []
    for key in sorted(buckets):
        members = buckets[key]
        x = key if axis == "IterationNumber" or period != "IterationNumber" else _seconds(members[0])
        rows.append((x, _STATS[stat]([p.value for p in members])))
    low, high = query.get("Start"), query.get("End")
    rows = [(x, v) for x, v in rows if (low is None or x >= low) and (high is None or x <= high)]
    status = "Complete"
    if len(rows) > MAX_POINTS:
        rows, status = rows[:MAX_POINTS], "Truncated"
    return {"Status": status, "XAxisValues": [x for x, _ in rows], "MetricValues": [v for _, v in rows]}


def _seconds(point: SeriesPoint) -> int:
    return int(point.timestamp.timestamp())


def _invalid(message: str) -> dict[str, Any]:
    return {"Status": "ValidationError", "Message": message, "XAxisValues": [], "MetricValues": []}
