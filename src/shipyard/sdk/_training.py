"""Training from Python without AWS notions: ``Estimator(...).fit(inputs)`` → a ``TrainingJob``.

Local files and folders given as inputs, and the source dir, are uploaded content-addressed
(``s3://shipyard/data/<sha256>/...``): re-running a notebook cell uploads nothing new.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import html
import io
import json
import tarfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from shipyard.errors import ValidationError
from shipyard.sdk._connection import ROLE, Connection, connect

_IMAGES = {
    "sklearn": ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:{}-cpu-py3", "1.2-1"),
    "xgboost": ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:{}", "1.7-1"),
    "pytorch": ("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:{}-cpu-py310", "2.1.0"),
}
_TERMINAL = ("Completed", "Failed", "Stopped")


@dataclasses.dataclass(frozen=True)
class Input:
    """A training input: a local file or folder, or an ``s3://`` URI, with how to read it."""

    source: str | Path
    content_type: str | None = None
    distribution: str = "FullyReplicated"  # or "ShardedByS3Key": each instance gets a share


def _digest(paths: Sequence[tuple[str, Path]]) -> str:
    hasher = hashlib.sha256()
    for name, path in paths:
        hasher.update(name.encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                hasher.update(chunk)
    return hasher.hexdigest()[:32]


def _upload_local(connection: Connection, source: Path) -> str:
    """Upload a file or folder once (by content); the S3 prefix holding it."""
    if not source.exists():
        raise ValidationError(f"Input {str(source)!r} does not exist", field="inputs", value=str(source))
    if source.is_file():
        files = [(source.name, source)]
    else:
        files = sorted((p.relative_to(source).as_posix(), p) for p in source.rglob("*") if p.is_file())
    prefix = f"data/{_digest(files)}/"
    s3 = connection.client("s3")
    bucket = connection.bucket
    present = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount", 0)
    if not present:
        for name, path in files:
            s3.upload_file(str(path), bucket, prefix + name)
    return f"s3://{bucket}/{prefix}"


def _source_archive(entry_point: Path, source_dir: Path | None, requirements: Sequence[str]) -> bytes:
    root = source_dir or entry_point.parent
    files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            info = tar.gettarinfo(str(path), arcname=path.relative_to(root).as_posix())
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""  # same code, same bytes
            with path.open("rb") as f:
                tar.addfile(info, f)
        if requirements:
            data = ("\n".join(requirements) + "\n").encode()
            info = tarfile.TarInfo("requirements.txt")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Estimator:
    """A training script, what it runs on, and with what.

    Args:
        entry_point: The script (a path; with ``source_dir``, relative to it).
        source_dir: The folder shipped with it (default: the script's folder).
        framework: ``"sklearn"``, ``"xgboost"`` or ``"pytorch"`` (the environment the script runs in).
        framework_version: The framework's version as SageMaker names its images ("1.2-1").
        image: A SageMaker image URI instead of a framework.
        instance_type / instance_count: What to run on (``shipyard.instance_types()`` lists them).
        hyperparameters: Passed to the script as ``--name value``.
        metrics: Metric name → regex over the script's output (the first group is the value).
        max_run: Seconds before the job is stopped.
        requirements: Extra packages (pip requirement strings) for the script's environment.
        tags: Key → value, kept with the job (costs are reported by them).
        connection: The server (default: :func:`shipyard.connect`).
    """

    def __init__(
        self,
        entry_point: str | Path,
        *,
        source_dir: str | Path | None = None,
        framework: str = "sklearn",
        framework_version: str | None = None,
        image: str | None = None,
        instance_type: str = "ml.m5.large",
        instance_count: int = 1,
        hyperparameters: Mapping[str, Any] | None = None,
        metrics: Mapping[str, str] | None = None,
        max_run: int = 24 * 3600,
        requirements: Sequence[str] = (),
        tags: Mapping[str, str] | None = None,
        connection: Connection | None = None,
    ) -> None:
        self.source_dir = Path(source_dir) if source_dir is not None else None
        entry = Path(entry_point)
        self.entry_point = (self.source_dir / entry) if self.source_dir and not entry.is_absolute() else entry
        if not self.entry_point.is_file():
            raise ValidationError(
                f"entry_point {str(self.entry_point)!r} is not a file",
                field="entry_point",
                value=str(entry_point),
            )
        if image is None:
            if framework not in _IMAGES:
                raise ValidationError(
                    f"framework {framework!r} is not one of {', '.join(_IMAGES)}; give image= instead",
                    field="framework",
                    value=framework,
                )
            template, default = _IMAGES[framework]
            image = template.format(framework_version or default)
        self.image = image
        self.instance_type = instance_type
        self.instance_count = instance_count
        self.hyperparameters = dict(hyperparameters or {})
        self.metrics = dict(metrics or {})
        self.max_run = max_run
        self.requirements = list(requirements)
        self.tags = dict(tags or {})
        self._connection = connection

    @property
    def connection(self) -> Connection:
        return self._connection or connect()

    def fit(
        self,
        inputs: Mapping[str, str | Path | Input] | str | Path | Input | None = None,
        *,
        name: str | None = None,
        wait: bool = True,
        logs: bool = True,
    ) -> TrainingJob:
        """Start a training job on ``inputs`` (a channel name → input, or one input for channel
        ``training``); with ``wait``, return when it ends, printing its log as it goes."""
        connection = self.connection
        channels = (
            inputs if isinstance(inputs, Mapping) else ({"training": inputs} if inputs is not None else {})
        )
        data_config = []
        for channel, value in channels.items():
            spec = value if isinstance(value, Input) else Input(value)
            source = str(spec.source)
            uri = source if source.startswith("s3://") else _upload_local(connection, Path(source))
            entry: dict[str, Any] = {
                "ChannelName": channel,
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": uri,
                        "S3DataDistributionType": spec.distribution,
                    }
                },
            }
            if spec.content_type:
                entry["ContentType"] = spec.content_type
            data_config.append(entry)
        archive = _source_archive(self.entry_point, self.source_dir, self.requirements)
        code_key = f"code/{hashlib.sha256(archive).hexdigest()[:32]}/sourcedir.tar.gz"
        s3 = connection.client("s3")
        if not s3.list_objects_v2(Bucket=connection.bucket, Prefix=code_key, MaxKeys=1).get("KeyCount", 0):
            s3.put_object(Bucket=connection.bucket, Key=code_key, Body=archive)
        program = self.entry_point.relative_to(self.source_dir or self.entry_point.parent).as_posix()
        job_name = (
            name
            or f"{self.entry_point.stem.replace('_', '-')[:30]}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
        )
        request: dict[str, Any] = {
            "TrainingJobName": job_name,
            "RoleArn": ROLE,
            "AlgorithmSpecification": {
                "TrainingImage": self.image,
                "TrainingInputMode": "File",
                "MetricDefinitions": [{"Name": k, "Regex": v} for k, v in self.metrics.items()],
            },
            "HyperParameters": {
                **{
                    k: json.dumps(v) if not isinstance(v, str) else v for k, v in self.hyperparameters.items()
                },
                "sagemaker_program": json.dumps(program),
                "sagemaker_submit_directory": json.dumps(f"s3://{connection.bucket}/{code_key}"),
            },
            "OutputDataConfig": {"S3OutputPath": f"s3://{connection.bucket}/output"},
            "ResourceConfig": {
                "InstanceType": self.instance_type,
                "InstanceCount": self.instance_count,
                "VolumeSizeInGB": 30,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": self.max_run},
            "Tags": [{"Key": k, "Value": v} for k, v in self.tags.items()],
        }
        if data_config:
            request["InputDataConfig"] = data_config
        connection.client("sagemaker").create_training_job(**request)
        job = TrainingJob(job_name, connection)
        if wait:
            job.wait(logs=logs)
        return job


class TrainingJob:
    """A training job on the server: its status, log, metrics, model and cost."""

    def __init__(self, name: str, connection: Connection | None = None) -> None:
        self.name = name
        self.connection = connection or connect()

    def describe(self) -> dict[str, Any]:
        return dict(self.connection.client("sagemaker").describe_training_job(TrainingJobName=self.name))

    @property
    def status(self) -> str:
        return str(self.describe()["TrainingJobStatus"])

    @property
    def failure_reason(self) -> str | None:
        return self.describe().get("FailureReason")

    def log_lines(self) -> Iterator[str]:
        """The job's output so far (every instance, in order within each)."""
        logs = self.connection.client("logs")
        streams = logs.describe_log_streams(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{self.name}/"
        )["logStreams"]
        for stream in streams:
            token = None
            while True:
                kwargs: dict[str, Any] = {"startFromHead": True}
                if token:
                    kwargs["nextToken"] = token
                page = logs.get_log_events(
                    logGroupName="/aws/sagemaker/TrainingJobs",
                    logStreamName=stream["logStreamName"],
                    **kwargs,
                )
                yield from (e["message"] for e in page["events"])
                if not page["events"] or page["nextForwardToken"] == token:
                    break
                token = page["nextForwardToken"]

    def wait(self, *, logs: bool = True, poll: float = 0.2) -> TrainingJob:
        """Until the job ends; with ``logs``, its output printed as it comes."""
        printed = 0
        while True:
            status = self.status
            if logs:
                lines = list(self.log_lines())
                for line in lines[printed:]:
                    print(line, flush=True)
                printed = len(lines)
            if status in _TERMINAL:
                return self
            time.sleep(poll)

    def stop(self) -> None:
        self.connection.client("sagemaker").stop_training_job(TrainingJobName=self.name)

    def metrics(self) -> Any:
        """Every point of every metric: a pandas DataFrame (metric, step, value, timestamp) when
        pandas is installed, else a list of dicts."""
        series = self.connection.native(f"training-jobs/{self.name}/metrics")["metrics"]
        rows = [
            {
                "metric": name,
                "step": p["step"],
                "value": p["value"],
                "timestamp": dt.datetime.fromisoformat(p["timestamp"]),
            }
            for name, points in series.items()
            for p in points
        ]
        try:
            import pandas as pd
        except ImportError:
            return rows
        return pd.DataFrame(rows, columns=["metric", "step", "value", "timestamp"])

    @property
    def final_metrics(self) -> dict[str, float]:
        return {m["MetricName"]: m["Value"] for m in self.describe().get("FinalMetricDataList", [])}

    @property
    def model_data(self) -> str:
        return str(self.describe()["ModelArtifacts"]["S3ModelArtifacts"])

    def download_model(self, path: str | Path) -> Path:
        """The model archive, extracted (safely) into ``path``."""
        from shipyard.storage._archives import extract_tar

        bucket, key = self.model_data[5:].split("/", 1)
        body = self.connection.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        target = Path(path)
        extract_tar(body, target, what=f"model of {self.name}")
        return target

    @property
    def cost(self) -> float | None:
        """What the job cost at the catalog's price (None until it has run)."""
        value = self.connection.native(f"training-jobs/{self.name}").get("cost_usd")
        return float(value) if value is not None else None

    def __repr__(self) -> str:
        return f"TrainingJob({self.name!r}, status={self.status!r})"

    def _repr_html_(self) -> str:
        d = self.describe()
        metrics = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{v:g}</td></tr>" for k, v in self.final_metrics.items()
        )
        return (
            f"<b>TrainingJob</b> {html.escape(self.name)} — {html.escape(d['TrainingJobStatus'])}"
            f"<table>{metrics}</table>"
        )
