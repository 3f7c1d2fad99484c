"""The platform's jobs as trial components: found by name or source ARN, and listed."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from shipyard.core.experiments import (
    JOB_SOURCES,
    JobSource,
    SeriesPoint,
    job_of_component,
    job_of_source_arn,
    processing_component,
    training_component,
    transform_component,
)
from shipyard.errors import NotFoundError
from shipyard.services import describe as answers
from shipyard.services.jobs import JobService, TrainingService
from shipyard.store import TrainingJobQuery


class JobComponents:
    """Trial components of the training, processing and transform jobs, built from each job's
    Describe answer (and, for training, its metric series) whenever they are read."""

    def __init__(
        self, training: TrainingService, processing: JobService[Any], transform: JobService[Any]
    ) -> None:
        self._services: dict[str, JobService[Any]] = {
            "training": training,
            "processing": processing,
            "transform": transform,
        }
        self._training = training
        self._builders: dict[str, Callable[[Any], dict[str, Any]]] = {
            "training": lambda job: training_component(
                answers.training_job(job), self._training.repository.metric_series(job.name)
            ),
            "processing": lambda job: processing_component(answers.processing_job(job)),
            "transform": lambda job: transform_component(answers.transform_job(job)),
        }

    def answer(self, kind: str, job_name: str) -> dict[str, Any] | None:
        """The job's Describe answer (None: no such job)."""
        job = self._job(kind, job_name)
        if job is None:
            return None
        if kind == "training":
            return answers.training_job(job)
        return answers.processing_job(job) if kind == "processing" else answers.transform_job(job)

    def by_name(self, component_name: str) -> tuple[JobSource, dict[str, Any]] | None:
        """The job trial component ``component_name`` names, if the job exists."""
        found = job_of_component(component_name)
        if found is None:
            return None
        source, job_name = found
        job = self._job(source.kind, job_name)
        return (source, self._builders[source.kind](job)) if job is not None else None

    def series(self, component_name: str) -> dict[str, list[SeriesPoint]] | None:
        """The metric series of the job ``component_name`` names (None: no such job; a
        processing or transform job has none)."""
        found = job_of_component(component_name)
        if found is None:
            return None
        source, job_name = found
        job = self._job(source.kind, job_name)
        if job is None:
            return None
        if source.kind != "training":
            return {}
        return {
            name: [SeriesPoint(p.value, p.timestamp, p.step) for p in points]
            for name, points in self._training.repository.metric_series(job.name).items()
        }

    def by_source_arn(self, arn: str) -> dict[str, Any] | None:
        found = job_of_source_arn(arn)
        if found is None:
            return None
        source, job_name = found
        job = self._job(source.kind, job_name)
        return self._builders[source.kind](job) if job is not None else None

    def listed(
        self,
        *,
        created_after: dt.datetime | None,
        created_before: dt.datetime | None,
        sort_by: str,
        ascending: bool,
        limit: int,
    ) -> list[dict[str, Any]]:
        """The first ``limit`` job trial components of each kind in the order asked (the caller
        merges them with the stored ones)."""
        query = TrainingJobQuery(
            created_after=created_after,
            created_before=created_before,
            sort_by="Name" if sort_by == "Name" else "CreationTime",
            ascending=ascending,
        )
        found: list[dict[str, Any]] = []
        for source in JOB_SOURCES:
            jobs = self._services[source.kind].repository.find(query, offset=0, limit=limit)
            found += [self._builders[source.kind](job) for job in jobs]
        return found

    def _job(self, kind: str, name: str) -> Any:
        service = self._services[kind]
        try:
            return service.describe(name)
        except NotFoundError:
            pass
        # A source ARN is lower-cased (SageMaker's, and the sagemaker SDK lower-cases it again).
        for job in service.repository.find(TrainingJobQuery(name_contains=name), limit=50):
            if job.name.lower() == name.lower():
                return job
        return None


def job_answer_member(kind: str) -> str:
    """The member of TrialComponentSourceDetail holding a job's Describe answer."""
    return {"training": "TrainingJob", "processing": "ProcessingJob", "transform": "TransformJob"}[kind]
