"""Asynchronous inference (pure): an endpoint config's AsyncInferenceConfig, an InvokeEndpointAsync
request as its headers say it, where its answer goes, and the queue's decisions.

An endpoint whose config has an :class:`AsyncInferenceConfig` takes ``InvokeEndpointAsync``: the
request is queued (an :class:`AsyncInvocation`, kept in the store) and answered 202 at once with
where the answer will be: ``<S3OutputPath>/<inference id>.out``, or, when it fails,
``<S3FailurePath>/<inference id>-error.out``. :func:`plan` decides, per endpoint, which queued
requests go to a model server now (oldest first, at most ``MaxConcurrentInvocationsPerInstance``
per serving instance) and which expired in the queue (``RequestTTLSeconds``). After a server
restart, :func:`after_restart` resumes the requests still queued and gives up on those that were
being processed (their model server was this process's): each gets its failure object.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.core.training import parse_s3_uri
from shipyard.errors import ValidationError

DEFAULT_CONCURRENCY = 1  # per instance, when the config leaves it out (a handler need not be thread-safe)
MAX_CONCURRENCY = 1000
DEFAULT_TTL_SECONDS = 21_600  # 6 hours, as SageMaker's
TTL_RANGE = (60, 21_600)
DEFAULT_TIMEOUT_SECONDS = 900  # 15 minutes, as SageMaker's
TIMEOUT_RANGE = (1, 3_600)
MAX_INLINE_BODY = 128_000
_INFERENCE_ID = re.compile(r"\A\S[\x20-\x7e]{0,63}\Z")
_SNS_TOPIC = re.compile(r"\Aarn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?\Z")
_INCLUDE = ("SUCCESS_NOTIFICATION_TOPIC", "ERROR_NOTIFICATION_TOPIC")
_PATH_PART = re.compile(r"\A[A-Za-z0-9!_.*'()=+\-][A-Za-z0-9!_.*'()=+\-/]{0,1023}\Z")


def _s3_prefix(uri: Any, field: str) -> str:
    if not isinstance(uri, str):
        raise ValidationError(f"{field} must be an s3:// URI, got {uri!r}", field=field, value=uri)
    parse_s3_uri(uri, field=field)
    return uri.rstrip("/")


@dataclasses.dataclass(frozen=True)
class Notifications:
    """NotificationConfig: the SNS topics SageMaker would publish to. Shipyard has no SNS: each
    message is a log line in the endpoint's log group instead."""

    success_topic: str | None = None
    error_topic: str | None = None
    include_response_in: tuple[str, ...] = ()

    @classmethod
    def from_request(cls, raw: Mapping[str, Any] | None) -> Notifications:
        raw = raw or {}
        field = "AsyncInferenceConfig.OutputConfig.NotificationConfig"
        topics = {}
        for member in ("SuccessTopic", "ErrorTopic"):
            topic = raw.get(member)
            if topic is not None and not (isinstance(topic, str) and _SNS_TOPIC.match(topic)):
                raise ValidationError(
                    f"{field}.{member} must be an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>), "
                    f"got {topic!r}",
                    field=f"{field}.{member}",
                    value=topic,
                )
            topics[member] = topic
        include = tuple(raw.get("IncludeInferenceResponseIn") or ())
        for value in include:
            if value not in _INCLUDE:
                raise ValidationError(
                    f"{field}.IncludeInferenceResponseIn takes {' or '.join(_INCLUDE)}, got {value!r}",
                    field=f"{field}.IncludeInferenceResponseIn",
                    value=value,
                )
        return cls(topics["SuccessTopic"], topics["ErrorTopic"], include)


