"""CreateTrainingJob, DescribeTrainingJob, ListTrainingJobs, StopTrainingJob."""

from __future__ import annotations

from typing import Any

from shipyard.api._context import RequestContext
from shipyard.api.sagemaker._ownership import visible
from shipyard.core.training import TrainingJobStatus
from shipyard.services import describe as answers
from shipyard.store import TrainingJobQuery


def create_training_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    job = ctx.platform.training.create(params, region=ctx.region, owner=ctx.owner)  # budgets asked there
    return {"TrainingJobArn": job.arn}


def describe_training_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return describe(ctx.platform.training.describe(params["TrainingJobName"]))


def job_query(params: dict[str, Any]) -> TrainingJobQuery:
    """The filters and order of a List{Training,Processing,Transform}Jobs request."""
    status = params.get("StatusEquals")
    return TrainingJobQuery(
        name_contains=params.get("NameContains"),
        status=TrainingJobStatus(status) if status else None,
        created_after=params.get("CreationTimeAfter"),
        created_before=params.get("CreationTimeBefore"),
        modified_after=params.get("LastModifiedTimeAfter"),
        modified_before=params.get("LastModifiedTimeBefore"),
        sort_by=params.get("SortBy", "CreationTime"),
        ascending=params.get("SortOrder", "Descending") == "Ascending",
    )


def list_training_jobs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    query = job_query(params)
    jobs, token = ctx.platform.training.list_jobs(
        query, max_results=params.get("MaxResults", 10), next_token=params.get("NextToken")
    )
    jobs = visible(ctx, jobs, lambda j: j.arn, "sagemaker:DescribeTrainingJob")
    summaries = [
        {
            "TrainingJobName": j.name,
            "TrainingJobArn": j.arn,
            "CreationTime": j.created,
            "TrainingEndTime": j.state.ended,
            "LastModifiedTime": j.state.last_modified,
            "TrainingJobStatus": j.state.status.value,
            "SecondaryStatus": j.state.secondary.value,
        }
        for j in jobs
    ]
    return {"TrainingJobSummaries": summaries, "NextToken": token}


def stop_training_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.training.stop(params["TrainingJobName"])
    return {}


describe = answers.training_job  # DescribeTrainingJob's answer for a job

OPERATIONS = {
    "CreateTrainingJob": create_training_job,
    "DescribeTrainingJob": describe_training_job,
    "ListTrainingJobs": list_training_jobs,
    "StopTrainingJob": stop_training_job,
}
