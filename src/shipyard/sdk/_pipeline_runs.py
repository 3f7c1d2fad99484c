"""A pipeline's runs: status, steps, waiting, stopping, retrying, and what each step returned;
and the list of pipelines on the server."""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator, Mapping
from typing import Any

from shipyard.errors import ValidationError
from shipyard.sdk._conditions import StepResult
from shipyard.sdk._connection import Connection, connect
from shipyard.sdk._progress import Progress
from shipyard.sdk._remote import RemoteError

_TERMINAL = ("Succeeded", "Failed", "Stopped")


class PipelineRun:
    """One run (execution) of a pipeline: status, steps, wait, stop, retry, and step results."""

    def __init__(self, arn: str, connection: Connection | None = None) -> None:
        self.arn = arn
        self.connection = connection or connect()

    @property
    def _client(self) -> Any:
        return self.connection.client("sagemaker")

    def describe(self) -> dict[str, Any]:
        found = dict(self._client.describe_pipeline_execution(PipelineExecutionArn=self.arn))
        found.pop("ResponseMetadata", None)
        return found

    @property
    def status(self) -> str:
        """Executing, Stopping, Stopped, Failed or Succeeded."""
        return str(self.describe()["PipelineExecutionStatus"])

    @property
    def failure_reason(self) -> str | None:
        return self.describe().get("FailureReason")

    @property
    def parameters(self) -> dict[str, str]:
        found = self._client.list_pipeline_parameters_for_execution(PipelineExecutionArn=self.arn)
        return {p["Name"]: p["Value"] for p in found["PipelineParameters"]}

    def steps(self) -> list[dict[str, Any]]:
        """Each step that started, in the order it started: name, status, attempts, the job or
        resource it made (``job``), whether it reused a cached run (``cached_from``), failure."""
        found = self._client.list_pipeline_execution_steps(
            PipelineExecutionArn=self.arn, SortOrder="Ascending"
        )
        return [_step_view(s) for s in found["PipelineExecutionSteps"]]

    def wait(self, *, show: bool = True, poll: float = 0.2) -> PipelineRun:
        """Until the run ends, printing each step as it starts and ends."""
        seen: dict[str, str] = {}
        with Progress(f"Pipeline run {self.arn.rsplit('/', 1)[1]}", show=show) as progress:
            while True:
                described = self.describe()
                for step in self.steps():
                    if seen.get(step["name"]) != step["status"]:
                        seen[step["name"]] = step["status"]
                        progress.log(_step_line(step))
                status = described["PipelineExecutionStatus"]
                if status in _TERMINAL:
                    break
                progress.update(
                    f"{status}: {sum(s in ('Executing', 'Starting') for s in seen.values())} step(s) running"
                )
                time.sleep(poll)
            reason = described.get("FailureReason")
            progress.done(f"{status} in {progress.elapsed:.1f} s" + (f": {reason}" if reason else ""))
        return self

    @property
    def cost(self) -> float:
        """What this run's own jobs have cost so far (retries included, steps reused from the
        cache not: they cost nothing this time), at the site's prices."""
        return float(self._native()["cost_usd"])

    def _native(self) -> dict[str, Any]:
        pipeline, execution = self.arn.split(":pipeline/", 1)[1].split("/execution/")
        return dict(self.connection.native(f"pipelines/{pipeline}/executions/{execution}"))

    def stop(self) -> None:
        self._client.stop_pipeline_execution(PipelineExecutionArn=self.arn)

    def retry(self) -> PipelineRun:
        """Run a failed or stopped run on: its failed and stopped steps again."""
        self._client.retry_pipeline_execution(PipelineExecutionArn=self.arn)
        return self

    def result(self, step: StepResult | str) -> Any:
        """What a function step returned (or an item of it), or its exception raised again."""
        name = step.step if isinstance(step, StepResult) else step
        path = step.path if isinstance(step, StepResult) else ()
        found = {s["name"]: s for s in self.steps()}.get(name)
        if found is None or "job" not in found:
            raise ValidationError(f"Step {name!r} has not run in {self.arn}", field="step", value=name)
        sm = self._client
        job = sm.describe_processing_job(ProcessingJobName=found["job"])
        outputs = {o["OutputName"]: o["S3Output"]["S3Uri"] for o in job["ProcessingOutputConfig"]["Outputs"]}
        if "result" not in outputs:
            raise ValidationError(f"Step {name!r} is not a function step", field="step", value=name)
        files = _read_outcome(self.connection, outputs["result"])
        if "result.pkl" in files:
            value = pickle.loads(files["result.pkl"])  # the caller's own function's value
            for part in path:
                value = value[part]
            return value
        if "error.pkl" in files:
            raise pickle.loads(files["error.pkl"])
        reason = found.get("failure") or job.get("FailureReason")
        raise RemoteError(
            f"Step {name!r} left no result ({found['status']}): {reason}",
            job_name=found["job"],
            status=found["status"],
            failure_reason=reason,
            remote_traceback=files.get("traceback.txt", b"").decode(errors="replace") or None,
        )

    def __repr__(self) -> str:
        return f"PipelineRun({self.arn!r}, status={self.status!r})"


