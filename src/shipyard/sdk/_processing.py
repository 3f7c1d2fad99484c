"""Processing without AWS notions: a script over named inputs, writing named outputs::

    job = shipyard.Processor("prepare.py", framework="sklearn").run(
        inputs={"raw": "data/titanic.csv"}, outputs=["train", "test"], arguments=["--split", "0.8"]
    )
    job.download("train", "prepared/")

Input ``name`` is at ``/opt/ml/processing/input/<name>`` for the script, output ``name`` is
written to ``/opt/ml/processing/output/<name>`` and uploaded when the job ends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from shipyard.errors import ValidationError
from shipyard.sdk._connection import Connection, connect
from shipyard.sdk._hosting import download_prefix
from shipyard.sdk._jobs import Job, announce
from shipyard.sdk._training import _upload_local, image_for, unique_name

_ROOT = "/opt/ml/processing"


class Processor:
    """A processing script and what it runs on.

    Args:
        code: The script (a path; with ``source_dir``, relative to it). It runs with the
            framework environment's ``python3``; the rest of ``source_dir`` is beside it.
        framework / framework_version / image: Its environment (as for :class:`Estimator`).
        instance_type / instance_count: What to run on; with several instances, inputs are
            given whole to each unless ``sharded``.
        environment: Environment variables for the script.
        max_run: Seconds before the job is stopped.
        tags: Key → value, kept with the job (costs are reported by them).
    """

    def __init__(
        self,
        code: str | Path,
        *,
        source_dir: str | Path | None = None,
        framework: str = "sklearn",
        framework_version: str | None = None,
        image: str | None = None,
        instance_type: str = "ml.m5.large",
        instance_count: int = 1,
        environment: Mapping[str, str] | None = None,
        max_run: int = 24 * 3600,
        tags: Mapping[str, str] | None = None,
        connection: Connection | None = None,
    ) -> None:
        self.source_dir = Path(source_dir) if source_dir is not None else None
        script = Path(code)
        self.code = (self.source_dir / script) if self.source_dir and not script.is_absolute() else script
        if not self.code.is_file():
            raise ValidationError(f"code {str(self.code)!r} is not a file", field="code", value=str(code))
        self.image = image_for(framework, framework_version, image)
        self.instance_type = instance_type
        self.instance_count = instance_count
        self.environment = dict(environment or {})
        self.max_run = max_run
        self.tags = dict(tags or {})
        self._connection = connection

    @property
    def connection(self) -> Connection:
        """The server it runs on: the one given, else :func:`connect`'s."""
        return self._connection or connect()

    def run(
        self,
        inputs: Mapping[str, str | Path] | None = None,
        outputs: Sequence[str] | Mapping[str, str | None] = (),
        *,
        arguments: Sequence[str] = (),
        sharded: bool = False,
        name: str | None = None,
        wait: bool = True,
        logs: bool = True,
    ) -> ProcessingJob:
        """Run the script on ``inputs`` (name → local file or folder, uploaded once, or ``s3://``
        URI); ``outputs`` are names, or name → ``s3://`` destination."""
        connection = self.connection
        job_name = name or unique_name(self.code.stem)
        given = dict(inputs or {})
        for reserved in ("code",):
            if reserved in given:
                raise ValidationError(
                    f"input name {reserved!r} is the script's own", field="inputs", value=reserved
                )
        # Processing jobs get their code as an input of plain files (not an archive), uploaded once.
        code_uri = _upload_local(connection, self.source_dir or self.code)
        processing_inputs = [_input("code", code_uri, False)]
        for key, value in given.items():
            source = str(value)
            uri = source if source.startswith("s3://") else _upload_local(connection, Path(source))
            processing_inputs.append(_input(key, uri, sharded))
        destinations = dict(outputs) if isinstance(outputs, Mapping) else dict.fromkeys(outputs)
        processing_outputs = [
            {
                "OutputName": key,
                "S3Output": {
                    "S3Uri": where or f"s3://{connection.bucket}/processing/{job_name}/{key}/",
                    "LocalPath": f"{_ROOT}/output/{key}",
                    "S3UploadMode": "EndOfJob",
                },
            }
            for key, where in destinations.items()
        ]
        program = self.code.relative_to(self.source_dir or self.code.parent).as_posix()
        app: dict[str, Any] = {
            "ImageUri": self.image,
            "ContainerEntrypoint": ["python3", f"{_ROOT}/input/code/{program}"],
        }
        if arguments:
            app["ContainerArguments"] = [str(a) for a in arguments]
        request: dict[str, Any] = {
            "ProcessingJobName": job_name,
            "RoleArn": connection.role,
            "AppSpecification": app,
            "ProcessingResources": {
                "ClusterConfig": {
                    "InstanceCount": self.instance_count,
                    "InstanceType": self.instance_type,
                    "VolumeSizeInGB": 30,
                }
            },
            "ProcessingInputs": processing_inputs,
            "StoppingCondition": {"MaxRuntimeInSeconds": self.max_run},
            "Tags": [{"Key": k, "Value": v} for k, v in self.tags.items()],
        }
        if processing_outputs:
            request["ProcessingOutputConfig"] = {"Outputs": processing_outputs}
        if self.environment:
            request["Environment"] = self.environment
        announce(connection, "processing", request, f"Processing job {job_name}", show=wait)
        connection.client("sagemaker").create_processing_job(**request)
        job = ProcessingJob(job_name, connection)
        if wait:
            job.wait(logs=logs)
        return job


def _input(name: str, uri: str, sharded: bool) -> dict[str, Any]:
    local = f"{_ROOT}/input/{name}"
    return {
        "InputName": name,
        "S3Input": {
            "S3Uri": uri,
            "LocalPath": local,
            "S3DataType": "S3Prefix",
            "S3InputMode": "File",
            "S3DataDistributionType": "ShardedByS3Key" if sharded else "FullyReplicated",
        },
    }


class ProcessingJob(Job):
    """A processing job: status, log, cost, and its outputs (``outputs``, ``download``)."""

    kind = "Processing"
    _log_group: ClassVar[str] = "/aws/sagemaker/ProcessingJobs"
    _native: ClassVar[str] = "processing-jobs"

    @property
    def outputs(self) -> dict[str, str]:
        """Output name → the ``s3://`` prefix it was uploaded to."""
        config = self.describe().get("ProcessingOutputConfig", {"Outputs": []})
        return {o["OutputName"]: o["S3Output"]["S3Uri"] for o in config["Outputs"]}

    def download(self, output: str, path: str | Path) -> Path:
        """The files of output ``output``, into the folder ``path``."""
        found = self.outputs
        if output not in found:
            raise ValidationError(
                f"Processing job {self.name!r} has no output {output!r} (it has {', '.join(found) or 'none'})",
                field="output",
                value=output,
            )
        return download_prefix(self.connection, found[output], Path(path))
