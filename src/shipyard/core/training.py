"""Training jobs: what was asked (the spec), and where the job stands (its state).

The spec is parsed once from a CreateTrainingJob request (already validated against botocore's
model) into frozen values; the state moves only through :meth:`TrainingJobState.advance` and the
terminal transitions, so every path through a job's life leaves the same record behind.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any, ClassVar

from shipyard.errors import ValidationError

# Folders of /opt/ml the container contract owns: a checkpoint folder may not be one of them.
_CONTRACT_DIRS = ("input", "model", "output", "code", "processing")

# Hyperparameters the SageMaker SDK uses to pass the script-mode contract. JSON-encoded strings.
PROGRAM_HP = "sagemaker_program"
SUBMIT_DIR_HP = "sagemaker_submit_directory"
# distribution={"torch_distributed": {"enabled": True}} (the SDK's PyTorch estimator): torchrun.
TORCH_DISTRIBUTED_HP = "sagemaker_torch_distributed_enabled"
RESERVED_HP_PREFIX = "sagemaker_"
# Automatic model tuning adds this to every trial's hyperparameters (hyperparameters.json has it);
# the training toolkit keeps it out of the user code's arguments and SM_HPS, as it does sagemaker_*.
TUNING_OBJECTIVE_HP = "_tuning_objective_metric"


class TrainingJobStatus(enum.StrEnum):
    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPING = "Stopping"
    STOPPED = "Stopped"

    @property
    def is_terminal(self) -> bool:
        return self in (TrainingJobStatus.COMPLETED, TrainingJobStatus.FAILED, TrainingJobStatus.STOPPED)


class SecondaryStatus(enum.StrEnum):
    STARTING = "Starting"
    PENDING = "Pending"
    DOWNLOADING = "Downloading"
    TRAINING = "Training"
    UPLOADING = "Uploading"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    MAX_RUNTIME_EXCEEDED = "MaxRuntimeExceeded"
    COMPLETED = "Completed"
    FAILED = "Failed"

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    SecondaryStatus.STARTING: "Preparing the instances for training",
    SecondaryStatus.PENDING: "Waiting for capacity on the backend",
    SecondaryStatus.DOWNLOADING: "Downloading input data",
    SecondaryStatus.TRAINING: "Training in progress",
    SecondaryStatus.UPLOADING: "Uploading generated training model",
    SecondaryStatus.STOPPING: "Stopping the training job",
    SecondaryStatus.STOPPED: "The job was stopped",
    SecondaryStatus.MAX_RUNTIME_EXCEEDED: "Job stopped because it exceeded MaxRuntimeInSeconds",
    SecondaryStatus.COMPLETED: "Training job completed",
    SecondaryStatus.FAILED: "Training job failed",
}


@dataclasses.dataclass(frozen=True)
class Channel:
    """One input channel: objects under an S3 URI, made available at /opt/ml/input/data/<name>."""

    name: str
    s3_uri: str
    s3_data_type: str = "S3Prefix"
    distribution: str = "FullyReplicated"
    content_type: str | None = None
    compression: str = "None"
    input_mode: str = "File"

    def to_config(self) -> dict[str, Any]:
        """The channel's entry in /opt/ml/input/config/inputdataconfig.json."""
        config: dict[str, Any] = {
            "TrainingInputMode": self.input_mode,
            "S3DistributionType": self.distribution,
            "RecordWrapperType": "None",
        }
        if self.content_type:
            config["ContentType"] = self.content_type
        return config


@dataclasses.dataclass(frozen=True)
class MetricDefinition:
    name: str
    regex: str


def check_metric_regex(name: str, regex: str, field: str) -> None:
    """A metric's regex must compile and capture its value in a group (the first is the value)."""
    try:
        compiled = re.compile(regex)
    except re.error as exc:
        raise ValidationError(
            f"Metric {name!r}: its regex {regex!r} does not compile ({exc})", field=field, value=regex
        ) from None
    if compiled.groups < 1:
        raise ValidationError(
            f"Metric {name!r}: its regex {regex!r} has no capture group for the value, e.g. {name}=([0-9.]+)",
            field=field,
            value=regex,
        )


