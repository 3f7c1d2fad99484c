"""A fake of the pipeline engine's port: jobs that exist only in memory, with statuses a test sets."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from shipyard.core.pipelines import STEP_KINDS
from shipyard.errors import ConflictError, NotFoundError, ValidationError


@dataclasses.dataclass
class FakeStepJob:
    """One job (or model, or package) a step created. ``describe`` is its Describe answer: set
    its status member (``TrainingJobStatus``...) and ``FailureReason`` to script its course."""

    step_type: str
    name: str
    arn: str
    request: dict[str, Any]
    describe: dict[str, Any]
    stopped: bool = False

    def finish(self, status: str = "Completed", reason: str | None = None, **answer: Any) -> None:
        """End the job: ``Completed``, ``Failed`` (with ``reason``) or ``Stopped``."""
        field = STEP_KINDS[self.step_type].status_field
        assert field is not None, f"a {self.step_type} step has no status to set"
        self.describe.update({field: status, **answer})
        if reason is not None:
            self.describe["FailureReason"] = reason


class FakePipelineSteps:
    """:class:`~shipyard.services._pipeline_steps.PipelineSteps` in memory. Jobs start
    ``InProgress``; ``refuse`` makes the next create of a step type raise the given error."""

    def __init__(self) -> None:
        self.jobs: dict[str, FakeStepJob] = {}  # by name, in creation order
        self.refusals: dict[str, list[Exception]] = {}
        self._count = 0

    def refuse(self, step_type: str, error: Exception) -> None:
        self.refusals.setdefault(step_type, []).append(error)

    def of_step(self, prefix: str) -> list[FakeStepJob]:
        """The jobs whose names contain ``prefix`` (a step's jobs are named after it), oldest first."""
        return [j for j in self.jobs.values() if prefix in j.name]

    # -- the port ---------------------------------------------------------------------------------
    def create(self, step_type: str, request: Mapping[str, Any], *, owner: str | None, region: str) -> str:
        refused = self.refusals.get(step_type)
        if refused:
            raise refused.pop(0)
        kind = STEP_KINDS[step_type]
        self._count += 1
        name = str(request[kind.name_field]) if kind.name_field else f"package-{self._count}"
        if name in self.jobs:
            raise ConflictError(f"{name!r} exists")
        if not isinstance(request, Mapping):
            raise ValidationError("the request is not an object")
        arn = f"arn:aws:sagemaker:{region}:000000000000:{step_type.lower()}/{name}"
        answer: dict[str, Any] = {**request, kind.arn_field: arn}
        if kind.status_field:
            answer[kind.status_field] = "InProgress"
        self.jobs[name if kind.name_field else arn] = FakeStepJob(step_type, name, arn, dict(request), answer)
        return arn

    def describe(self, step_type: str, name: str) -> dict[str, Any]:
        job = self.jobs.get(name)
        if job is None:
            raise NotFoundError(f"{name!r} does not exist")
        return dict(job.describe)

    def stop(self, step_type: str, name: str) -> None:
        job = self.jobs[name]
        job.stopped = True
        field = STEP_KINDS[step_type].status_field
        if field:
            job.describe[field] = "Stopping"

    def property_problem(self, step_type: str, path: list[str | int]) -> str | None:
        return None
