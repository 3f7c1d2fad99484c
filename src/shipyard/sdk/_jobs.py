"""What every job handle shares: describe, status, the log (tailed, not re-read), wait, stop, cost."""

from __future__ import annotations

import html
import time
from collections.abc import Iterator
from typing import Any, ClassVar, Self

from shipyard.sdk._connection import Connection, connect
from shipyard.sdk._progress import Progress

TERMINAL = ("Completed", "Failed", "Stopped")


def estimate(connection: Connection, kind: str, request: dict[str, Any]) -> dict[str, Any]:
    """The server's worst case for a launch (``/api/v1/estimates``): usd, sagemaker_usd,
    per_hour_usd, per_day_usd, basis, billed_as (the type a job scaled down to fit is charged as
    here, else None), and the budgets that would deny it (denied_by)."""
    return dict(connection.native("estimates", {"kind": kind, "request": request}))


def announce(connection: Connection, kind: str, request: dict[str, Any], label: str, *, show: bool) -> None:
    """Say what a launch may cost before it is made (nothing when ``show`` is False)."""
    if not show:
        return
    from decimal import Decimal

    from shipyard.core.costs import money
    from shipyard.core.estimates import DEFAULT_MAX_RUNTIME, granted_phrase

    found = {
        k: money(Decimal(v)) if k.endswith("usd") else v
        for k, v in estimate(connection, kind, request).items()
    }
    if kind == "endpoint":
        text = f"{found['per_hour_usd']} an hour, {found['per_day_usd']} a day"
    elif kind in ("training", "processing") and Decimal(found["hours"]) * 3600 == DEFAULT_MAX_RUNTIME:
        # no max_run given: what it costs is its hours, of which SageMaker's default allows 24
        # ("1 x ml.p4d.24xlarge x 24 h[, as ml.r5.xlarge, what this machine gives it]")
        scaled = f", {granted_phrase(found['billed_as'])}" if found.get("billed_as") else ""
        instances = str(found["basis"]).removesuffix(scaled).rsplit(" x ", 1)[0] + scaled
        text = (
            f"{found['per_hour_usd']} an hour ({instances}); on SageMaker {found['sagemaker_per_hour_usd']}"
            " an hour; with no max_run it may run 24 h"
        )
    else:
        text = f"at most {found['usd']} ({found['basis']}); on SageMaker {found['sagemaker_usd']}"
    print(f"{label}: {text}", flush=True)


class LogTail:
    """New lines of a log group's streams for one resource, from where the last call stopped."""

    def __init__(self, connection: Connection, group: str, name: str) -> None:
        self._logs = connection.client("logs")
        self._group = group
        self._prefix = f"{name}/"
        self._tokens: dict[str, str] = {}

    def __iter__(self) -> Iterator[str]:
        streams = self._logs.describe_log_streams(logGroupName=self._group, logStreamNamePrefix=self._prefix)
        for stream in streams["logStreams"]:
            name = stream["logStreamName"]
            while True:
                kwargs: dict[str, Any] = {"startFromHead": True}
                if name in self._tokens:
                    kwargs["nextToken"] = self._tokens[name]
                page = self._logs.get_log_events(logGroupName=self._group, logStreamName=name, **kwargs)
                yield from (e["message"] for e in page["events"])
                if not page["events"] or page["nextForwardToken"] == self._tokens.get(name):
                    break
                self._tokens[name] = page["nextForwardToken"]


class Job:
    """A job on the server (subclasses say which kind): status, log, wait, stop and cost."""

    kind: ClassVar[str]  # "Training", "Processing", "Transform": the API's spelling
    _log_group: ClassVar[str]
    _native: ClassVar[str]  # the /api/v1 collection

    def __init__(self, name: str, connection: Connection | None = None) -> None:
        self.name = name
        self.connection = connection or connect()

    def describe(self) -> dict[str, Any]:
        """The SageMaker Describe answer for the job."""
        client = self.connection.client("sagemaker")
        operation = getattr(client, f"describe_{self.kind.lower()}_job")
        answer = dict(operation(**{f"{self.kind}JobName": self.name}))
        answer.pop("ResponseMetadata", None)
        return answer

    @property
    def status(self) -> str:
        """InProgress, Completed, Failed, Stopping or Stopped."""
        return str(self.describe()[f"{self.kind}JobStatus"])

    @property
    def failure_reason(self) -> str | None:
        """Why it failed (None unless it did)."""
        return self.describe().get("FailureReason")

    def log_lines(self) -> Iterator[str]:
        """The job's output so far (every instance, in order within each)."""
        return iter(LogTail(self.connection, self._log_group, self.name))

    def _progress_text(self, described: dict[str, Any]) -> str:
        return str(described[f"{self.kind}JobStatus"])

    def wait(self, *, logs: bool = True, show: bool = True, poll: float = 0.2) -> Self:
        """Until the job ends, showing its status (and with ``logs`` its output) as it goes."""
        tail = LogTail(self.connection, self._log_group, self.name)
        label = f"{self.kind} job {self.name}"
        with Progress(label, show=show) as progress:
            while True:
                described = self.describe()
                status = described[f"{self.kind}JobStatus"]
                if logs:
                    for line in tail:
                        progress.log(line)
                if status in TERMINAL:
                    break
                progress.update(self._progress_text(described))
                time.sleep(poll)
            reason = described.get("FailureReason")
            progress.done(f"{status} in {progress.elapsed:.1f} s" + (f": {reason}" if reason else ""))
        return self

    def stop(self) -> None:
        """Ask the job to stop (SIGTERM to its code, SIGKILL after the grace period)."""
        client = self.connection.client("sagemaker")
        getattr(client, f"stop_{self.kind.lower()}_job")(**{f"{self.kind}JobName": self.name})

    @property
    def cost(self) -> float | None:
        """What the job has cost so far, or in all once it ended, at the site's prices."""
        value = self.connection.native(f"{self._native}/{self.name}").get("cost_usd")
        return float(value) if value is not None else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, status={self.status!r})"

    def _html_rows(self, described: dict[str, Any]) -> list[tuple[str, str]]:
        return []

    def _repr_html_(self) -> str:
        described = self.describe()
        rows = [("status", described[f"{self.kind}JobStatus"])]
        if described.get("FailureReason"):
            rows.append(("failure", described["FailureReason"]))
        rows += self._html_rows(described)
        body = "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in rows
        )
        return f"<b>{type(self).__name__}</b> {html.escape(self.name)}<table>{body}</table>"
