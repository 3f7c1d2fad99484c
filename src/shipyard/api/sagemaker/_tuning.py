"""Create/Describe/List/StopHyperParameterTuningJob, ListTrainingJobsForHyperParameterTuningJob."""

from __future__ import annotations

from typing import Any

from shipyard.api._context import RequestContext
from shipyard.api.sagemaker._ownership import visible
from shipyard.core.pagination import Page
from shipyard.services import describe as answers


def create(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    job = ctx.platform.tuning.create(params, region=ctx.region, owner=ctx.owner)  # budgets asked there
    ctx.platform.scheduler.wake()
    return {"HyperParameterTuningJobArn": job.arn}


_summary = answers.trial_summary


def describe(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    job, views = ctx.platform.tuning.describe(params["HyperParameterTuningJobName"])
    return answers.tuning_job(job, views, ctx.platform.tuning.best(job, views))


def list_jobs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    jobs, token = ctx.platform.tuning.list_jobs(
        name_contains=params.get("NameContains"),
        status=params.get("StatusEquals"),
        sort_by=params.get("SortBy", "CreationTime"),
        ascending=params.get("SortOrder", "Descending") == "Ascending",
        max_results=params.get("MaxResults", 10),
        next_token=params.get("NextToken"),
    )
    jobs = visible(ctx, jobs, lambda j: j.arn, "sagemaker:DescribeHyperParameterTuningJob")
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
    page, token = Page.requested(params, default_size=10).slice(views)
    summaries = [_summary(job, v) for v in page]
    summaries = visible(ctx, summaries, lambda s: s["TrainingJobArn"], "sagemaker:DescribeTrainingJob")
    return {"TrainingJobSummaries": summaries, "NextToken": token}


OPERATIONS = {
    "CreateHyperParameterTuningJob": create,
    "DescribeHyperParameterTuningJob": describe,
    "ListHyperParameterTuningJobs": list_jobs,
    "StopHyperParameterTuningJob": stop,
    "ListTrainingJobsForHyperParameterTuningJob": list_training_jobs,
}
