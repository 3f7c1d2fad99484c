"""Every SageMaker job is a trial component: ``<job>-aws-training-job`` (processing, transform)
with the job's hyperparameters as Parameters, its metrics, its inputs and outputs as artifacts,
its status and times. Built here from the job's Describe answer, so it is never stored apart
from the job and never out of date."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.core.experiments._entities import MetricStats, parameter_value
from shipyard.core.training import MetricPoint


@dataclasses.dataclass(frozen=True)
class JobSource:
    """A job kind as trial components name it."""

    kind: str  # training | processing | transform (the platform's job kinds)
    suffix: str
    source_type: str
    resource_type: str  # in the job's ARN


JOB_SOURCES = (
    JobSource("training", "-aws-training-job", "SageMakerTrainingJob", "training-job"),
    JobSource("processing", "-aws-processing-job", "SageMakerProcessingJob", "processing-job"),
    JobSource("transform", "-aws-transform-job", "SageMakerTransformJob", "transform-job"),
)
_BY_KIND = {s.kind: s for s in JOB_SOURCES}


def job_component_name(kind: str, job_name: str) -> str:
    """The trial component SageMaker makes for a job: ``<job>-aws-<kind>-job``."""
    return job_name + _BY_KIND[kind].suffix


def job_of_component(name: str) -> tuple[JobSource, str] | None:
    """The job a trial component name stands for (its kind and job name), if any."""
    lowered = name.lower()
    for source in JOB_SOURCES:
        if lowered.endswith(source.suffix) and len(name) > len(source.suffix):
            return source, name[: -len(source.suffix)]
    return None


def job_of_source_arn(arn: str) -> tuple[JobSource, str] | None:
    """The job kind and (ARN-cased) name a job ARN names, if it is a job's."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[2] != "sagemaker":
        return None
    resource_type, _, name = parts[5].partition("/")
    for source in JOB_SOURCES:
        if resource_type == source.resource_type and name:
            return source, name
    return None


def ownership_arn(arn: str) -> str:
    """The ARN whose ownership decides who reaches ``arn``: a job's trial component is its job's."""
    prefix, sep, name = arn.partition(":experiment-trial-component/")
    found = job_of_component(name) if sep else None
    if found is None:
        return arn
    source, job = found
    return f"{prefix}:{source.resource_type}/{job.lower()}"


def _status(answer: Mapping[str, Any], status_member: str) -> dict[str, Any]:
    status: dict[str, Any] = {"PrimaryStatus": answer[status_member]}
    message = answer.get("FailureReason") or answer.get("SecondaryStatus")
    if message:
        status["Message"] = message
    return status


