"""Processing jobs: what a CreateProcessingJob request says, validated.

A processing job runs a container entrypoint over inputs fetched to local paths under
/opt/ml/processing and uploads what it leaves in its output paths. Shipyard runs it like a training
job (the same scheduler, agent and sandbox), with SageMaker's processing layout and contract.
"""

from __future__ import annotations

import dataclasses
import posixpath
from collections.abc import Mapping
from typing import Any, ClassVar

from shipyard.core.training import MetricDefinition, parse_s3_uri
from shipyard.errors import ValidationError

PROCESSING_ROOT = "/opt/ml/processing"


def _local_path(path: str, field: str) -> str:
    normal = posixpath.normpath(path)
    if not normal.startswith(PROCESSING_ROOT + "/") or ".." in normal.split("/"):
        raise ValidationError(
            f"{field} {path!r} must be a path under {PROCESSING_ROOT}/", field=field, value=path
        )
    return normal


def _unsupported(field: str, what: str) -> ValidationError:
    return ValidationError(f"{field} ({what}) is not supported by Shipyard yet", field=field)


@dataclasses.dataclass(frozen=True)
class ProcessingInput:
    name: str
    s3_uri: str
    local_path: str
    data_type: str = "S3Prefix"  # S3Prefix | ManifestFile
    distribution: str = "FullyReplicated"  # FullyReplicated | ShardedByS3Key
    compression: str = "None"  # None | Gzip


@dataclasses.dataclass(frozen=True)
class ProcessingOutput:
    name: str
    s3_uri: str
    local_path: str
    upload_mode: str = "EndOfJob"  # EndOfJob | Continuous


@dataclasses.dataclass(frozen=True)
class ProcessingJobSpec:
    kind: ClassVar[str] = "processing"
    name: str
    image: str | None
    instance_type: str
    instance_count: int
    volume_gb: int
    max_runtime_seconds: int
    entrypoint: tuple[str, ...]
    arguments: tuple[str, ...]
    environment: Mapping[str, str]
    inputs: tuple[ProcessingInput, ...]
    outputs: tuple[ProcessingOutput, ...]
    role_arn: str
    request: Mapping[str, Any]
    max_retry_attempts: int = 0
    metric_definitions: tuple[MetricDefinition, ...] = ()

    @classmethod
    def from_request(cls, params: Mapping[str, Any]) -> ProcessingJobSpec:
        app = params["AppSpecification"]
        cluster = params["ProcessingResources"]["ClusterConfig"]
        inputs = []
        for index, raw in enumerate(params.get("ProcessingInputs") or []):
            field = f"ProcessingInputs.{index}"
            if raw.get("DatasetDefinition"):
                raise _unsupported(f"{field}.DatasetDefinition", "Athena and Redshift datasets; give S3Input")
            s3 = raw.get("S3Input")
            if not s3:
                raise ValidationError(f"{field}.S3Input is required", field=f"{field}.S3Input")
            if s3.get("S3InputMode", "File") != "File":
                raise _unsupported(f"{field}.S3Input.S3InputMode", "Pipe mode; use File")
            parse_s3_uri(s3["S3Uri"], field=f"{field}.S3Input.S3Uri")
            inputs.append(
                ProcessingInput(
                    raw["InputName"],
                    s3["S3Uri"],
                    _local_path(s3["LocalPath"], f"{field}.S3Input.LocalPath"),
                    s3.get("S3DataType", "S3Prefix"),
                    s3.get("S3DataDistributionType", "FullyReplicated"),
                    s3.get("S3CompressionType", "None"),
                )
            )
        outputs = []
        for index, raw in enumerate((params.get("ProcessingOutputConfig") or {}).get("Outputs") or []):
            field = f"ProcessingOutputConfig.Outputs.{index}"
            if raw.get("FeatureStoreOutput"):
                raise _unsupported(f"{field}.FeatureStoreOutput", "Feature Store; give S3Output")
            s3 = raw.get("S3Output")
            if not s3:
                raise ValidationError(f"{field}.S3Output is required", field=f"{field}.S3Output")
            parse_s3_uri(s3["S3Uri"], field=f"{field}.S3Output.S3Uri")
            outputs.append(
                ProcessingOutput(
                    raw["OutputName"],
                    s3["S3Uri"],
                    _local_path(s3["LocalPath"], f"{field}.S3Output.LocalPath"),
                    s3.get("S3UploadMode", "EndOfJob"),
                )
            )
        names = [i.name for i in inputs] + [o.name for o in outputs]
        if len(set(names)) != len(names):
            raise ValidationError(
                f"Input and output names must be unique within a processing job, got {names}",
                field="ProcessingInputs",
                value=names,
            )
        entrypoint = tuple(app.get("ContainerEntrypoint") or ())
        if not entrypoint:
            raise ValidationError(
                "AppSpecification.ContainerEntrypoint is required: Shipyard runs images without a container "
                "engine, so there is no image entrypoint to fall back on",
                field="AppSpecification.ContainerEntrypoint",
            )
        return cls(
            name=params["ProcessingJobName"],
            image=app["ImageUri"],
            instance_type=cluster["InstanceType"],
            instance_count=int(cluster["InstanceCount"]),
            volume_gb=int(cluster.get("VolumeSizeInGB", 30)),
            max_runtime_seconds=int(
                (params.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", 86400)
            ),
            entrypoint=entrypoint,
            arguments=tuple(app.get("ContainerArguments") or ()),
            environment=dict(params.get("Environment") or {}),
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            role_arn=params["RoleArn"],
            request=params,
        )

    def job_config(self, arn: str) -> dict[str, Any]:
        """/opt/ml/config/processingjobconfig.json, as SageMaker writes it (the request, mostly)."""
        return {
            "ProcessingJobArn": arn,
            "ProcessingJobName": self.name,
            "AppSpecification": dict(self.request["AppSpecification"]),
            "ProcessingInputs": list(self.request.get("ProcessingInputs") or []),
            "ProcessingOutputConfig": dict(self.request.get("ProcessingOutputConfig") or {"Outputs": []}),
            "ProcessingResources": dict(self.request["ProcessingResources"]),
            "RoleArn": self.role_arn,
            "StoppingCondition": {"MaxRuntimeInSeconds": self.max_runtime_seconds},
            "Environment": dict(self.environment),
        }
