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
    │   ├── EntityTooLarge           S3: an object or part body over its size limit
    │   ├── InvalidRange
    │   ├── PayloadTooLarge          a request body over its protocol's limit (413)
    │   ├── MalformedPolicyDocument  an IAM policy document that cannot be parsed or evaluated
    │   ├── DefinitionError (core.pipelines)     a pipeline definition that cannot run
    │   ├── SerializationError (api._json)       a body that is not a JSON object
    │   ├── _S3CodedError (api.s3._errors)       bad S3 input with S3's own code (InvalidURI...)
    │   ├── MissingResource (store.resources)    a referenced resource is missing (also NotFoundError)
    │   ├── MissingModelPackage (store.pipelines)            (also NotFoundError)
    │   ├── DuplicateResource (store.resources)  the name is taken (also ConflictError)
    │   ├── DuplicatePipeline (store.pipelines)               (also ConflictError)
    │   ├── DuplicateEntity (core.experiments._entities)      an experiment's name taken (also ConflictError)
    │   ├── NotebookInstanceNotFound (store.notebooks)        SageMaker's "RecordNotFound" (also NotFoundError)
    │   ├── DuplicateNotebookInstance (store.notebooks)       the name is taken (also ConflictError)
    │   ├── CondaEnvironmentRefused (envs._conda)  an environment.yml pip cannot install, each package named
    │   └── InsufficientCapacity (core.inference_components)  an inference component's copies do not fit
    ├── NotFoundError                a named resource does not exist
    │   ├── NoSuchBucket
    │   ├── NoSuchKey
    │   ├── NoSuchUpload
    │   ├── TrainingJobNotFound, ProcessingJobNotFound, TransformJobNotFound (store.jobs)
    │   ├── TuningJobNotFound (store.tuning)
    │   ├── PipelineNotFound, ExecutionNotFound (store.pipelines)
    │   ├── BudgetNotFound (store.budgets)
    │   ├── EntityNotFound (core.experiments._entities)  an experiment, trial or trial component
    │   ├── _NoSuchTagSet (api.s3._errors)       GetBucketTagging of a bucket without tags
    │   └── LogGroupNotFound, LogStreamNotFound (services.logs)
    ├── ConflictError                the resource exists or is in a state that forbids the change
    │   ├── BucketAlreadyOwnedByYou
    │   ├── _BucketAlreadyExists (api.s3._errors)    CreateBucket of another user's bucket
    │   └── BucketNotEmpty
    ├── LimitExceededError           a quota (tags per resource, capacity, ...) would be exceeded
    │   ├── ResourceLimitExceeded    a site quota (core.quotas): names the limit, its value, the request
    │   └── QuotaExceeded (core.quotas)          a user's or group's quota: names it, its value, the request
    ├── NotImplementedOperation      a valid operation Shipyard does not implement (yet)
    ├── AuthenticationError          missing or wrong credentials
    │   ├── InvalidSessionToken      a session key's token is missing or wrong, or it was revoked
    │   ├── ExpiredSessionToken      a session key past its expiration
    │   └── InvalidPresignedUrl      a presigned URL's query AWS refuses (X-Amz-Expires past 7 days)
    ├── AccessDenied                 authenticated, but no policy of the caller allows the action
    ├── ConfigurationError           settings that cannot work (e.g. public bind without auth)
    ├── EnvironmentBuildError (envs._cache)      installing a job's environment failed
    ├── NoRoute (services._router)               an endpoint (or variant) with nothing to serve it
    ├── Throttled (services._serverless)         a serverless variant at its MaxConcurrency (429)
    ├── NotReady (services._serverless)          a cold start longer than a request may wait
    ├── StartFailed (services._serverless)       a serverless model server that could not start
    ├── EndpointGone (services.async_inference)  queued requests of an endpoint deleted or failed
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
    ├── GpusBusy (core.devices)                  the GPUs a launch asks for are held now: the
    │                                            job waits (Pending, saying so); never a client's
    ├── UpstreamError (api._upstream)            a model server unreachable or not speaking HTTP
    │   └── UpstreamStreamError (api._upstream)   a streamed answer whose handler failed midway
    │   (and _ClosedBeforeAnswer, its private cause)
    ├── BridgeDown (compute.ray._backend)        no Ray bridge connected right now (the state
    │                                            is unknown until one is)
    ├── UnsupportedContentType (runtime.model_server)   the model server is self-contained (it
    │                                            runs with the model's Python), so it cannot
    │                                            import this module; 415
    ├── BadInput (runtime.model_server)          the model refuses the rows it was given; 400
    └── JobFailure (runtime.algorithms.xgboost_train)   ends a built-in XGBoost job with its
                                                 reason (ClientError / AlgorithmError); the
                                                 script runs in the job, self-contained too

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


class EntityTooLarge(ValidationError):
    """A body over S3's size limit for its operation (``limit`` bytes); ``size`` if declared."""

    def __init__(self, what: str, limit: int, *, size: int | None = None) -> None:
        proposed = f"{size} bytes" if size is not None else f"more than {limit} bytes"
        super().__init__(
            f"Your proposed upload exceeds the maximum allowed size: the {what} is {proposed}, "
            f"the limit is {limit} bytes (upload larger objects in parts)",
            field="Content-Length",
            value=size,
        )
        self.what = what
        self.limit = limit
        self.size = size


class InvalidRange(ValidationError):
    pass


class PayloadTooLarge(ValidationError):
    """A request body over its protocol's limit; ``declared`` is its Content-Length, if it sent one."""

    def __init__(self, what: str, limit: int, *, declared: int | None = None) -> None:
        size = f"of {declared} bytes" if declared is not None else f"of more than {limit} bytes"
        super().__init__(
            f"The {what} body {size} is larger than the limit of {limit} bytes",
            field="Content-Length",
            value=declared,
        )
        self.limit = limit


class MalformedPolicyDocument(ValidationError):
    """An IAM policy document that cannot be parsed, or uses what Shipyard does not evaluate."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"The policy document is malformed: {reason}", field="PolicyDocument")


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


class ResourceLimitExceeded(LimitExceededError):
    """A site quota (SageMaker's account-level service limits) would be exceeded; ``setting`` is
    the server setting that raises it."""

    def __init__(
        self, limit: str, value: int, *, used: int, delta: int, setting: str, unit: str = "Instances"
    ) -> None:
        super().__init__(
            f"The account-level service limit '{limit}' is {value} {unit}, with current utilization "
            f"of {used} {unit} and a request delta of {delta} {unit}. The site sets this limit: "
            f"ask its administrator to raise {setting} (SHIPYARD_{setting.upper()})."
        )
        self.limit = limit
        self.value = value
        self.used = used
        self.delta = delta
        self.setting = setting


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


class InvalidSessionToken(AuthenticationError):
    """A session key (``ASIA...``) without its session token, with another one, or revoked."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"The security token included in the request is invalid: {detail}")


class ExpiredSessionToken(AuthenticationError):
    """A session key past its expiration."""

    def __init__(self, access_key_id: str, expired: str) -> None:
        super().__init__(
            f"The security token included in the request is expired: the session key "
            f"{access_key_id} expired at {expired}"
        )


class AccessDenied(ShipyardError):
    """The caller is who it says, but none of its policies allows ``action`` on ``resource``."""

    def __init__(
        self, principal: str, action: str, resource: str, reason: str = "", *, explicit: bool = False
    ) -> None:
        why = " with an explicit deny in an identity-based policy" if explicit else ""
        if reason and not explicit:
            why = f" because {reason}"
        super().__init__(
            f"User: {principal} is not authorized to perform: {action} on resource: {resource}{why}"
        )
        self.principal = principal
        self.action = action
        self.resource = resource


class InvalidPresignedUrl(AuthenticationError):
    """A presigned URL whose query AWS refuses (S3's AuthorizationQueryParametersError, 400)."""


class ConfigurationError(ShipyardError):
    """Settings that cannot work together."""