@dataclasses.dataclass(frozen=True)
class AsyncInferenceConfig:
    """An endpoint config's AsyncInferenceConfig, validated."""

    output_path: str
    failure_path: str | None = None
    max_concurrency_per_instance: int = DEFAULT_CONCURRENCY
    notifications: Notifications = Notifications()

    @classmethod
    def from_request(cls, raw: Mapping[str, Any] | None) -> AsyncInferenceConfig | None:
        if not raw:
            return None
        output = raw.get("OutputConfig") or {}
        field = "AsyncInferenceConfig.OutputConfig"
        if output.get("KmsKeyId"):
            raise ValidationError(
                f"{field}.KmsKeyId (encrypting the answers with a KMS key) is not supported by "
                "Shipyard yet; leave it out",
                field=f"{field}.KmsKeyId",
                value=output["KmsKeyId"],
            )
        if not output.get("S3OutputPath"):
            raise ValidationError(
                f"{field}.S3OutputPath is required (where the answers are written)",
                field=f"{field}.S3OutputPath",
            )
        failure = output.get("S3FailurePath")
        client = raw.get("ClientConfig") or {}
        concurrency = client.get("MaxConcurrentInvocationsPerInstance", DEFAULT_CONCURRENCY)
        if not isinstance(concurrency, int) or not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValidationError(
                "AsyncInferenceConfig.ClientConfig.MaxConcurrentInvocationsPerInstance must be "
                f"between 1 and {MAX_CONCURRENCY}, got {concurrency!r}",
                field="AsyncInferenceConfig.ClientConfig.MaxConcurrentInvocationsPerInstance",
                value=concurrency,
            )
        return cls(
            _s3_prefix(output["S3OutputPath"], f"{field}.S3OutputPath"),
            _s3_prefix(failure, f"{field}.S3FailurePath") if failure else None,
            concurrency,
            Notifications.from_request(output.get("NotificationConfig")),
        )


def _seconds(
    headers: Mapping[str, str], header: str, name: str, default: int, bounds: tuple[int, int]
) -> int:
    raw = headers.get(header)
    if raw is None:
        return default
    low, high = bounds
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ValidationError(f"{name} must be between {low} and {high}, got {raw!r}", field=name, value=raw)
    return value


def _path_part(headers: Mapping[str, str], header: str, name: str) -> str | None:
    raw = headers.get(header)
    if raw is None:
        return None
    if not _PATH_PART.match(raw) or ".." in raw.split("/") or raw.endswith("/"):
        raise ValidationError(
            f"{name} must be an S3 key part (letters, digits, !_.*'()=+- and /, no '..'), got {raw!r}",
            field=name,
            value=raw,
        )
    return raw


class InvocationState(enum.StrEnum):
    QUEUED = "Queued"
    RUNNING = "Running"  # sent to a model server


