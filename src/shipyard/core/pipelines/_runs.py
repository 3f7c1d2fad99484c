"""Pipelines and their executions as stored: statuses, each step's run so far."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping
from typing import Any

from shipyard.core.pipelines._expressions import as_text


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
    region: str = ""  # where it runs: its pipeline ARN's region unless given
    ended: dt.datetime | None = None

    def __post_init__(self) -> None:
        if not self.region:
            object.__setattr__(self, "region", self.pipeline_arn.split(":")[3])

    @property
    def id(self) -> str:
        return self.arn.rsplit("/", 1)[1]

    def with_step(self, run: StepRun, now: dt.datetime) -> Execution:
        return dataclasses.replace(self, steps={**self.steps, run.name: run}, last_modified=now)

    def parameter_list(self) -> list[dict[str, str]]:
        return [{"Name": k, "Value": as_text(v)} for k, v in self.parameters.items()]