def _read_outcome(connection: Connection, uri: str) -> dict[str, bytes]:
    from botocore.exceptions import ClientError

    bucket, prefix = uri[len("s3://") :].split("/", 1)
    s3 = connection.client("s3")
    files = {}
    for name in ("result.pkl", "error.pkl", "traceback.txt"):
        try:
            files[name] = s3.get_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/{name}")["Body"].read()
        except ClientError:
            continue
    return files


def _step_view(step: Mapping[str, Any]) -> dict[str, Any]:
    metadata = step.get("Metadata") or {}
    view: dict[str, Any] = {
        "name": step["StepName"],
        "status": step["StepStatus"],
        "attempts": step.get("AttemptCount", 1),
        "started": step.get("StartTime"),
        "ended": step.get("EndTime"),
    }
    for kind, value in metadata.items():
        if "Arn" in value:
            view["job"] = str(value["Arn"]).rsplit("/", 1)[1] if kind != "RegisterModel" else value["Arn"]
            view["kind"] = kind
        if kind == "Condition":
            view["outcome"] = value.get("Outcome")
    if step.get("CacheHitResult"):
        view["cached_from"] = step["CacheHitResult"]["SourcePipelineExecutionArn"]
    if step.get("FailureReason"):
        view["failure"] = step["FailureReason"]
    return view


def _step_line(step: Mapping[str, Any]) -> str:
    extra = ""
    if step.get("cached_from"):
        extra = f" (cached from run {str(step['cached_from']).rsplit('/', 1)[1]})"
    elif step.get("outcome"):
        extra = f" ({step['outcome']})"
    elif step.get("job"):
        extra = f" ({step['job']})"
    if step["status"] == "Failed" and step.get("failure"):
        extra += f": {str(step['failure']).splitlines()[0][:200]}"
    return f"step {step['name']}: {step['status']}{extra}"


def _iter_pipelines(connection: Connection) -> Iterator[dict[str, Any]]:
    client = connection.client("sagemaker")
    token = None
    while True:
        page = client.list_pipelines(**({"NextToken": token} if token else {}), MaxResults=100)
        yield from page["PipelineSummaries"]
        token = page.get("NextToken")
        if not token:
            return


def pipelines(connection: Connection | None = None) -> list[dict[str, Any]]:
    """Every pipeline on the server (name, description, created, last run), newest first."""
    return [
        {
            "name": p["PipelineName"],
            "description": p.get("PipelineDescription"),
            "created": p.get("CreationTime"),
            "last_run": p.get("LastExecutionTime"),
        }
        for p in _iter_pipelines(connection or connect())
    ]
