"""Serverless endpoints: a production variant's ``ServerlessConfig``, and the decisions that scale
its model server from zero and back, admit its requests and bill them.

A serverless variant has no instances of its own. Its endpoint is InService with no model server
running; the first request starts one (a cold start) and is answered once it is up, requests that
arrive meanwhile waiting for it; at most ``MaxConcurrency`` requests are served or waiting at once,
the rest throttled as SageMaker throttles them; a model server without requests for the site's
idle time is stopped. With ``ProvisionedConcurrency`` that many model servers are kept warm from
the start and never scaled below it (:func:`warm_copies_missing`, :func:`should_scale_to_zero`).
Each request is billed for its compute time (rounded up to the millisecond, as SageMaker bills it)
times the variant's memory, at a price per GB-second; a warm copy, as SageMaker bills provisioned
concurrency, for the time it is provisioned, at its memory.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from shipyard.errors import ValidationError

MEMORY_SIZES_MB = (1024, 2048, 3072, 4096, 5120, 6144)
MAX_CONCURRENCY = 200  # SageMaker's per-endpoint maximum


@dataclasses.dataclass(frozen=True)
class ServerlessConfig:
    """``ServerlessConfig`` of a production variant (MemorySizeInMB, MaxConcurrency and
    ProvisionedConcurrency: the model servers kept warm, 0 when not given)."""

    memory_mb: int
    max_concurrency: int
    provisioned: int = 0

    @classmethod
    def from_request(cls, raw: Mapping[str, Any], field: str) -> ServerlessConfig:
        """Validate a variant's ServerlessConfig; ``field`` names it in errors
        (``ProductionVariants.0.ServerlessConfig``)."""
        memory = raw.get("MemorySizeInMB")
        concurrency = raw.get("MaxConcurrency")
        if memory is None:
            raise ValidationError(f"{field}.MemorySizeInMB is required", field=f"{field}.MemorySizeInMB")
        if concurrency is None:
            raise ValidationError(f"{field}.MaxConcurrency is required", field=f"{field}.MaxConcurrency")
        if isinstance(memory, bool) or not isinstance(memory, int) or memory not in MEMORY_SIZES_MB:
            raise ValidationError(
                f"Value '{memory}' at '{field}.MemorySizeInMB' failed to satisfy constraint: Member "
                f"must be one of the 1 GB steps {', '.join(map(str, MEMORY_SIZES_MB))} (MB)",
                field=f"{field}.MemorySizeInMB",
                value=memory,
            )
        if (
            isinstance(concurrency, bool)
            or not isinstance(concurrency, int)
            or not 1 <= concurrency <= MAX_CONCURRENCY
        ):
            raise ValidationError(
                f"Value '{concurrency}' at '{field}.MaxConcurrency' failed to satisfy constraint: "
                f"Member must have value between 1 and {MAX_CONCURRENCY}",
                field=f"{field}.MaxConcurrency",
                value=concurrency,
            )
        provisioned = raw.get("ProvisionedConcurrency")
        if provisioned is not None and (
            isinstance(provisioned, bool)
            or not isinstance(provisioned, int)
            or not 1 <= provisioned <= concurrency
        ):
            raise ValidationError(
                f"{field}.ProvisionedConcurrency must be between 1 and MaxConcurrency "
                f"({concurrency}), got {provisioned}",
                field=f"{field}.ProvisionedConcurrency",
                value=provisioned,
            )
        return cls(memory, concurrency, provisioned or 0)

    @property
    def memory_gb(self) -> int:
        return self.memory_mb // 1024

    @property
    def billing_type(self) -> str:
        """What the ledger names this variant's compute (its ``instance_type`` column)."""
        return f"serverless:{self.memory_mb}MB"

    @staticmethod
    def memory_of(billing_type: str) -> int | None:
        """The memory (MB) a ledger name of :attr:`billing_type` gives; None for an instance type."""
        if not billing_type.startswith("serverless:") or not billing_type.endswith("MB"):
            return None
        try:
            return int(billing_type.removeprefix("serverless:").removesuffix("MB"))
        except ValueError:
            return None

    def to_wire(self) -> dict[str, int]:
        """As DescribeEndpoint's CurrentServerlessConfig / DesiredServerlessConfig."""
        wire = {"MemorySizeInMB": self.memory_mb, "MaxConcurrency": self.max_concurrency}
        if self.provisioned:
            wire["ProvisionedConcurrency"] = self.provisioned
        return wire

    def to_record(self) -> dict[str, int]:
        return {
            "memory_mb": self.memory_mb,
            "max_concurrency": self.max_concurrency,
            "provisioned": self.provisioned,
        }

    @classmethod
    def from_record(cls, raw: Mapping[str, Any] | None) -> ServerlessConfig | None:
        if not raw:
            return None
        return cls(int(raw["memory_mb"]), int(raw["max_concurrency"]), int(raw.get("provisioned") or 0))


# -- decisions ---------------------------------------------------------------------------------------
def admits(active: int, config: ServerlessConfig) -> bool:
    """Whether one more request may be served (or wait for the cold start) with ``active``
    requests of the variant being served or waiting already."""
    return active < config.max_concurrency


def should_scale_to_zero(
    *, active: int, idle_since: float, now: float, idle_seconds: float, provisioned: int = 0
) -> bool:
    """Whether a serverless variant's model server is stopped: no request is being served or
    waiting, and the last one ended ``idle_seconds`` ago or more (clock seconds). Never a variant
    with provisioned concurrency: its warm copies are never scaled below it."""
    return provisioned == 0 and active == 0 and now - idle_since >= idle_seconds


def warm_copies_missing(config: ServerlessConfig, *, running: int, starting: bool) -> int:
    """How many model servers a variant must still start to have its ProvisionedConcurrency warm:
    they start one at a time (none while a start is under way), without waiting for a request."""
    if starting:
        return 0
    return max(0, config.provisioned - running)


def billed_span(started: dt.datetime, ended: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The billed interval of a request sent to the model server at ``started`` and answered at
    ``ended``: its compute time rounded up to the whole millisecond (at least one)."""
    micros = max(0, round((ended - started).total_seconds() * 1e6))
    millis = max(1, math.ceil(micros / 1000))
    return started, started + dt.timedelta(milliseconds=millis)


__all__ = [
    "MAX_CONCURRENCY",
    "MEMORY_SIZES_MB",
    "ServerlessConfig",
    "admits",
    "billed_span",
    "should_scale_to_zero",
    "warm_copies_missing",
]