@dataclasses.dataclass(frozen=True)
class AsyncInvocation:
    """One InvokeEndpointAsync request: what it asked, when, where its answer goes and whose
    permissions write it (``owner``: the endpoint's; None for the lab's own)."""

    key: str  # the store's name for it (inference ids are the caller's, need not be unique)
    endpoint: str
    inference_id: str
    received: dt.datetime
    output_location: str
    failure_location: str | None
    input_location: str | None = None
    body: bytes | None = None  # the inline Body, when no InputLocation
    content_type: str | None = None
    accept: str | None = None
    custom_attributes: str | None = None
    ttl_seconds: int = DEFAULT_TTL_SECONDS
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    owner: str | None = None
    notifications: Notifications = Notifications()
    state: InvocationState = InvocationState.QUEUED

    @classmethod
    def from_request(
        cls,
        endpoint: str,
        config: AsyncInferenceConfig,
        headers: Mapping[str, str],
        body: bytes,
        *,
        received: dt.datetime,
        owner: str | None,
        key: str | None = None,
    ) -> AsyncInvocation:
        """The request as InvokeEndpointAsync's headers (lower-case names) and body give it."""
        inference_id = headers.get("x-amzn-sagemaker-inference-id")
        if inference_id is None:
            inference_id = str(uuid.uuid4())
        elif not _INFERENCE_ID.match(inference_id):
            raise ValidationError(
                f"InferenceId must be 1 to 64 printable characters, not starting with a space, got "
                f"{inference_id!r}",
                field="InferenceId",
                value=inference_id,
            )
        location = headers.get("x-amzn-sagemaker-inputlocation")
        if location is not None and body:
            raise ValidationError(
                "Give InputLocation or Body, not both", field="InputLocation", value=location
            )
        if location is None and not body:
            raise ValidationError(
                "InputLocation is required (the s3:// URI of the request's payload), or an inline Body",
                field="InputLocation",
            )
        if location is not None:
            if len(location) > 1024:
                raise ValidationError(
                    f"InputLocation must be at most 1024 characters, got {len(location)}",
                    field="InputLocation",
                    value=location,
                )
            _, object_key = parse_s3_uri(location, field="InputLocation")
            if not object_key:
                raise ValidationError(
                    f"InputLocation {location!r} names no object", field="InputLocation", value=location
                )
        if len(body) > MAX_INLINE_BODY:
            raise ValidationError(
                f"An inline Body may be at most {MAX_INLINE_BODY} bytes, got {len(body)}; upload it "
                "to S3 and give InputLocation",
                field="Body",
                value=len(body),
            )
        extension = _path_part(headers, "x-amzn-sagemaker-s3outputpathextension", "S3OutputPathExtension")
        filename = _path_part(headers, "x-amzn-sagemaker-filename", "Filename")
        output, failure = locations(config, inference_id, extension=extension, filename=filename)
        return cls(
            key or uuid.uuid4().hex,
            endpoint,
            inference_id,
            received,
            output,
            failure,
            input_location=location,
            body=None if location is not None else body,
            content_type=headers.get("x-amzn-sagemaker-content-type"),
            accept=headers.get("x-amzn-sagemaker-accept"),
            custom_attributes=headers.get("x-amzn-sagemaker-custom-attributes"),
            ttl_seconds=_seconds(
                headers,
                "x-amzn-sagemaker-requestttlseconds",
                "RequestTTLSeconds",
                DEFAULT_TTL_SECONDS,
                TTL_RANGE,
            ),
            timeout_seconds=_seconds(
                headers,
                "x-amzn-sagemaker-invocationtimeoutseconds",
                "InvocationTimeoutSeconds",
                DEFAULT_TIMEOUT_SECONDS,
                TIMEOUT_RANGE,
            ),
            owner=owner,
            notifications=config.notifications,
        )

    @property
    def expires(self) -> dt.datetime:
        return self.received + dt.timedelta(seconds=self.ttl_seconds)

    # -- as the store keeps it -------------------------------------------------------------------
    def to_record(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "inference_id": self.inference_id,
            "received": self.received.isoformat(),
            "output_location": self.output_location,
            "failure_location": self.failure_location,
            "input_location": self.input_location,
            "body": base64.b64encode(self.body).decode() if self.body is not None else None,
            "content_type": self.content_type,
            "accept": self.accept,
            "custom_attributes": self.custom_attributes,
            "ttl_seconds": self.ttl_seconds,
            "timeout_seconds": self.timeout_seconds,
            "owner": self.owner,
            "notifications": {
                "success_topic": self.notifications.success_topic,
                "error_topic": self.notifications.error_topic,
                "include_response_in": list(self.notifications.include_response_in),
            },
        }

    @classmethod
    def from_record(cls, key: str, status: str | None, record: Mapping[str, Any]) -> AsyncInvocation:
        notes = record.get("notifications") or {}
        return cls(
            key,
            record["endpoint"],
            record["inference_id"],
            dt.datetime.fromisoformat(record["received"]),
            record["output_location"],
            record.get("failure_location"),
            input_location=record.get("input_location"),
            body=base64.b64decode(record["body"]) if record.get("body") is not None else None,
            content_type=record.get("content_type"),
            accept=record.get("accept"),
            custom_attributes=record.get("custom_attributes"),
            ttl_seconds=int(record["ttl_seconds"]),
            timeout_seconds=int(record["timeout_seconds"]),
            owner=record.get("owner"),
            notifications=Notifications(
                notes.get("success_topic"),
                notes.get("error_topic"),
                tuple(notes.get("include_response_in") or ()),
            ),
            state=InvocationState(status or InvocationState.QUEUED),
        )


def locations(
    config: AsyncInferenceConfig,
    inference_id: str,
    *,
    extension: str | None = None,
    filename: str | None = None,
) -> tuple[str, str | None]:
    """Where the answer (``<S3OutputPath>[/<extension>]/<filename or inference id.out>``) and the
    failure (``<S3FailurePath>[/<extension>]/<inference id>-error.out``, None without a failure
    path) are written."""
    folder = f"/{extension}" if extension else ""
    output = f"{config.output_path}{folder}/{filename or inference_id + '.out'}"
    failure = None
    if config.failure_path:
        failure = f"{config.failure_path}{folder}/{inference_id}-error.out"
    return output, failure


