"""Training from Python without AWS notions: ``Estimator(...).fit(inputs)`` → a ``TrainingJob``.

Local files and folders given as inputs, and the source dir, are uploaded content-addressed
(``s3://shipyard/data/<sha256>/...``): re-running a notebook cell uploads nothing new.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import tarfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shipyard.core.training import check_metric_regex
from shipyard.errors import ValidationError
from shipyard.sdk._connection import Connection, connect
from shipyard.sdk._jobs import Job, announce, estimate

if TYPE_CHECKING:
    from shipyard.sdk._hosting import Endpoint, Model

_IMAGES = {
    "sklearn": ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:{}-cpu-py3", "1.2-1"),
    "xgboost": ("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:{}", "1.7-1"),
    "pytorch": ("763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:{}-cpu-py310", "2.1.0"),
}


@dataclasses.dataclass(frozen=True)
class Input:
    """A training input: a local file or folder, or an ``s3://`` URI, with how to read it."""

    source: str | Path
    content_type: str | None = None
    distribution: str = "FullyReplicated"  # or "ShardedByS3Key": each instance gets a share


def image_for(framework: str, version: str | None, image: str | None) -> str:
    """The SageMaker image URI a framework (and version) names, or ``image`` when given."""
    if image is not None:
        return image
    if framework not in _IMAGES:
        raise ValidationError(
            f"framework {framework!r} is not one of {', '.join(_IMAGES)}; give image= instead",
            field="framework",
            value=framework,
        )
    template, default = _IMAGES[framework]
    return template.format(version or default)


# What fit() takes: one input (channel "training"), or channel name → input.
Inputs = Mapping[str, str | Path | Input] | str | Path | Input | None


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


def _shipped(root: Path) -> list[Path]:
    """The files of a source dir that go with the job: not hidden ones (``.git``,
    ``.ipynb_checkpoints``), not ``__pycache__``, not virtual environments."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".") and d != "__pycache__" and not (Path(folder, d, "pyvenv.cfg")).exists()
        )
        found += [Path(folder, f) for f in sorted(files) if not f.startswith(".")]
    return found


def _source_archive(entry_point: Path, source_dir: Path | None, requirements: Sequence[str]) -> bytes:
    """``sourcedir.tar.gz``: the source dir (or, without one, the script alone, as the SageMaker SDK
    ships it), with ``requirements`` added to its requirements.txt. The same files give the same
    bytes (no timestamps), so the archive's content address finds an earlier upload."""
    root = source_dir or entry_point.parent
    files = _shipped(root) if source_dir else [entry_point]
    extra = "".join(f"{line}\n" for line in requirements)
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for path in files:
            name = path.relative_to(root).as_posix()
            data = path.read_bytes()
            if name == "requirements.txt" and extra:
                data = data.rstrip(b"\n") + b"\n" + extra.encode()
                extra = ""
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), path.stat().st_mode & 0o755
            tar.addfile(info, io.BytesIO(data))
        if extra:
            info = tarfile.TarInfo("requirements.txt")
            info.size = len(extra.encode())
            tar.addfile(info, io.BytesIO(extra.encode()))
    return buffer.getvalue()


