"""Shipyard's error hierarchy.

Every error raised by Shipyard's own code derives from :class:`ShipyardError`. Each protocol
(the SageMaker JSON API, S3, the native REST API, the CLI) maps these classes to its own error
form in one place, so domain code never knows which client it is talking to. Classes defined
elsewhere are drawn where they live, ``Name (module)``, under ``shipyard.``.

    ShipyardError
    ├── ValidationError              bad input: names the field and the value
    │   ├── InvalidObjectKey         an object key that could escape its bucket or is unusable
    │   ├── InvalidBucketName
    │   ├── BadDigest                Content-MD5 / checksum does not match the body
    │   ├── InvalidPart              multipart: a part is missing or its ETag differs
    │   ├── InvalidPartOrder
    │   ├── EntityTooSmall           multipart: a non-final part below the minimum size
    │   ├── InvalidRange
    │   ├── DefinitionError (core.pipelines)     a pipeline definition that cannot run
    │   ├── SerializationError (api._json)       a body that is not a JSON object
    │   ├── MissingResource (store.resources)    a referenced resource is missing (also NotFoundError)
    │   ├── MissingModelPackage (store.pipelines)            (also NotFoundError)
    │   ├── DuplicateResource (store.resources)  the name is taken (also ConflictError)
    │   └── DuplicatePipeline (store.pipelines)               (also ConflictError)
    ├── NotFoundError                a named resource does not exist
    │   ├── NoSuchBucket
    │   ├── NoSuchKey
    │   ├── NoSuchUpload
    │   ├── TrainingJobNotFound, ProcessingJobNotFound, TransformJobNotFound (store.jobs)
    │   ├── TuningJobNotFound (store.tuning)
    │   ├── PipelineNotFound, ExecutionNotFound (store.pipelines)
    │   ├── BudgetNotFound (store.budgets)
    │   └── LogGroupNotFound, LogStreamNotFound (services.logs)
    ├── ConflictError                the resource exists or is in a state that forbids the change
    │   ├── BucketAlreadyOwnedByYou
    │   └── BucketNotEmpty
    ├── LimitExceededError           a quota (tags per resource, capacity, ...) would be exceeded
    ├── NotImplementedOperation      a valid operation Shipyard does not implement (yet)
    ├── AuthenticationError          missing or wrong credentials
    ├── ConfigurationError           settings that cannot work (e.g. public bind without auth)
    ├── EnvironmentBuildError (envs._cache)      installing a job's environment failed
    ├── NoRoute (services._router)               an endpoint (or variant) with nothing to serve it
    ├── RemoteError (sdk._remote)                a remote call that gave no value and no exception
    └── _PreconditionFailed (api.s3._errors)     S3's PreconditionFailed (412)

Outside the hierarchy (they derive from ``Exception``; none reaches a client as it is):

    Exception
    ├── ModelServerError (compute._serving)      a model server did not come up; the endpoint
    │                                            fails with its message. A domain error: it
    │                                            belongs under ShipyardError
    ├── ResolutionError (core.pipelines._expressions)   a pipeline reference that cannot be
    │                                            resolved; fails the step. A domain error too
    ├── JobInputError (runtime.agent._io)        a job's inputs or code: the job's ClientError
    │                                            failure reason (raised in the job's process)
    ├── ContractError (runtime.contract)         an agent.json this agent cannot run
    ├── UpstreamError (api._upstream)            a model server unreachable or not speaking HTTP
    │   (and _ClosedBeforeAnswer, its private cause)
    ├── BridgeDown (compute.ray._backend)        no Ray bridge connected right now (the state
    │                                            is unknown until one is)
    └── UnsupportedContentType (runtime.model_server)   the model server is self-contained (it
                                                 runs with the model's Python), so it cannot
                                                 import this module

Messages say what was wrong, with the offending value, and what to do about it.
"""

from __future__ import annotations

from typing import Any


class ShipyardError(Exception):
    """Base class of every error Shipyard raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(ShipyardError):
    """Input that cannot be accepted. ``field`` names the offending member, ``value`` its value."""

    def __init__(self, message: str, *, field: str | None = None, value: Any = None) -> None:
        super().__init__(message)
        self.field = field
        self.value = value


class InvalidObjectKey(ValidationError):
    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"Invalid object key {key!r}: {reason}", field="Key", value=key)


class InvalidBucketName(ValidationError):
    def __init__(self, bucket: str, reason: str) -> None:
        super().__init__(f"Invalid bucket name {bucket!r}: {reason}", field="Bucket", value=bucket)


class BadDigest(ValidationError):
    pass


class InvalidPart(ValidationError):
    pass


class InvalidPartOrder(ValidationError):
    pass


class EntityTooSmall(ValidationError):
    pass


class InvalidRange(ValidationError):
    pass


class NotFoundError(ShipyardError):
    """A named resource does not exist."""


class NoSuchBucket(NotFoundError):
    def __init__(self, bucket: str) -> None:
        super().__init__(f"The specified bucket does not exist: {bucket!r}")
        self.bucket = bucket


class NoSuchKey(NotFoundError):
    def __init__(self, bucket: str, key: str) -> None:
        super().__init__(f"The specified key does not exist: {key!r} in bucket {bucket!r}")
        self.bucket = bucket
        self.key = key


class NoSuchUpload(NotFoundError):
    def __init__(self, upload_id: str) -> None:
        super().__init__(
            f"The specified multipart upload does not exist: {upload_id!r}. It may have been "
            "completed or aborted."
        )
        self.upload_id = upload_id


class ConflictError(ShipyardError):
    """The resource already exists, or its state forbids the change."""


class BucketAlreadyOwnedByYou(ConflictError):
    def __init__(self, bucket: str) -> None:
        super().__init__(f"Bucket {bucket!r} already exists and is owned by you")


class BucketNotEmpty(ConflictError):
    def __init__(self, bucket: str) -> None:
        super().__init__(f"Bucket {bucket!r} is not empty: delete its objects first")


class LimitExceededError(ShipyardError):
    """A quota would be exceeded."""


class NotImplementedOperation(ShipyardError):
    """A well-formed request for an operation Shipyard does not implement."""

    def __init__(self, service: str, operation: str) -> None:
        super().__init__(
            f"{service} operation {operation!r} is not implemented by Shipyard. "
            "See the docs for the operations that are."
        )
        self.service = service
        self.operation = operation


class AuthenticationError(ShipyardError):
    """The request's credentials are missing or wrong."""


class ConfigurationError(ShipyardError):
    """Settings that cannot work together."""
