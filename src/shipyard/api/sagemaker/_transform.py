"""Create/Describe/List/StopTransformJob."""

from __future__ import annotations

from typing import Any

from shipyard.api._context import RequestContext
from shipyard.api.sagemaker._ownership import visible
from shipyard.api.sagemaker._training import job_query
from shipyard.services import describe as answers


def create_transform_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    job = ctx.platform.transform.create(params, region=ctx.region, owner=ctx.owner)  # budgets asked there
    return {"TransformJobArn": job.arn}


def describe_transform_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return describe(ctx.platform.transform.describe(params["TransformJobName"]))


def list_transform_jobs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    query = job_query(params)
    jobs, token = ctx.platform.transform.list_jobs(
        query, max_results=params.get("MaxResults", 10), next_token=params.get("NextToken")
    )
    jobs = visible(ctx, jobs, lambda j: j.arn, "sagemaker:DescribeTransformJob")
    return {
        "TransformJobSummaries": [
            {
                "TransformJobName": j.name,
                "TransformJobArn": j.arn,
                "CreationTime": j.created,
                "TransformEndTime": j.state.ended,
                "LastModifiedTime": j.state.last_modified,
                "TransformJobStatus": j.state.status.value,
                "FailureReason": j.state.failure_reason,
            }
            for j in jobs
        ],
        "NextToken": token,
    }


def stop_transform_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.transform.stop(params["TransformJobName"])
    return {}


describe = answers.transform_job  # DescribeTransformJob's answer for a job

OPERATIONS = {
    "CreateTransformJob": create_transform_job,
    "DescribeTransformJob": describe_transform_job,
    "ListTransformJobs": list_transform_jobs,
    "StopTransformJob": stop_transform_job,
}