class Estimator:
    """A training script, what it runs on, and with what.

    Args:
        entry_point: The script (a path; with ``source_dir``, relative to it).
        source_dir: The folder shipped with it (default: none, the script alone). Hidden files
            and folders, ``__pycache__`` and virtual environments stay behind.
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
        self.image = image_for(framework, framework_version, image)
        self.instance_type = instance_type
        self.instance_count = instance_count
        self.hyperparameters = dict(hyperparameters or {})
        self.metrics = dict(metrics or {})
        for name, regex in self.metrics.items():
            check_metric_regex(name, regex, f"metrics[{name!r}]")
        self.max_run = max_run
        self.requirements = list(requirements)
        self.tags = dict(tags or {})
        self._connection = connection

    @property
    def connection(self) -> Connection:
        """The server it runs on: the one given, else :func:`connect`'s."""
        return self._connection or connect()

    def definition(self, inputs: Inputs = None, *, connection: Connection | None = None) -> dict[str, Any]:
        """The SageMaker training job definition for ``inputs`` (uploading what is local and new):
        what :meth:`fit` submits, and what a tuning job runs each trial with."""
        connection = connection or self.connection
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
        definition: dict[str, Any] = {
            "RoleArn": connection.role,
            "AlgorithmSpecification": {
                "TrainingImage": self.image,
                "TrainingInputMode": "File",
                "MetricDefinitions": [{"Name": k, "Regex": v} for k, v in self.metrics.items()],
            },
            "HyperParameters": {
                **{k: _encode(v) for k, v in self.hyperparameters.items()},
                **self._code_hyperparameters(connection),
            },
            "OutputDataConfig": {"S3OutputPath": f"s3://{connection.bucket}/output"},
            "ResourceConfig": {
                "InstanceType": self.instance_type,
                "InstanceCount": self.instance_count,
                "VolumeSizeInGB": 30,
            },
            "StoppingCondition": {"MaxRuntimeInSeconds": self.max_run},
        }
        if data_config:
            definition["InputDataConfig"] = data_config
        return definition

    def estimate(self) -> dict[str, Any]:
        """What a job of this estimator may cost at most (its instances for all of ``max_run``),
        at this server's prices (for what this machine gives it, when scaled down to fit:
        ``billed_as``) and SageMaker's, and the budgets that would refuse it now."""
        request = {
            "ResourceConfig": {"InstanceType": self.instance_type, "InstanceCount": self.instance_count},
            "StoppingCondition": {"MaxRuntimeInSeconds": self.max_run},
            "Tags": [{"Key": k, "Value": v} for k, v in self.tags.items()],
        }
        return estimate(self.connection, "training", request)

    def _code_hyperparameters(self, connection: Connection) -> dict[str, str]:
        """The script's archive, uploaded once by content, as the SDK's two hyperparameters."""
        archive = _source_archive(self.entry_point, self.source_dir, self.requirements)
        code_key = f"code/{hashlib.sha256(archive).hexdigest()[:32]}/sourcedir.tar.gz"
        s3 = connection.client("s3")
        if not s3.list_objects_v2(Bucket=connection.bucket, Prefix=code_key, MaxKeys=1).get("KeyCount", 0):
            s3.put_object(Bucket=connection.bucket, Key=code_key, Body=archive)
        program = self.entry_point.relative_to(self.source_dir or self.entry_point.parent).as_posix()
        return {
            "sagemaker_program": json.dumps(program),
            "sagemaker_submit_directory": json.dumps(f"s3://{connection.bucket}/{code_key}"),
        }

    def fit(
        self,
        inputs: Inputs = None,
        *,
        name: str | None = None,
        wait: bool = True,
        logs: bool = True,
        show: bool = True,
    ) -> TrainingJob:
        """Start a training job on ``inputs`` (a channel name → input, or one input for channel
        ``training``); with ``wait``, return when it ends, showing its status (``show``) and its
        log (``logs``) as it goes."""
        connection = self.connection
        job_name = name or unique_name(self.entry_point.stem)
        request = {
            "TrainingJobName": job_name,
            **self.definition(inputs, connection=connection),
            "Tags": [{"Key": k, "Value": v} for k, v in self.tags.items()],
        }
        announce(connection, "training", request, f"Training job {job_name}", show=show)
        connection.client("sagemaker").create_training_job(**request)
        job = TrainingJob(job_name, connection)
        if wait:
            job.wait(logs=logs, show=show)
        return job


def unique_name(stem: str, limit: int = 63) -> str:
    """``stem-YYYYmmdd-HHMMSS-xxxx``: a job name that sorts by time and does not collide."""
    clean = re.sub(r"[^A-Za-z0-9-]+", "-", stem).strip("-")[: limit - 21] or "job"
    return f"{clean}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"