def _artifacts(pairs: Sequence[tuple[str, str | None]], media_type: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name and value:
            found[name] = {"Value": value, **({"MediaType": media_type} if media_type else {})}
    return found


def _metrics(series: Mapping[str, Sequence[MetricPoint]], arn: str) -> list[dict[str, Any]]:
    summaries = []
    for name, points in sorted(series.items()):
        if not points:
            continue
        stats = MetricStats.of(points[0].value, points[0].timestamp)
        for point in points[1:]:
            stats = stats.add(point.value, point.timestamp)
        summaries.append(stats.summary(name, arn))
    return summaries


def _common(answer: Mapping[str, Any], source: JobSource, arn_member: str) -> dict[str, Any]:
    job_name = answer[arn_member.replace("Arn", "Name")]
    component = job_component_name(source.kind, job_name)
    config = answer.get("ExperimentConfig") or {}
    return {
        "TrialComponentName": component,
        "DisplayName": config.get("TrialComponentDisplayName") or component,
        "Source": {"SourceArn": answer[arn_member], "SourceType": source.source_type},
        "CreationTime": answer["CreationTime"],
        "LastModifiedTime": answer.get("LastModifiedTime") or answer["CreationTime"],
        "RunName": config.get("RunName"),
    }


def training_component(
    answer: Mapping[str, Any], series: Mapping[str, Sequence[MetricPoint]] = {}
) -> dict[str, Any]:
    """A training job's trial component from its DescribeTrainingJob answer and metric series."""
    source = _BY_KIND["training"]
    resources = answer.get("ResourceConfig") or {}
    algorithm = answer.get("AlgorithmSpecification") or {}
    parameters = {k: parameter_value(v) for k, v in (answer.get("HyperParameters") or {}).items()}
    if algorithm.get("TrainingImage"):
        parameters["SageMaker.ImageUri"] = {"StringValue": algorithm["TrainingImage"]}
    for member in ("InstanceType", "InstanceCount", "VolumeSizeInGB"):
        if member in resources:
            parameters[f"SageMaker.{member}"] = parameter_value(resources[member])
    channels = [
        (c["ChannelName"], ((c.get("DataSource") or {}).get("S3DataSource") or {}).get("S3Uri"))
        for c in answer.get("InputDataConfig") or ()
    ]
    model = (answer.get("ModelArtifacts") or {}).get("S3ModelArtifacts")
    done = answer["TrainingJobStatus"] == "Completed"
    return {
        **_common(answer, source, "TrainingJobArn"),
        "Status": _status(answer, "TrainingJobStatus"),
        "StartTime": answer.get("TrainingStartTime"),
        "EndTime": answer.get("TrainingEndTime"),
        "Parameters": parameters,
        "InputArtifacts": {
            **_artifacts(channels),
            **_artifacts([("SageMaker.ImageUri", algorithm.get("TrainingImage"))]),
        },
        "OutputArtifacts": _artifacts([("SageMaker.ModelArtifact", model if done else None)]),
        "Metrics": _metrics(series, answer["TrainingJobArn"]),
    }


def processing_component(answer: Mapping[str, Any]) -> dict[str, Any]:
    """A processing job's trial component from its DescribeProcessingJob answer."""
    source = _BY_KIND["processing"]
    cluster = (answer.get("ProcessingResources") or {}).get("ClusterConfig") or {}
    app = answer.get("AppSpecification") or {}
    parameters = {
        f"SageMaker.{m}": parameter_value(cluster[m])
        for m in ("InstanceType", "InstanceCount", "VolumeSizeInGB")
        if m in cluster
    }
    if app.get("ImageUri"):
        parameters["SageMaker.ImageUri"] = {"StringValue": app["ImageUri"]}
    inputs = [
        (i["InputName"], (i.get("S3Input") or {}).get("S3Uri")) for i in answer.get("ProcessingInputs") or ()
    ]
    outputs = [
        (o["OutputName"], (o.get("S3Output") or {}).get("S3Uri"))
        for o in (answer.get("ProcessingOutputConfig") or {}).get("Outputs") or ()
    ]
    return {
        **_common(answer, source, "ProcessingJobArn"),
        "Status": _status(answer, "ProcessingJobStatus"),
        "StartTime": answer.get("ProcessingStartTime"),
        "EndTime": answer.get("ProcessingEndTime"),
        "Parameters": parameters,
        "InputArtifacts": {**_artifacts(inputs), **_artifacts([("SageMaker.ImageUri", app.get("ImageUri"))])},
        "OutputArtifacts": _artifacts(outputs),
        "Metrics": [],
    }


def transform_component(answer: Mapping[str, Any]) -> dict[str, Any]:
    """A transform job's trial component from its DescribeTransformJob answer."""
    source = _BY_KIND["transform"]
    resources = answer.get("TransformResources") or {}
    parameters = {
        f"SageMaker.{m}": parameter_value(resources[m])
        for m in ("InstanceType", "InstanceCount")
        if m in resources
    }
    parameters["SageMaker.ModelName"] = {"StringValue": answer["ModelName"]}
    data = ((answer.get("TransformInput") or {}).get("DataSource") or {}).get("S3DataSource") or {}
    output = (answer.get("TransformOutput") or {}).get("S3OutputPath")
    return {
        **_common(answer, source, "TransformJobArn"),
        "Status": _status(answer, "TransformJobStatus"),
        "StartTime": answer.get("TransformStartTime"),
        "EndTime": answer.get("TransformEndTime"),
        "Parameters": parameters,
        "InputArtifacts": _artifacts([("SageMaker.TransformInput", data.get("S3Uri"))]),
        "OutputArtifacts": _artifacts([("SageMaker.TransformOutput", output)]),
        "Metrics": [],
    }