@dataclasses.dataclass(frozen=True)
class TrainingJobSpec:
    """Everything a CreateTrainingJob request asked for, as SageMaker defines it."""

    kind: ClassVar[str] = "training"
    name: str
    image: str | None
    input_mode: str
    role_arn: str
    output_path: str
    instance_type: str
    instance_count: int
    volume_gb: int
    max_runtime_seconds: int
    hyperparameters: Mapping[str, str] = dataclasses.field(default_factory=dict)
    channels: tuple[Channel, ...] = ()
    metric_definitions: tuple[MetricDefinition, ...] = ()
    environment: Mapping[str, str] = dataclasses.field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    arguments: tuple[str, ...] = ()
    checkpoint_s3_uri: str | None = None
    checkpoint_local_path: str = "/opt/ml/checkpoints"
    max_retry_attempts: int = 0
    request: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_request(cls, params: Mapping[str, Any]) -> TrainingJobSpec:
        """Parse a validated CreateTrainingJob request; ValidationError on what the model cannot say."""
        for needed in ("AlgorithmSpecification", "ResourceConfig"):  # optional in botocore's model
            if needed not in params:
                raise ValidationError(f"{needed} is required", field=needed)
        algorithm = params["AlgorithmSpecification"]
        resources = params["ResourceConfig"]
        if "InstanceGroups" in resources and "InstanceType" not in resources:
            raise ValidationError(
                "Heterogeneous clusters (ResourceConfig.InstanceGroups) are not supported; give "
                "InstanceType and InstanceCount",
                field="ResourceConfig.InstanceGroups",
                value=resources["InstanceGroups"],
            )
        for required in ("InstanceType", "InstanceCount"):
            if required not in resources:
                raise ValidationError(
                    f"ResourceConfig.{required} is required", field=f"ResourceConfig.{required}"
                )
        if "AlgorithmName" in algorithm:
            raise ValidationError(
                "AlgorithmName (AWS Marketplace algorithms) is not supported; give TrainingImage",
                field="AlgorithmSpecification.AlgorithmName",
                value=algorithm["AlgorithmName"],
            )
        channels = tuple(
            _channel(c, algorithm.get("TrainingInputMode", "File")) for c in params.get("InputDataConfig", [])
        )
        names = [c.name for c in channels]
        if len(set(names)) != len(names):
            raise ValidationError(
                f"Channel names must be unique, got {names}", field="InputDataConfig", value=names
            )
        checkpoint = params.get("CheckpointConfig") or {}
        local = str(checkpoint.get("LocalPath", "/opt/ml/checkpoints"))
        parts = PurePosixPath(local).parts
        if parts[:3] != ("/", "opt", "ml") or len(parts) < 4 or ".." in parts or parts[3] in _CONTRACT_DIRS:
            raise ValidationError(
                f"CheckpointConfig.LocalPath {local!r} must be a folder of its own under /opt/ml "
                "(the default is /opt/ml/checkpoints)",
                field="CheckpointConfig.LocalPath",
                value=local,
            )
        stopping = params.get("StoppingCondition") or {}
        return cls(
            name=params["TrainingJobName"],
            image=algorithm.get("TrainingImage"),
            input_mode=algorithm.get("TrainingInputMode", "File"),
            role_arn=params["RoleArn"],
            output_path=params["OutputDataConfig"]["S3OutputPath"].rstrip("/"),
            instance_type=resources["InstanceType"],
            instance_count=resources["InstanceCount"],
            volume_gb=resources.get("VolumeSizeInGB", 30),
            max_runtime_seconds=stopping.get("MaxRuntimeInSeconds", 86_400),
            hyperparameters=dict(params.get("HyperParameters") or {}),
            channels=channels,
            metric_definitions=_metric_definitions(algorithm.get("MetricDefinitions", [])),
            environment=dict(params.get("Environment") or {}),
            entrypoint=tuple(algorithm.get("ContainerEntrypoint", ())),
            arguments=tuple(algorithm.get("ContainerArguments", ())),
            checkpoint_s3_uri=checkpoint.get("S3Uri"),
            checkpoint_local_path=local.rstrip("/"),
            max_retry_attempts=(params.get("RetryStrategy") or {}).get("MaximumRetryAttempts", 0),
            request=_jsonable(params),
        )

    @property
    def program(self) -> str | None:
        """The script-mode entry point (``sagemaker_program``), decoded."""
        raw = self.hyperparameters.get(PROGRAM_HP)
        return decode_hyperparameter(raw) if raw is not None else None

    @property
    def torch_distributed(self) -> bool:
        """Whether the script is started torchrun's way, once per GPU (``TORCH_DISTRIBUTED_HP``)."""
        raw = self.hyperparameters.get(TORCH_DISTRIBUTED_HP)
        return raw is not None and decode_hyperparameter(raw) in (True, "true", "True")

    @property
    def submit_directory(self) -> str | None:
        raw = self.hyperparameters.get(SUBMIT_DIR_HP)
        return decode_hyperparameter(raw) if raw is not None else None

    @property
    def user_hyperparameters(self) -> dict[str, Any]:
        """Hyperparameters for the user's code (without the ``sagemaker_*`` ones and the tuning
        objective), decoded."""
        return {
            k: decode_hyperparameter(v)
            for k, v in self.hyperparameters.items()
            if not k.startswith(RESERVED_HP_PREFIX) and k != TUNING_OBJECTIVE_HP
        }

    def model_artifacts_uri(self) -> str:
        return f"{self.output_path}/{self.name}/output/model.tar.gz"

    def output_data_uri(self) -> str:
        return f"{self.output_path}/{self.name}/output/output.tar.gz"


