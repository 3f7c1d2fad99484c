"""Create/Describe/List/StopHyperParameterTuningJob, ListTrainingJobsForHyperParameterTuningJob."""

from __future__ import annotations

from typing import Any

from shipyard.api._context import RequestContext
from shipyard.api.sagemaker._training import request_tags
from shipyard.core import estimates
from shipyard.core.pagination import decode_token, encode_token
from shipyard.core.training import TrainingJobStatus
from shipyard.core.tuning import TuningJob
from shipyard.services.tuning import TrialView


def create(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["HyperParameterTuningJobName"]
    with ctx.platform.budgets.guard("tuning job", name, estimates.tuning, params, request_tags(params)):
        job = ctx.platform.tuning.create(params, region=ctx.region, owner=ctx.principal)
    ctx.platform.scheduler.wake()
    return {"HyperParameterTuningJobArn": job.arn}


def _objective(job: TuningJob, view: TrialView) -> dict[str, Any] | None:
    if view.objective is None:
        return None
    return {
        "Type": "Maximize" if job.spec.maximize else "Minimize",
        "MetricName": job.spec.definition(view.trial.definition).objective_metric,
        "Value": view.objective,
    }


def _objective_status(view: TrialView) -> str:
    if view.objective is not None:
        return "Succeeded"
    return "Failed" if view.status.is_terminal else "Pending"


def _summary(job: TuningJob, view: TrialView) -> dict[str, Any]:
    training = view.job
    return {
        "TrainingJobName": view.trial.job,
        "TrainingJobArn": training.arn
        if training
        else f"{job.arn.rsplit(':', 1)[0]}:training-job/{view.trial.job}",
        "TuningJobName": job.name,
        "CreationTime": training.created if training else job.created,
        "TrainingStartTime": training.state.training_start if training else None,
        "TrainingEndTime": training.state.training_end if training else None,
        "TrainingJobStatus": view.status.value,
        "TunedHyperParameters": dict(view.trial.hyperparameters),
        "TrainingJobDefinitionName": view.trial.definition,
        "FailureReason": training.state.failure_reason if training else None,
        "FinalHyperParameterTuningJobObjectiveMetric": _objective(job, view),
        "ObjectiveStatus": _objective_status(view),
    }


def describe(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    job, views = ctx.platform.tuning.describe(params["HyperParameterTuningJobName"])
    counts = {status: 0 for status in TrainingJobStatus}
    for view in views:
        counts[view.status] += 1
    objective_counts = {"Succeeded": 0, "Pending": 0, "Failed": 0}
    for view in views:
        objective_counts[_objective_status(view)] += 1
    best = ctx.platform.tuning.best(job, views)
    request = job.spec.request
    result: dict[str, Any] = {
        "HyperParameterTuningJobName": job.name,
        "HyperParameterTuningJobArn": job.arn,
        "HyperParameterTuningJobConfig": request["HyperParameterTuningJobConfig"],
        "TrainingJobDefinition": request.get("TrainingJobDefinition"),
        "TrainingJobDefinitions": request.get("TrainingJobDefinitions"),
        "WarmStartConfig": request.get("WarmStartConfig"),
        "HyperParameterTuningJobStatus": job.status.value,
        "CreationTime": job.created,
        "HyperParameterTuningEndTime": job.end_time,
        "LastModifiedTime": job.last_modified,
        "TrainingJobStatusCounters": {
            "Completed": counts[TrainingJobStatus.COMPLETED],
            "InProgress": counts[TrainingJobStatus.IN_PROGRESS] + counts[TrainingJobStatus.STOPPING],
            "RetryableError": 0,
            "NonRetryableError": counts[TrainingJobStatus.FAILED],
            "Stopped": counts[TrainingJobStatus.STOPPED],
        },
        "ObjectiveStatusCounters": objective_counts,
        "BestTrainingJob": _summary(job, best) if best else None,
        "FailureReason": job.failure_reason,
    }
    if job.completion:
        result["TuningJobCompletionDetails"] = {"NumberOfTrainingJobsObjectiveNotImproving": 0}
    return result


def list_jobs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    jobs, token = ctx.platform.tuning.list_jobs(
        name_contains=params.get("NameContains"),
        status=params.get("StatusEquals"),
        sort_by=params.get("SortBy", "CreationTime"),
        ascending=params.get("SortOrder", "Descending") == "Ascending",
        max_results=params.get("MaxResults", 10),
        next_token=params.get("NextToken"),
    )
    summaries = []
    for job in jobs:
        counts = describe(ctx, {"HyperParameterTuningJobName": job.name})
        summaries.append(
            {
                "HyperParameterTuningJobName": job.name,
                "HyperParameterTuningJobArn": job.arn,
                "HyperParameterTuningJobStatus": job.status.value,
                "Strategy": job.spec.strategy.value,
                "CreationTime": job.created,
                "HyperParameterTuningEndTime": job.end_time,
                "LastModifiedTime": job.last_modified,
                "TrainingJobStatusCounters": counts["TrainingJobStatusCounters"],
                "ObjectiveStatusCounters": counts["ObjectiveStatusCounters"],
                "ResourceLimits": job.spec.request["HyperParameterTuningJobConfig"]["ResourceLimits"],
            }
        )
    return {"HyperParameterTuningJobSummaries": summaries, "NextToken": token}


def stop(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.tuning.stop(params["HyperParameterTuningJobName"])
    ctx.platform.scheduler.wake()
    return {}


def list_training_jobs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    job, views = ctx.platform.tuning.describe(params["HyperParameterTuningJobName"])
    if status := params.get("StatusEquals"):
        views = [v for v in views if v.status.value == status]
    sort_by = params.get("SortBy", "CreationTime")
    descending = params.get("SortOrder", "Descending") == "Descending"
    if sort_by == "FinalObjectiveMetricValue":
        # Best first when descending, as the console shows them; no objective sorts last either way.
        scored = sorted(
            (v for v in views if v.objective is not None),
            key=lambda v: v.objective or 0.0,
            reverse=descending == job.spec.maximize,
        )
        views = scored + [v for v in views if v.objective is None]
    elif sort_by == "Name":
        views = sorted(views, key=lambda v: v.trial.job, reverse=descending)
    elif sort_by == "Status":
        views = sorted(views, key=lambda v: v.status.value, reverse=descending)
    else:
        views = sorted(views, key=lambda v: v.trial.number, reverse=descending)
    offset = int(decode_token(params["NextToken"]).get("offset", 0)) if params.get("NextToken") else 0
    limit = params.get("MaxResults", 10)
    page = views[offset : offset + limit]
    token = encode_token({"offset": offset + limit}) if offset + limit < len(views) else None
    return {"TrainingJobSummaries": [_summary(job, v) for v in page], "NextToken": token}


OPERATIONS = {
    "CreateHyperParameterTuningJob": create,
    "DescribeHyperParameterTuningJob": describe,
    "ListHyperParameterTuningJobs": list_jobs,
    "StopHyperParameterTuningJob": stop,
    "ListTrainingJobsForHyperParameterTuningJob": list_training_jobs,
}