# -- the queue's decisions ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Plan:
    send: tuple[AsyncInvocation, ...]  # to a model server now, oldest first
    expired: tuple[AsyncInvocation, ...]  # past their RequestTTLSeconds in the queue


def capacity(per_instance: int, serving_instances: int) -> int:
    """How many requests an endpoint processes at once."""
    return max(0, per_instance) * max(0, serving_instances)


def plan(queued: Sequence[AsyncInvocation], *, in_flight: int, capacity: int, now: dt.datetime) -> Plan:
    """What to do with an endpoint's queued requests: those past their TTL expire, the oldest of
    the others fill the endpoint's free capacity (``capacity`` less those ``in_flight``)."""
    waiting = sorted((q for q in queued if q.state == InvocationState.QUEUED), key=lambda q: q.received)
    expired = tuple(q for q in waiting if q.expires <= now)
    alive = [q for q in waiting if q.expires > now]
    free = max(0, capacity - in_flight)
    return Plan(tuple(alive[:free]), expired)


def after_restart(
    invocations: Sequence[AsyncInvocation],
) -> tuple[list[AsyncInvocation], list[AsyncInvocation]]:
    """At a server start: (resumed, lost). Queued requests wait for their endpoint again; one
    that was at a model server when the server stopped is lost (that model server was the
    stopped server's), and is not sent twice: it fails."""
    resumed = [i for i in invocations if i.state == InvocationState.QUEUED]
    lost = [i for i in invocations if i.state != InvocationState.QUEUED]
    return resumed, lost


# -- what is written -----------------------------------------------------------------------------
def failure_document(
    invocation: AsyncInvocation, code: str, message: str, status: int | None = None
) -> bytes:
    """The failure object's content (JSON)."""
    document: dict[str, Any] = {"InferenceId": invocation.inference_id, "ErrorCode": code, "Message": message}
    if status is not None:
        document["OriginalStatusCode"] = status
    return json.dumps(document).encode()


def notification(
    invocation: AsyncInvocation,
    *,
    region: str,
    now: dt.datetime,
    succeeded: bool,
    content_type: str | None = None,
    response: bytes | None = None,
    failure: str | None = None,
) -> dict[str, Any] | None:
    """The message SageMaker would publish to the success or error topic (None: no topic for
    this outcome). The answer is included where IncludeInferenceResponseIn asks (UTF-8 text;
    other bytes in base64)."""
    notes = invocation.notifications
    topic = notes.success_topic if succeeded else notes.error_topic
    if topic is None:
        return None
    message: dict[str, Any] = {
        "topic": topic,
        "awsRegion": region,
        "eventTime": now.isoformat(),
        "receivedTime": invocation.received.isoformat(),
        "invocationStatus": "Completed" if succeeded else "Failed",
        "requestParameters": {
            "endpointName": invocation.endpoint,
            "inputLocation": invocation.input_location,
            "contentType": invocation.content_type,
            "accept": invocation.accept,
        },
        "responseParameters": {"contentType": content_type},
        "inferenceId": invocation.inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    if succeeded:
        message["responseParameters"]["outputLocation"] = invocation.output_location
    else:
        message["failureReason"] = failure
        message["responseParameters"]["failureLocation"] = invocation.failure_location
    wanted = "SUCCESS_NOTIFICATION_TOPIC" if succeeded else "ERROR_NOTIFICATION_TOPIC"
    if response is not None and wanted in notes.include_response_in:
        try:
            message["responseBody"] = {"content": response.decode("utf-8"), "encoding": "UTF-8"}
        except UnicodeDecodeError:
            message["responseBody"] = {"content": base64.b64encode(response).decode(), "encoding": "BASE64"}
    return message


INPUT_LIMIT = 10**9  # SageMaker's: an asynchronous request's payload is at most 1 GB


def check_input_size(size: int, uri: str) -> None:
    """An InputLocation object past SageMaker's 1 GB is refused (it is read whole to be sent)."""
    if size > INPUT_LIMIT:
        raise ValidationError(
            f"The InputLocation object is {size} bytes, over asynchronous inference's limit of "
            f"{INPUT_LIMIT} bytes (1 GB)",
            field="InputLocation",
            value=uri,
        )
