"""SageMaker's Describe answers for the platform's jobs and resources, built from the core objects.

The API answers DescribeTrainingJob (and the rest) with these, and a pipeline step's properties
are the same answer for its job: one place says what a Describe returns.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from shipyard.core.algorithms import xgboost
from shipyard.core.jobs import Job, TrainingJob
from shipyard.core.processing import ProcessingJobSpec
from shipyard.core.training import TrainingJobStatus
from shipyard.core.transform import TransformJobSpec
from shipyard.core.tuning import TuningJob
from shipyard.envs import framework_of
from shipyard.services.tuning import TrialView
from shipyard.store import Resource
from shipyard.store.pipelines import ModelPackage


def training_job(job: TrainingJob) -> dict[str, Any]:
    """DescribeTrainingJob's answer for ``job``."""
    spec, request, run, state = job.spec, job.spec.request, job.run, job.state
    now = dt.datetime.now(dt.UTC)
    result: dict[str, Any] = {
        "TrainingJobName": job.name,
        "TrainingJobArn": job.arn,
        "TuningJobArn": run.tuning_job_arn,
        "ModelArtifacts": {"S3ModelArtifacts": run.model_artifacts or spec.model_artifacts_uri()},
        "TrainingJobStatus": state.status.value,
        "SecondaryStatus": state.secondary.value,
        "FailureReason": state.failure_reason,
        "HyperParameters": dict(spec.hyperparameters),
        "AlgorithmSpecification": request["AlgorithmSpecification"],
        "RoleArn": spec.role_arn,
        "InputDataConfig": request.get("InputDataConfig"),
        "OutputDataConfig": {"KmsKeyId": "", **request["OutputDataConfig"]},  # the SDK's attach reads it
        "ResourceConfig": request["ResourceConfig"],
        "StoppingCondition": request.get("StoppingCondition")
        or {"MaxRuntimeInSeconds": spec.max_runtime_seconds},
        "CreationTime": job.created,
        "TrainingStartTime": state.started,
        "TrainingEndTime": state.ended,
        "LastModifiedTime": state.last_modified,
        "SecondaryStatusTransitions": [t.to_wire() for t in state.transitions],
        "FinalMetricDataList": [
            {
                "MetricName": m["MetricName"],
                "Value": m["Value"],
                "Timestamp": dt.datetime.fromisoformat(m["Timestamp"]),
            }
            for m in run.final_metrics
        ],
        "EnableNetworkIsolation": request.get("EnableNetworkIsolation", False),
        "EnableInterContainerTrafficEncryption": request.get("EnableInterContainerTrafficEncryption", False),
        "EnableManagedSpotTraining": request.get("EnableManagedSpotTraining", False),
        "Environment": request.get("Environment"),
        "CheckpointConfig": request.get("CheckpointConfig"),
        "RetryStrategy": request.get("RetryStrategy"),
        "VpcConfig": request.get("VpcConfig"),
        "DebugHookConfig": request.get("DebugHookConfig"),
        "ProfilerConfig": request.get("ProfilerConfig"),
        "ExperimentConfig": request.get("ExperimentConfig"),  # load_run() in the job reads it
    }
    if state.started is not None:
        billing = run.billing
        seconds = (billing.training_seconds if billing else 0) or state.training_seconds(now)
        result["TrainingTimeInSeconds"] = seconds
        result["BillableTimeInSeconds"] = (
            billing.billable_seconds if billing else seconds * spec.instance_count
        )
    return result


def exit_message(job: Job[ProcessingJobSpec]) -> str | None:
    codes = [c for c in job.run.exit_codes if c is not None]
    if not codes:
        return None
    return f"Exit code {max(codes, key=abs)}" if any(codes) else "Exit code 0"


def processing_job(job: Job[ProcessingJobSpec]) -> dict[str, Any]:
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
        "ExitMessage": exit_message(job),
        "FailureReason": state.failure_reason,
        "ProcessingStartTime": state.started,
        "ProcessingEndTime": state.ended,
        "LastModifiedTime": state.last_modified,
        "CreationTime": job.created,
    }


def transform_job(job: Job[TransformJobSpec]) -> dict[str, Any]:
    """DescribeTransformJob's answer for ``job``."""
    request, spec, state = job.spec.request, job.spec, job.state
    return {
        "TransformJobName": job.name,
        "TransformJobArn": job.arn,
        "TransformJobStatus": state.status.value,
        "FailureReason": state.failure_reason,
        "ModelName": spec.model_name,
        "MaxConcurrentTransforms": spec.max_concurrent,
        "ModelClientConfig": {
            "InvocationsTimeoutInSeconds": spec.timeout_seconds,
            "InvocationsMaxRetries": spec.max_retries,
        },
        "MaxPayloadInMB": request.get("MaxPayloadInMB", 6),
        "BatchStrategy": spec.batch_strategy,
        "Environment": request.get("Environment"),
        "TransformInput": request["TransformInput"],
        "TransformOutput": request["TransformOutput"],
        "TransformResources": request["TransformResources"],
        "DataProcessing": request.get("DataProcessing"),
        "ExperimentConfig": request.get("ExperimentConfig"),
        "CreationTime": job.created,
        "TransformStartTime": state.started,
        "TransformEndTime": state.ended,
    }


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


