"""Create/Describe/List/StopProcessingJob."""

from __future__ import annotations

from typing import Any

from shipyard.api._context import RequestContext
from shipyard.api.sagemaker._ownership import visible
from shipyard.api.sagemaker._training import job_query
from shipyard.services import describe as answers


def create_processing_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    job = ctx.platform.processing.create(params, region=ctx.region, owner=ctx.owner)  # budgets asked there
    return {"ProcessingJobArn": job.arn}


def describe_processing_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return describe(ctx.platform.processing.describe(params["ProcessingJobName"]))


def list_processing_jobs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    query = job_query(params)
    jobs, token = ctx.platform.processing.list_jobs(
        query, max_results=params.get("MaxResults", 10), next_token=params.get("NextToken")
    )
    jobs = visible(ctx, jobs, lambda j: j.arn, "sagemaker:DescribeProcessingJob")
    return {
        "ProcessingJobSummaries": [
            {
                "ProcessingJobName": j.name,
                "ProcessingJobArn": j.arn,
                "CreationTime": j.created,
                "ProcessingEndTime": j.state.ended,
                "LastModifiedTime": j.state.last_modified,
                "ProcessingJobStatus": j.state.status.value,
                "FailureReason": j.state.failure_reason,
                "ExitMessage": _exit_message(j),
            }
            for j in jobs
        ],
        "NextToken": token,
    }


def stop_processing_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.processing.stop(params["ProcessingJobName"])
    return {}


_exit_message = answers.exit_message
describe = answers.processing_job  # DescribeProcessingJob's answer for a job

OPERATIONS = {
    "CreateProcessingJob": create_processing_job,
    "DescribeProcessingJob": describe_processing_job,
    "ListProcessingJobs": list_processing_jobs,
    "StopProcessingJob": stop_processing_job,
}