def _channel(raw: Mapping[str, Any], default_mode: str) -> Channel:
    source = raw["DataSource"]
    s3 = source.get("S3DataSource")
    if s3 is None:
        kinds = ", ".join(sorted(source))
        raise ValidationError(
            f"Channel {raw['ChannelName']!r}: only S3DataSource inputs are supported (got {kinds})",
            field="InputDataConfig.DataSource",
            value=kinds,
        )
    mode = raw.get("InputMode", default_mode)
    if mode not in ("File", "FastFile"):
        raise ValidationError(
            f"Channel {raw['ChannelName']!r}: input mode {mode!r} is not supported; use File or FastFile",
            field="InputDataConfig.InputMode",
            value=mode,
        )
    if s3.get("S3DataType", "S3Prefix") not in ("S3Prefix",):
        raise ValidationError(
            f"Channel {raw['ChannelName']!r}: S3DataType {s3['S3DataType']!r} is not supported yet; use S3Prefix",
            field="InputDataConfig.DataSource.S3DataSource.S3DataType",
            value=s3["S3DataType"],
        )
    return Channel(
        name=raw["ChannelName"],
        s3_uri=s3["S3Uri"],
        s3_data_type=s3.get("S3DataType", "S3Prefix"),
        distribution=s3.get("S3DataDistributionType", "FullyReplicated"),
        content_type=raw.get("ContentType"),
        compression=raw.get("CompressionType", "None"),
        input_mode=mode,
    )


def decode_hyperparameter(value: str) -> Any:
    """The SageMaker SDK JSON-encodes hyperparameter values; plain strings pass through."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


def parse_s3_uri(uri: str, *, field: str) -> tuple[str, str]:
    """``s3://bucket/key`` → (bucket, key); ValidationError naming ``field`` otherwise."""
    if not uri.startswith("s3://"):
        raise ValidationError(f"{field} must be an s3:// URI, got {uri!r}", field=field, value=uri)
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise ValidationError(f"{field} {uri!r} names no bucket", field=field, value=uri)
    return bucket, key


def to_cmd_args(hyperparameters: Mapping[str, Any]) -> list[str]:
    """Hyperparameters as the training toolkit passes them: sorted ``--key value`` pairs."""
    args: list[str] = []
    for key in sorted(hyperparameters):
        value = hyperparameters[key]
        args.append(f"--{key}" if len(key) > 1 else f"-{key}")
        if isinstance(value, Mapping):
            args.append(",".join(f"{k}={v}" for k, v in sorted(value.items())))
        else:
            args.append(str(value))
    return args


def sharded(keys: Sequence[str], host_index: int, host_count: int) -> list[str]:
    """ShardedByS3Key: host i of n gets every n-th key of the sorted list, starting at i."""
    return sorted(keys)[host_index::host_count]


@dataclasses.dataclass(frozen=True)
class MetricPoint:
    name: str
    value: float
    timestamp: dt.datetime
    step: int


def _metric_definitions(raw: Sequence[Mapping[str, Any]]) -> tuple[MetricDefinition, ...]:
    for index, metric in enumerate(raw):
        check_metric_regex(
            metric["Name"], metric["Regex"], f"AlgorithmSpecification.MetricDefinitions.{index}.Regex"
        )
    return tuple(MetricDefinition(m["Name"], m["Regex"]) for m in raw)