def trial_summary(job: TuningJob, view: TrialView) -> dict[str, Any]:
    training = view.job
    return {
        "TrainingJobName": view.trial.job,
        "TrainingJobArn": training.arn
        if training
        else f"{job.arn.rsplit(':', 1)[0]}:training-job/{view.trial.job}",
        "TuningJobName": job.name,
        "CreationTime": training.created if training else job.created,
        "TrainingStartTime": training.state.started if training else None,
        "TrainingEndTime": training.state.ended if training else None,
        "TrainingJobStatus": view.status.value,
        "TunedHyperParameters": dict(view.trial.hyperparameters),
        "TrainingJobDefinitionName": view.trial.definition,
        "FailureReason": training.state.failure_reason if training else None,
        "FinalHyperParameterTuningJobObjectiveMetric": _objective(job, view),
        "ObjectiveStatus": _objective_status(view),
    }


def _definition(job: TuningJob, raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """A training job definition as SageMaker shows it: the static hyperparameters its trials get,
    and the ResourceConfig they run with even where HyperParameterTuningResourceConfig gave it (the
    SDK's attach reads ResourceConfig)."""
    if raw is None:
        return None
    definition = job.spec.definition(raw.get("DefinitionName"))
    algorithm = dict(raw.get("AlgorithmSpecification") or {})
    if not algorithm.get("MetricDefinitions"):  # the SDK's attach reads them; a built-in's are its own
        builtin = framework_of(str(algorithm.get("TrainingImage", ""))) == "xgboost" and not any(
            k in definition.static_hyperparameters
            for k in ("sagemaker_program", "sagemaker_submit_directory")
        )
        algorithm["MetricDefinitions"] = xgboost.metric_definitions() if builtin else []
    return {
        "ResourceConfig": dict(definition.resource_config),
        **raw,
        "AlgorithmSpecification": algorithm,
        "StaticHyperParameters": definition.trial_static_hyperparameters,
    }


def tuning_job(job: TuningJob, views: list[TrialView], best: TrialView | None) -> dict[str, Any]:
    """DescribeHyperParameterTuningJob's answer for ``job`` with its trials and the best of them."""
    counts = {status: 0 for status in TrainingJobStatus}
    for view in views:
        counts[view.status] += 1
    objective_counts = {"Succeeded": 0, "Pending": 0, "Failed": 0}
    for view in views:
        objective_counts[_objective_status(view)] += 1
    request = job.spec.request
    result: dict[str, Any] = {
        "HyperParameterTuningJobName": job.name,
        "HyperParameterTuningJobArn": job.arn,
        "HyperParameterTuningJobConfig": request["HyperParameterTuningJobConfig"],
        "TrainingJobDefinition": _definition(job, request.get("TrainingJobDefinition")),
        "TrainingJobDefinitions": [_definition(job, d) for d in request["TrainingJobDefinitions"]]
        if request.get("TrainingJobDefinitions")
        else None,
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
        "BestTrainingJob": trial_summary(job, best) if best else None,
        "FailureReason": job.failure_reason,
    }
    if job.completion:
        result["TuningJobCompletionDetails"] = {"NumberOfTrainingJobsObjectiveNotImproving": 0}
    return result


def model(resource: Resource) -> dict[str, Any]:
    """DescribeModel's answer for a stored model."""
    request = resource.request
    return {
        "ModelName": resource.name,
        "ModelArn": resource.arn,
        "CreationTime": resource.created,
        "PrimaryContainer": request.get("PrimaryContainer"),
        "Containers": request.get("Containers"),
        "ExecutionRoleArn": request.get("ExecutionRoleArn"),
        "EnableNetworkIsolation": request.get("EnableNetworkIsolation", False),
    }


_PACKAGE_MEMBERS = (
    "ModelPackageDescription",
    "InferenceSpecification",
    "SourceAlgorithmSpecification",
    "ValidationSpecification",
    "CertifyForMarketplace",
    "MetadataProperties",
    "ModelMetrics",
    "Domain",
    "Task",
    "SamplePayloadUrl",
    "CustomerMetadataProperties",
    "DriftCheckBaselines",
    "AdditionalInferenceSpecifications",
    "SkipModelValidation",
    "SourceUri",
    "ModelCard",
    "ModelLifeCycle",
    "ModelPackageRegistrationType",
)


def model_package(package: ModelPackage) -> dict[str, Any]:
    """DescribeModelPackage's answer for a registered package."""
    return {
        **{k: package.request[k] for k in _PACKAGE_MEMBERS if k in package.request},
        "ModelPackageName": package.group,
        "ModelPackageGroupName": package.group,
        "ModelPackageVersion": package.version,
        "ModelPackageArn": package.arn,
        "CreationTime": package.created,
        "LastModifiedTime": package.last_modified,
        "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
        "ModelApprovalStatus": package.approval,
        "ApprovalDescription": package.state.get("approval_description"),
    }
