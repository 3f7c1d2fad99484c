"""Endpoint metrics as SageMaker publishes them, per variant and minute.

Invocations, Invocation4XXErrors and Invocation5XXErrors (the model's own 4xx/5xx answers),
ModelLatency (the model server's time, as the router saw it) and OverheadLatency (the rest of
Shipyard's time on the request), in microseconds: count, sum, minimum and maximum per minute, as
CloudWatch keeps statistics. Kept in memory for the last day (a restart starts them afresh).
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Iterator

COUNTS = ("Invocations", "Invocation4XXErrors", "Invocation5XXErrors")
LATENCIES = ("ModelLatency", "OverheadLatency")
_KEEP_MINUTES = 24 * 60
_KEEP_SECONDS = 600


@dataclasses.dataclass
class Statistics:
    count: int = 0
    total: float = 0.0
    minimum: float = float("inf")
    maximum: float = float("-inf")

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value < self.minimum:
            self.minimum = value
        if value > self.maximum:
            self.maximum = value

    def merge(self, other: Statistics) -> None:
        self.count += other.count
        self.total += other.total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    def to_dict(self) -> dict[str, float]:
        if not self.count:
            return {"SampleCount": 0, "Sum": 0.0}
        return {
            "SampleCount": self.count,
            "Sum": self.total,
            "Average": self.total / self.count,
            "Minimum": self.minimum,
            "Maximum": self.maximum,
        }


class _Minute:
    """One variant's minute: the counts as integers (every request adds a sample of 1 to
    Invocations and of 0 or 1 to each error count, so their statistics follow from the counts)
    and the latencies' statistics."""

    __slots__ = ("client_errors", "invocations", "model", "overhead", "server_errors")

    def __init__(self) -> None:
        self.invocations = self.client_errors = self.server_errors = 0
        self.model, self.overhead = Statistics(), Statistics()

    def statistics(self, metric: str) -> Statistics:
        if metric == "ModelLatency":
            return self.model
        if metric == "OverheadLatency":
            return self.overhead
        n = self.invocations
        if metric == "Invocations":
            return Statistics(n, float(n), 1, 1) if n else Statistics()
        if metric not in COUNTS:
            raise KeyError(metric)
        errors = self.client_errors if metric == "Invocation4XXErrors" else self.server_errors
        return Statistics(n, float(errors), 0 if errors < n else 1, 1 if errors else 0) if n else Statistics()


class EndpointMetrics:
    def __init__(self) -> None:
        self._minutes: dict[tuple[str, str, int], _Minute] = {}
        self._seconds: dict[tuple[str, str], collections.Counter[int]] = {}  # for autoscaling's window
        self._last: dict[str, float] = {}  # endpoint → when it was last invoked (time.time())
        self._lock = threading.Lock()

    def record(
        self, endpoint: str, variant: str, *, status: int, model_us: float, overhead_us: float
    ) -> None:
        now = time.time()
        second = int(now)
        minute = second // 60
        with self._lock:
            self._last[endpoint] = now
            seconds = self._seconds.get((endpoint, variant))
            if seconds is None:
                seconds = self._seconds[(endpoint, variant)] = collections.Counter()
            if second in seconds:
                seconds[second] += 1
            else:  # a new second: the window is pruned once a second, not on every request
                seconds[second] = 1
                if len(seconds) > _KEEP_SECONDS:
                    for old in [s for s in seconds if s < now - _KEEP_SECONDS]:
                        del seconds[old]
            bucket = self._minutes.get((endpoint, variant, minute))
            if bucket is None:
                bucket = self._minutes[(endpoint, variant, minute)] = _Minute()
                self._prune(minute)
            bucket.invocations += 1
            if status >= 500:
                bucket.server_errors += 1
            elif status >= 400:
                bucket.client_errors += 1
            bucket.model.add(model_us)
            bucket.overhead.add(overhead_us)

    def invocations(self, endpoint: str, variant: str, seconds: float) -> int:
        """Invocations of a variant in the last ``seconds`` (at most ten minutes back)."""
        since = time.time() - seconds
        with self._lock:
            counts = self._seconds.get((endpoint, variant), collections.Counter())
            return sum(n for at, n in counts.items() if at >= since)

    def last_invoked(self, endpoint: str) -> float | None:
        """When the endpoint was last invoked (since this server started), or None."""
        with self._lock:
            return self._last.get(endpoint)

    def _prune(self, now: int) -> None:
        for key in [k for k in self._minutes if k[2] < now - _KEEP_MINUTES]:
            del self._minutes[key]

    def series(
        self,
        endpoint: str,
        metric: str,
        *,
        start: float,
        end: float,
        period: int = 60,
        variant: str | None = None,
    ) -> Iterator[tuple[int, Statistics]]:
        """(period start epoch, statistics) for each period in [start, end) that has data."""
        periods: dict[int, Statistics] = {}
        with self._lock:
            for (name, variant_name, minute), bucket in self._minutes.items():
                at = minute * 60
                if name != endpoint or (variant and variant_name != variant) or not start <= at < end:
                    continue
                key = int(at // period * period)
                periods.setdefault(key, Statistics()).merge(bucket.statistics(metric))
        yield from sorted(periods.items())
