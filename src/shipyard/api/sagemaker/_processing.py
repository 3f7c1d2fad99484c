"""Create/Describe/List/StopProcessingJob."""

from __future__ import annotations

from typing import Any

from shipyard.api._context import RequestContext
from shipyard.api.sagemaker._training import job_query, request_tags
from shipyard.core import estimates
from shipyard.core.processing import ProcessingJobSpec
from shipyard.core.training import Job


def create_processing_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    name = params["ProcessingJobName"]
    with ctx.platform.budgets.guard(
        "processing job", name, estimates.processing, params, request_tags(params)
    ):
        job = ctx.platform.processing.create(params, region=ctx.region, owner=ctx.principal)
    return {"ProcessingJobArn": job.arn}


def describe_processing_job(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return describe(ctx.platform.processing.describe(params["ProcessingJobName"]))


def list_processing_jobs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    query = job_query(params)
    jobs, token = ctx.platform.processing.list_jobs(
        query, max_results=params.get("MaxResults", 10), next_token=params.get("NextToken")
    )
    return {
        "ProcessingJobSummaries": [
            {
                "ProcessingJobName": j.name,
                "ProcessingJobArn": j.arn,
                "CreationTime": j.created,
                "ProcessingEndTime": j.state.training_end,
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


def _exit_message(job: Job[ProcessingJobSpec]) -> str | None:
    codes = [c for c in job.runtime.get("exit_codes") or [] if c is not None]
    if not codes:
        return None
    return f"Exit code {max(codes, key=abs)}" if any(codes) else "Exit code 0"


def describe(job: Job[ProcessingJobSpec]) -> dict[str, Any]:
    """DescribeProcessingJob's answer for ``job``."""
    request, state = job.spec.request, job.state
    return {
        "ProcessingJobName": job.name,
        "ProcessingJobArn": job.arn,
        "ProcessingInputs": request.get("ProcessingInputs"),
        "ProcessingOutputConfig": request.get("ProcessingOutputConfig"),
        "ProcessingResources": request["ProcessingResources"],
        "StoppingCondition": request.get("StoppingCondition"),
        "AppSpecification": request["AppSpecification"],
        "Environment": request.get("Environment"),
        "NetworkConfig": request.get("NetworkConfig"),
        "RoleArn": request["RoleArn"],
        "ExperimentConfig": request.get("ExperimentConfig"),
        "ProcessingJobStatus": state.status.value,
        "ExitMessage": _exit_message(job),
        "FailureReason": state.failure_reason,
        "ProcessingStartTime": state.training_start,
        "ProcessingEndTime": state.training_end,
        "LastModifiedTime": state.last_modified,
        "CreationTime": job.created,
    }


OPERATIONS = {
    "CreateProcessingJob": create_processing_job,
    "DescribeProcessingJob": describe_processing_job,
    "ListProcessingJobs": list_processing_jobs,
    "StopProcessingJob": stop_processing_job,
}
