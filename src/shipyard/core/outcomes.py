"""How a job's run ends: pure rules the scheduler applies to what its instances reported.

* :func:`judge` — the instances' outcomes → the job's status, secondary status and failure
  reason (Failed beats Stopped beats MaxRuntimeExceeded beats Completed);
* :func:`on_lost_instance` — an instance whose agent ended without an outcome → another
  attempt, or the job's end; :func:`on_preempted` — the same after the cluster preempted it (not
  counted against RetryStrategy);
* :func:`billed` — the billed interval and seconds (by the second, at least one);
* :func:`final_metrics` — DescribeTrainingJob's FinalMetricDataList from the metric series;
* :func:`replay_phases` — the agent's phases → secondary-status transitions at their times;
* :func:`extract_metrics` — MetricDefinitions' regexes over log lines → metric points;
* :func:`without_host_paths` — a failure reason without the host's paths.

No I/O: the scheduler reads the instance folders, calls these, and writes the store once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shipyard.core.jobs import JobState
from shipyard.core.training import MetricDefinition, MetricPoint, SecondaryStatus, TrainingJobStatus


class Outcome(enum.StrEnum):
    """How an instance's work ended, as its agent judged it."""

    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"
    MAX_RUNTIME = "MaxRuntimeExceeded"


@dataclasses.dataclass(frozen=True)
class InstanceEnd:
    """What one instance reported at its end."""

    host: str
    outcome: Outcome
    failure_reason: str | None = None


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A job's end: its status, secondary status, failure reason, and the last transition's
    message (MaxRuntimeExceeded says why)."""

    status: TrainingJobStatus
    secondary: SecondaryStatus
    failure_reason: str | None = None
    message: str = ""


def judge(ends: Sequence[InstanceEnd], *, stopping: bool) -> Verdict:
    """The job's end from every instance's. A failure anywhere fails the job (naming the host
    when there are several); a stop (asked for, or reported) stops it; a MaxRuntimeExceeded stops
    it with that secondary status; else it completed."""
    failed = next((e for e in ends if e.outcome == Outcome.FAILED), None)
    if failed is not None:
        reason = failed.failure_reason or "AlgorithmError: the training script failed"
        if len(ends) > 1:
            reason = f"{failed.host}: {reason}"
        return Verdict(TrainingJobStatus.FAILED, SecondaryStatus.FAILED, reason)
    if stopping or any(e.outcome == Outcome.STOPPED for e in ends):
        return Verdict(TrainingJobStatus.STOPPED, SecondaryStatus.STOPPED)
    timed_out = next((e for e in ends if e.outcome == Outcome.MAX_RUNTIME), None)
    if timed_out is not None:
        return Verdict(
            TrainingJobStatus.STOPPED,
            SecondaryStatus.MAX_RUNTIME_EXCEEDED,
            message=timed_out.failure_reason or "",
        )
    return Verdict(TrainingJobStatus.COMPLETED, SecondaryStatus.COMPLETED)


def finish(state: JobState, verdict: Verdict, started: dt.datetime, ended: dt.datetime) -> JobState:
    """``state`` at its end by ``verdict``, with the work's interval as its training times."""
    final = state.finish(verdict.status, verdict.secondary, ended, verdict.failure_reason)
    if verdict.message:
        last = dataclasses.replace(final.transitions[-1], message=verdict.message)
        final = dataclasses.replace(final, transitions=(*final.transitions[:-1], last))
    return dataclasses.replace(final, started=started, ended=ended)


def lost_reason(host: str, folder: str, backend_reason: str | None) -> str:
    """Why an instance is lost: the backend's word (its machine died), or its agent's silence."""
    if backend_reason:
        return f"InternalServerError: {host} was lost: {backend_reason}"
    return (
        f"InternalServerError: the instance agent of {host} exited without reporting an outcome "
        f"(see {folder}/agent.log)"
    )


def on_lost_instance(
    reason: str, *, attempt: int, max_retry_attempts: int, status: TrainingJobStatus
) -> Verdict | None:
    """After a lost instance: None to start another attempt (retries left, not being stopped),
    else the job's end (Stopped if it was being stopped anyway, else Failed with ``reason``)."""
    if attempt < max_retry_attempts and status == TrainingJobStatus.IN_PROGRESS:
        return None
    if status == TrainingJobStatus.STOPPING:
        return Verdict(TrainingJobStatus.STOPPED, SecondaryStatus.STOPPED)
    return Verdict(TrainingJobStatus.FAILED, SecondaryStatus.FAILED, reason)


MAX_PREEMPTIONS = 20  # a job preempted more often than this fails: its cluster never lets it run


def on_preempted(
    reason: str,
    *,
    preemptions: int,
    status: TrainingJobStatus,
    waited_seconds: float,
    max_wait_seconds: int | None = None,
) -> Verdict | None:
    """After the cluster preempted an attempt (Slurm's PREEMPTED, SageMaker's managed spot
    interruption): None to start it again (from its last checkpoint, which every attempt restores),
    not counted against its RetryStrategy; else the job's end: Stopped if it was being stopped,
    else Failed once it was preempted ``MAX_PREEMPTIONS`` times or ``waited_seconds`` since it was
    created passed its StoppingCondition's MaxWaitTimeInSeconds."""
    if status == TrainingJobStatus.STOPPING:
        return Verdict(TrainingJobStatus.STOPPED, SecondaryStatus.STOPPED)
    if max_wait_seconds is not None and waited_seconds >= max_wait_seconds:
        why = f"{reason}, and its MaxWaitTimeInSeconds ({max_wait_seconds}) has passed"
    elif preemptions >= MAX_PREEMPTIONS:
        why = f"{reason}: preempted {preemptions + 1} times (a job is started again {MAX_PREEMPTIONS} times at most)"
    else:
        return None
    return Verdict(TrainingJobStatus.FAILED, SecondaryStatus.FAILED, why)