def _encode(value: Any) -> str:
    """A hyperparameter as the API carries it: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


class TrainingJob(Job):
    """A training job on the server: its status, log, metrics, model and cost; ``deploy()`` it."""

    kind = "Training"
    _log_group = "/aws/sagemaker/TrainingJobs"
    _native = "training-jobs"

    def _progress_text(self, described: dict[str, Any]) -> str:
        text = f"{described['TrainingJobStatus']} · {described.get('SecondaryStatus', '')}"
        metrics = described.get("FinalMetricDataList") or []
        return text + "".join(f" · {m['MetricName']} {m['Value']:.4g}" for m in metrics[:3])

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
        """Each metric's last value (what a tuning job compares trials by)."""
        return {m["MetricName"]: m["Value"] for m in self.describe().get("FinalMetricDataList", [])}

    @property
    def hyperparameters(self) -> dict[str, str]:
        """What the script was given, without the SDK's own ``sagemaker_*`` entries."""
        given = self.describe().get("HyperParameters", {})
        return {k: v for k, v in given.items() if not k.startswith("sagemaker_")}

    @property
    def model_data(self) -> str:
        """The ``s3://`` URI of the model archive (model.tar.gz)."""
        return str(self.describe()["ModelArtifacts"]["S3ModelArtifacts"])

    def download_model(self, path: str | Path) -> Path:
        """The model archive, extracted (safely) into ``path``."""
        from shipyard.storage._archives import extract_tar

        bucket, key = self.model_data[5:].split("/", 1)
        body = self.connection.client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        target = Path(path)
        extract_tar(body, target, what=f"model of {self.name}")
        return target

    def model(self, name: str | None = None) -> Model:
        """The trained model, served the way it was trained: the same image and, for a script,
        the same code (its ``model_fn``/``predict_fn``, or the framework's defaults)."""
        from shipyard.sdk._hosting import Model

        described = self.describe()
        given = described.get("HyperParameters", {})
        environment = {}
        if "sagemaker_program" in given:
            environment = {
                "SAGEMAKER_PROGRAM": json.loads(given["sagemaker_program"]),
                "SAGEMAKER_SUBMIT_DIRECTORY": json.loads(given["sagemaker_submit_directory"]),
            }
        return Model(
            described["ModelArtifacts"]["S3ModelArtifacts"],
            image=described["AlgorithmSpecification"]["TrainingImage"],
            environment=environment,
            name=name or self.name,
            connection=self.connection,
        )

    def deploy(
        self,
        *,
        instance_type: str = "ml.m5.large",
        instance_count: int = 1,
        name: str | None = None,
        wait: bool = True,
        tags: Mapping[str, str] | None = None,
    ) -> Endpoint:
        """Serve the trained model on a new endpoint (named after the job unless ``name``), with
        a model of its own that ``Endpoint.delete()`` removes with it. The endpoint gets the
        job's tags (or ``tags``), so its cost is reported with the job's."""
        endpoint = name or unique_name(self.name)
        if tags is None:
            sm = self.connection.client("sagemaker")
            listed = sm.list_tags(ResourceArn=self.describe()["TrainingJobArn"])["Tags"]
            tags = {t["Key"]: t["Value"] for t in listed if not t["Key"].startswith(("aws:", "sagemaker:"))}
        return self.model(endpoint).deploy(
            instance_type=instance_type, instance_count=instance_count, name=endpoint, wait=wait, tags=tags
        )

    def _html_rows(self, described: dict[str, Any]) -> list[tuple[str, str]]:
        resources = described["ResourceConfig"]
        rows = [("instances", f"{resources['InstanceCount']} x {resources['InstanceType']}")]
        rows += [(m["MetricName"], f"{m['Value']:g}") for m in described.get("FinalMetricDataList", [])]
        cost = self.cost
        if cost is not None:
            rows.append(("cost", f"${cost:.6f}"))
        return rows
