"""Job and endpoint logs, read where they are written (``log.jsonl`` per instance), as CloudWatch
streams.

Log group ``/aws/sagemaker/TrainingJobs`` has one stream per job instance, named
``<job>/algo-N-<launch epoch>`` as in SageMaker; ``/aws/sagemaker/Endpoints/<endpoint>`` one per
model server, ``<variant>/<instance id>``. Tokens are byte offsets into the stream's file
(``f/<offset>`` forward, ``b/<offset>`` backward), so reading resumes exactly where it stopped and
a line is never returned twice.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shipyard.core.pagination import decode_token, encode_token
from shipyard.errors import NotFoundError, ValidationError
from shipyard.store import JobRepository, TrainingJobQuery, TrainingJobRepository

TRAINING_GROUP = "/aws/sagemaker/TrainingJobs"
PROCESSING_GROUP = "/aws/sagemaker/ProcessingJobs"
TRANSFORM_GROUP = "/aws/sagemaker/TransformJobs"
ENDPOINTS_GROUP = "/aws/sagemaker/Endpoints/"
COMPONENTS_GROUP = "/aws/sagemaker/InferenceComponents/"  # an inference component's copies
_MAX_BYTES = 1024 * 1024


class LogGroupNotFound(NotFoundError):
    def __init__(self, group: str) -> None:
        super().__init__(f"The specified log group does not exist: {group!r}")


class LogStreamNotFound(NotFoundError):
    def __init__(self, stream: str) -> None:
        super().__init__(f"The specified log stream does not exist: {stream!r}")


@dataclasses.dataclass(frozen=True)
class LogStream:
    name: str
    path: Path
    created_ms: int

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"logStreamName": self.name, "creationTime": self.created_ms, "storedBytes": 0}
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return info
        info["storedBytes"] = stat.st_size
        info["lastIngestionTime"] = info["lastEventTimestamp"] = int(stat.st_mtime * 1000)
        info["firstEventTimestamp"] = self.created_ms
        return info


@dataclasses.dataclass(frozen=True)
class LogEvent:
    timestamp: int
    message: str
    offset: int

    def to_wire(self) -> dict[str, Any]:
        return {"timestamp": self.timestamp, "message": self.message, "ingestionTime": self.timestamp}


class LogService:
    def __init__(
        self,
        training: TrainingJobRepository,
        processing: JobRepository[Any],
        transform: JobRepository[Any],
        endpoints_dir: Path,
    ) -> None:
        self._jobs: dict[str, JobRepository[Any]] = {
            TRAINING_GROUP: training,
            PROCESSING_GROUP: processing,
            TRANSFORM_GROUP: transform,
        }
        self._endpoints_dir = endpoints_dir

    def streams(self, group: str, prefix: str = "") -> list[LogStream]:
        if group.startswith(ENDPOINTS_GROUP):
            return self._endpoint_streams(group.removeprefix(ENDPOINTS_GROUP), prefix)
        if group.startswith(COMPONENTS_GROUP):
            return self._component_streams(group.removeprefix(COMPONENTS_GROUP), prefix)
        repository = self._jobs.get(group)
        if repository is None:
            raise LogGroupNotFound(group)
        job_part = prefix.split("/", 1)[0]
        if "/" in prefix:
            try:
                jobs = [repository.get(job_part)]
            except NotFoundError:
                jobs = []
        else:
            jobs = [
                j
                for j in repository.find(TrainingJobQuery(name_contains=job_part), limit=10_000)
                if j.name.startswith(job_part)
            ]
        streams = [
            LogStream(i.stream, Path(i.dir) / "log.jsonl", i.launched_at)
            for job in jobs
            for i in job.run.instances
        ]
        return sorted((s for s in streams if s.name.startswith(prefix)), key=lambda s: s.name)

    def _endpoint_streams(self, endpoint: str, prefix: str) -> list[LogStream]:
        folder = self._endpoints_dir / endpoint
        if "/" in endpoint or endpoint in ("", ".", "..") or not folder.is_dir():
            raise LogGroupNotFound(ENDPOINTS_GROUP + endpoint)
        streams = []
        for path in sorted(folder.glob("*/i-*/log.jsonl")):
            name = f"{path.parent.parent.name}/{path.parent.name}"
            if name.startswith(prefix):
                streams.append(LogStream(name, path, int(path.parent.stat().st_mtime * 1000)))
        return streams

    def _component_streams(self, component: str, prefix: str) -> list[LogStream]:
        """A stream ``<instance id>/<copy id>`` for each copy of the component (its folder is
        under the endpoint instance's it ran on)."""
        if "/" in component or component in ("", ".", "..") or any(c in component for c in "*?["):
            raise LogGroupNotFound(COMPONENTS_GROUP + component)
        paths = sorted(self._endpoints_dir.glob(f"*/*/i-*/components/{component}/copy-*/log.jsonl"))
        if not paths:
            raise LogGroupNotFound(COMPONENTS_GROUP + component)
        streams = []
        for path in paths:
            name = f"{path.parents[3].name}/{path.parent.name}"
            if name.startswith(prefix):
                streams.append(LogStream(name, path, int(path.parent.stat().st_mtime * 1000)))
        return sorted(streams, key=lambda s: s.name)

    def stream(self, group: str, name: str) -> LogStream:
        for stream in self.streams(group, name):
            if stream.name == name:
                return stream
        raise LogStreamNotFound(name)

    def get_events(
        self,
        group: str,
        stream_name: str,
        *,
        token: str | None = None,
        start_time: int | None = None,
        end_time: int | None = None,
        limit: int = 10_000,
        start_from_head: bool = False,
    ) -> tuple[list[LogEvent], int, int]:
        """Events and the (start, end) byte offsets they span, for the forward/backward tokens."""
        path = self.stream(group, stream_name).path
        size = path.stat().st_size if path.exists() else 0
        if token:
            direction, _, raw = token.partition("/")
            if direction not in ("f", "b") or not raw.isdigit():
                raise ValidationError(f"Invalid nextToken {token!r}", field="nextToken", value=token)
            offset = min(int(raw), size)
            if direction == "b":
                return self._backward(path, offset, limit, start_time, end_time)
        elif start_from_head:
            offset = 0
        else:
            return self._backward(path, size, limit, start_time, end_time)
        events, end = [], offset
        for event, next_offset in _read_forward(path, offset):
            end = next_offset
            if _in_window(event, start_time, end_time):
                events.append(event)
            if len(events) >= limit or end - offset >= _MAX_BYTES:
                break
        return events, offset, end

    def _backward(
        self, path: Path, before: int, limit: int, start_time: int | None, end_time: int | None
    ) -> tuple[list[LogEvent], int, int]:
        events = [
            e for e, _ in _read_forward(path, 0) if e.offset < before and _in_window(e, start_time, end_time)
        ]
        events = events[-limit:]
        return events, (events[0].offset if events else before), before

    def filter_events(
        self,
        group: str,
        *,
        stream_names: list[str] | None = None,
        prefix: str = "",
        pattern: str = "",
        start_time: int | None = None,
        end_time: int | None = None,
        token: str | None = None,
        limit: int = 10_000,
    ) -> tuple[list[tuple[str, LogEvent]], str | None]:
        streams = [s for s in self.streams(group, prefix) if not stream_names or s.name in stream_names]
        state = decode_token(token) if token else {"s": 0, "o": 0}
        terms = _terms(pattern)
        found: list[tuple[str, LogEvent]] = []
        for index in range(int(state["s"]), len(streams)):
            stream = streams[index]
            offset = int(state["o"]) if index == int(state["s"]) else 0
            for event, next_offset in _read_forward(stream.path, offset):
                if _in_window(event, start_time, end_time) and all(t in event.message for t in terms):
                    found.append((stream.name, event))
                if len(found) >= limit:
                    return found, encode_token({"s": index, "o": next_offset})
        return found, None


def _terms(pattern: str) -> list[str]:
    """CloudWatch filter patterns, the common part: every term (or "quoted phrase") must appear."""
    pattern = pattern.strip()
    if not pattern:
        return []
    try:
        return shlex.split(pattern)
    except ValueError:
        return [pattern]


def _in_window(event: LogEvent, start: int | None, end: int | None) -> bool:
    return (start is None or event.timestamp >= start) and (end is None or event.timestamp < end)


def _read_forward(path: Path, offset: int) -> Iterator[tuple[LogEvent, int]]:
    """Whole lines from ``offset``; a line still being written is left for the next read."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    with f:
        f.seek(offset)
        position = offset
        for line in f:
            if not line.endswith(b"\n"):
                return
            start, position = position, position + len(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            yield LogEvent(int(record["t"]), record["m"], start), position