def restart_message(preempted: str, checkpoint_s3_uri: str | None) -> str:
    """What a preempted job's Starting transition says."""
    source = (
        f"from its last checkpoint in {checkpoint_s3_uri}"
        if checkpoint_s3_uri
        else "from the beginning (it has no CheckpointConfig)"
    )
    return f"{preempted}: starting again {source}"


@dataclasses.dataclass(frozen=True)
class Billed:
    """The work's interval and what it is billed: ``seconds`` of wall time (at least one, by the
    second) on each of ``instance_count`` instances. The billed interval ends when the work did:
    rounded up to a whole second it starts a little earlier rather than ending in the future."""

    started: dt.datetime
    ended: dt.datetime
    seconds: int
    instance_count: int

    @property
    def billable_seconds(self) -> int:
        return self.seconds * self.instance_count

    @property
    def interval_start(self) -> dt.datetime:
        return self.ended - dt.timedelta(seconds=self.seconds)


def billed(
    starts: Iterable[dt.datetime], ends: Iterable[dt.datetime], *, instance_count: int, now: dt.datetime
) -> Billed:
    """From the earliest start to the latest end the instances reported (``now`` for what none did)."""
    starts, ends = list(starts), list(ends)
    start = min(starts) if starts else now
    end = max(ends) if ends else now
    seconds = max(1, round((end - start).total_seconds()))
    return Billed(start, end, seconds, instance_count)


def final_metrics(series: Mapping[str, Sequence[MetricPoint]]) -> tuple[dict[str, Any], ...]:
    """Each metric's last value, by name."""
    return tuple(
        {"MetricName": name, "Value": values[-1].value, "Timestamp": values[-1].timestamp.isoformat()}
        for name, values in sorted(series.items())
        if values
    )


PHASES = {
    "Downloading": SecondaryStatus.DOWNLOADING,
    "Training": SecondaryStatus.TRAINING,
    "Uploading": SecondaryStatus.UPLOADING,
}


def replay_phases(state: JobState, phases: Sequence[tuple[str, dt.datetime]]) -> JobState:
    """``state`` after the phases algo-1 went through, at the times it recorded them (even those a
    fast job passed between two looks). Only a job in progress moves."""
    for name, when in phases:
        if name in PHASES and state.status == TrainingJobStatus.IN_PROGRESS:
            state = state.advance(PHASES[name], when)
    return state


def extract_metrics(
    records: Iterable[tuple[int, str]],
    definitions: Sequence[MetricDefinition],
    steps: Mapping[str, int],
) -> tuple[list[MetricPoint], dict[str, int]]:
    """Metric points in log records (``(epoch ms, line)``): each regex match is the next step of
    its metric (its first group, else the whole match, as a float). Returns the points and the
    next step of each metric. A regex that does not compile, or a match that is no number, counts
    for nothing."""
    patterns = [(d.name, _compile(d.regex)) for d in definitions]
    steps = dict(steps)
    points: list[MetricPoint] = []
    for millis, line in records:
        for name, pattern in patterns:
            match = pattern.search(line) if pattern is not None else None
            if match is None:
                continue
            try:
                value = float(match.group(1) if match.groups() else match.group(0))
            except (ValueError, IndexError):
                continue
            step = steps.get(name, 0)
            steps[name] = step + 1
            points.append(MetricPoint(name, value, dt.datetime.fromtimestamp(millis / 1000, dt.UTC), step))
    return points, steps


def _compile(regex: str) -> re.Pattern[str] | None:
    try:
        return re.compile(regex)
    except re.error:
        return None


# A path begins where no path character precedes it.
_START = r"(?<![\w.~/-])"
_PYTHON_LIB = re.compile(_START + r"/(?!opt/ml/)[^\s\"':]*?/(lib/python3[\d.]*/)")
# the job's own layer's interpreter (/opt/ml/.shipyard-layer/bin/python) is `python` as well: its PATH's
_PYTHON_BIN = re.compile(_START + r"/[^\s\"':]*?/bin/(python[\d.]*)(?![\w.-])")


def without_host_paths(text: str, folders: Mapping[str, str]) -> str:
    """A failure reason as a job's user may see it: no path of the host's. A Python installation's
    library folder (``/.../lib/python3.11/``) becomes ``lib/python3.11/`` and its interpreter
    (``/.../bin/python3``) ``python3``; then each of ``folders`` (host folder → what to show: the
    job's folder → ``/opt/ml``, the data dir → ``<data dir>``, the home folder → ``~``), longest
    first, wherever a path begins with it."""
    text = _PYTHON_LIB.sub(r"\1", text)
    text = _PYTHON_BIN.sub(r"\1", text)
    for host in sorted(folders, key=len, reverse=True):
        folder = host.rstrip("/")
        if folder:
            shown = folders[host].replace("\\", "\\\\")  # a literal replacement
            text = re.sub(_START + re.escape(folder) + r"(?![\w.-])", shown, text)
    return text
