"""Pipelines and their executions; the model registry."""

from __future__ import annotations

from typing import Any

from shipyard.api._context import RequestContext
from shipyard.api.sagemaker._hosting import _tag
from shipyard.api.sagemaker._ownership import visible
from shipyard.core.pagination import Page
from shipyard.core.pipelines import Definition, Execution, Pipeline, StepRun
from shipyard.errors import ValidationError
from shipyard.services import describe as answers
from shipyard.store.pipelines import ModelPackage


# -- pipelines ----------------------------------------------------------------------------------
def create_pipeline(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    pipeline = ctx.platform.pipelines.create(params, region=ctx.region, owner=ctx.owner)
    _tag(ctx, pipeline, params)  # type: ignore[arg-type]
    return {"PipelineArn": pipeline.arn}


def update_pipeline(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    pipeline = ctx.platform.pipelines.update(params)
    return {"PipelineArn": pipeline.arn, "PipelineVersionId": pipeline.version}


def describe_pipeline(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    pipeline = ctx.platform.pipelines.get(params["PipelineName"])
    return {
        "PipelineArn": pipeline.arn,
        "PipelineName": pipeline.name,
        "PipelineDisplayName": pipeline.display_name or pipeline.name,
        "PipelineDefinition": pipeline.definition,
        "PipelineDescription": pipeline.description,
        "RoleArn": pipeline.role_arn,
        "PipelineStatus": "Active",
        "CreationTime": pipeline.created,
        "LastModifiedTime": pipeline.last_modified,
        "LastRunTime": pipeline.last_run,
        "ParallelismConfiguration": _parallelism(pipeline.parallelism),
    }


def list_pipelines(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    pipelines, token = ctx.platform.pipelines.find(params)
    pipelines = visible(ctx, pipelines, lambda p: p.arn, "sagemaker:DescribePipeline")
    return {"PipelineSummaries": [_pipeline_summary(p) for p in pipelines], "NextToken": token}


def _pipeline_summary(pipeline: Pipeline) -> dict[str, Any]:
    return {
        "PipelineArn": pipeline.arn,
        "PipelineName": pipeline.name,
        "PipelineDisplayName": pipeline.display_name or pipeline.name,
        "PipelineDescription": pipeline.description,
        "RoleArn": pipeline.role_arn,
        "CreationTime": pipeline.created,
        "LastModifiedTime": pipeline.last_modified,
        "LastExecutionTime": pipeline.last_run,
    }


def delete_pipeline(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    pipeline = ctx.platform.pipelines.delete(params["PipelineName"])
    return {"PipelineArn": pipeline.arn}


def _parallelism(value: int | None) -> dict[str, int] | None:
    return {"MaxParallelExecutionSteps": value} if value else None


# -- executions ---------------------------------------------------------------------------------
def start_pipeline_execution(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    execution = ctx.platform.pipelines.start(params, region=ctx.region, owner=ctx.owner)
    ctx.platform.scheduler.wake()
    return {"PipelineExecutionArn": execution.arn}


def describe_pipeline_execution(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    execution = ctx.platform.pipelines.execution(params["PipelineExecutionArn"])
    return {
        "PipelineArn": execution.pipeline_arn,
        "PipelineExecutionArn": execution.arn,
        "PipelineExecutionDisplayName": execution.display_name,
        "PipelineExecutionStatus": execution.status.value,
        "PipelineExecutionDescription": execution.description,
        "FailureReason": execution.failure_reason,
        "CreationTime": execution.created,
        "LastModifiedTime": execution.last_modified,
        "ParallelismConfiguration": _parallelism(execution.parallelism),
    }


def list_pipeline_executions(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    executions, token = ctx.platform.pipelines.executions(params)
    executions = visible(ctx, executions, lambda e: e.arn, "sagemaker:DescribePipelineExecution")
    return {
        "PipelineExecutionSummaries": [
            {
                "PipelineExecutionArn": e.arn,
                "StartTime": e.created,
                "PipelineExecutionStatus": e.status.value,
                "PipelineExecutionDescription": e.description,
                "PipelineExecutionDisplayName": e.display_name,
                "PipelineExecutionFailureReason": e.failure_reason,
            }
            for e in executions
        ],
        "NextToken": token,
    }


def list_pipeline_execution_steps(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    if "PipelineExecutionArn" not in params:  # optional in botocore's model
        raise ValidationError("PipelineExecutionArn is required", field="PipelineExecutionArn")
    execution = ctx.platform.pipelines.execution(params["PipelineExecutionArn"])
    definition = ctx.platform.pipelines.definition_for(execution.arn)
    runs = sorted(execution.steps.values(), key=lambda r: (r.started, r.name))
    if params.get("SortOrder", "Descending") == "Descending":
        runs.reverse()
    page, token = Page.requested(params, default_size=50).slice(runs)
    return {"PipelineExecutionSteps": [_step(run, definition) for run in page], "NextToken": token}


def _step(run: StepRun, definition: Definition | None) -> dict[str, Any]:
    step = definition.steps.get(run.name) if definition else None
    waiting = run.retry_at is not None and not run.status.is_terminal
    return {
        "StepName": run.name,
        "StepDisplayName": step.display_name if step else None,
        "StepDescription": step.description if step else None,
        "StartTime": run.started,
        "EndTime": run.ended,
        "StepStatus": run.status.value,
        "CacheHitResult": {"SourcePipelineExecutionArn": run.cache_source} if run.cache_source else None,
        "FailureReason": run.failure_reason if run.status.is_terminal or waiting else None,
        "Metadata": dict(run.metadata),
        "AttemptCount": run.attempts,
    }


def list_pipeline_parameters_for_execution(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    execution = ctx.platform.pipelines.execution(params["PipelineExecutionArn"])
    return {"PipelineParameters": execution.parameter_list()}


def describe_pipeline_definition_for_execution(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    execution = ctx.platform.pipelines.execution(params["PipelineExecutionArn"])
    return {"PipelineDefinition": execution.definition, "CreationTime": execution.created}


def stop_pipeline_execution(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    execution = ctx.platform.pipelines.stop(params["PipelineExecutionArn"])
    ctx.platform.scheduler.wake()
    return {"PipelineExecutionArn": execution.arn}


def retry_pipeline_execution(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    execution = ctx.platform.pipelines.retry(params["PipelineExecutionArn"], params)
    ctx.platform.scheduler.wake()
    return {"PipelineExecutionArn": execution.arn}


def update_pipeline_execution(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    execution: Execution = ctx.platform.pipelines.update_execution(params)
    return {"PipelineExecutionArn": execution.arn}


# -- the model registry -------------------------------------------------------------------------
def create_model_package_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    group = ctx.platform.registry.create_group(params, region=ctx.region, owner=ctx.owner)
    _tag(ctx, group, params)
    return {"ModelPackageGroupArn": group.arn}


def describe_model_package_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    group = ctx.platform.registry.group(params["ModelPackageGroupName"])
    return {
        "ModelPackageGroupName": group.name,
        "ModelPackageGroupArn": group.arn,
        "ModelPackageGroupDescription": group.request.get("ModelPackageGroupDescription"),
        "CreationTime": group.created,
        "CreatedBy": {},
        "ModelPackageGroupStatus": group.status or "Completed",
    }


def list_model_package_groups(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    groups, token = ctx.platform.registry.find_groups(params)
    groups = visible(ctx, groups, lambda g: g.arn, "sagemaker:DescribeModelPackageGroup")
    return {
        "ModelPackageGroupSummaryList": [
            {
                "ModelPackageGroupName": g.name,
                "ModelPackageGroupArn": g.arn,
                "ModelPackageGroupDescription": g.request.get("ModelPackageGroupDescription"),
                "CreationTime": g.created,
                "ModelPackageGroupStatus": g.status or "Completed",
            }
            for g in groups
        ],
        "NextToken": token,
    }


def delete_model_package_group(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.registry.delete_group(params["ModelPackageGroupName"])
    return {}


def create_model_package(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    package = ctx.platform.registry.create_package(params, region=ctx.region, owner=ctx.owner)
    _tag(ctx, package, params)  # type: ignore[arg-type]
    return {"ModelPackageArn": package.arn}


def describe_model_package(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return answers.model_package(ctx.platform.registry.package(params["ModelPackageName"]))


def _package_summary(package: ModelPackage) -> dict[str, Any]:
    return {
        "ModelPackageName": package.group,
        "ModelPackageGroupName": package.group,
        "ModelPackageVersion": package.version,
        "ModelPackageArn": package.arn,
        "ModelPackageDescription": package.request.get("ModelPackageDescription"),
        "CreationTime": package.created,
        "ModelPackageStatus": "Completed",
        "ModelApprovalStatus": package.approval,
        "ModelLifeCycle": package.request.get("ModelLifeCycle"),
        "ModelPackageRegistrationType": package.request.get("ModelPackageRegistrationType"),
    }


def list_model_packages(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    packages, token = ctx.platform.registry.find_packages(params)
    packages = visible(ctx, packages, lambda p: p.arn, "sagemaker:DescribeModelPackage")
    return {"ModelPackageSummaryList": [_package_summary(p) for p in packages], "NextToken": token}


def update_model_package(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    package = ctx.platform.registry.update_package(params)
    return {"ModelPackageArn": package.arn}


def delete_model_package(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.registry.delete_package(params["ModelPackageName"])
    return {}


OPERATIONS = {
    "CreatePipeline": create_pipeline,
    "UpdatePipeline": update_pipeline,
    "DescribePipeline": describe_pipeline,
    "ListPipelines": list_pipelines,
    "DeletePipeline": delete_pipeline,
    "StartPipelineExecution": start_pipeline_execution,
    "DescribePipelineExecution": describe_pipeline_execution,
    "ListPipelineExecutions": list_pipeline_executions,
    "ListPipelineExecutionSteps": list_pipeline_execution_steps,
    "ListPipelineParametersForExecution": list_pipeline_parameters_for_execution,
    "DescribePipelineDefinitionForExecution": describe_pipeline_definition_for_execution,
    "StopPipelineExecution": stop_pipeline_execution,
    "RetryPipelineExecution": retry_pipeline_execution,
    "UpdatePipelineExecution": update_pipeline_execution,
    "CreateModelPackageGroup": create_model_package_group,
    "DescribeModelPackageGroup": describe_model_package_group,
    "ListModelPackageGroups": list_model_package_groups,
    "DeleteModelPackageGroup": delete_model_package_group,
    "CreateModelPackage": create_model_package,
    "DescribeModelPackage": describe_model_package,
    "ListModelPackages": list_model_packages,
    "UpdateModelPackage": update_model_package,
    "DeleteModelPackage": delete_model_package,
}
