"""Shipyard's errors as S3 answers them: the S3 error code and HTTP status of each, and the
sub-resources S3 has that Shipyard does not implement."""

from __future__ import annotations

from typing import Any

from shipyard import errors


class _PreconditionFailed(errors.ShipyardError):
    def __init__(self) -> None:
        super().__init__("At least one of the pre-conditions you specified did not hold")


class _S3CodedError(errors.ValidationError):
    """Bad input that S3 answers with a code of its own (``InvalidURI``, ``MalformedXML``...), 400."""

    def __init__(self, code: str, message: str, *, field: str | None = None, value: Any = None) -> None:
        super().__init__(message, field=field, value=value)
        self.code = code


class _BucketAlreadyExists(errors.ConflictError):
    """CreateBucket of a bucket another user owns (S3's answer to another account)."""

    def __init__(self, bucket: str) -> None:
        super().__init__(
            f"The requested bucket name {bucket!r} is not available. The bucket namespace is shared by all "
            "users of the system. Please select a different name and try again."
        )


class _NoSuchTagSet(errors.NotFoundError):
    def __init__(self, bucket: str) -> None:
        super().__init__(f"The TagSet does not exist: the bucket {bucket!r} has no tags")


# Storage errors → (S3 code, HTTP status). Subclasses before their bases.
_ERROR_CODES: list[tuple[type[errors.ShipyardError], str, int]] = [
    (_PreconditionFailed, "PreconditionFailed", 412),
    (_BucketAlreadyExists, "BucketAlreadyExists", 409),
    (_NoSuchTagSet, "NoSuchTagSet", 404),
    (errors.AccessDenied, "AccessDenied", 403),
    (errors.NoSuchBucket, "NoSuchBucket", 404),
    (errors.NoSuchKey, "NoSuchKey", 404),
    (errors.NoSuchUpload, "NoSuchUpload", 404),
    (errors.BucketNotEmpty, "BucketNotEmpty", 409),
    (errors.BucketAlreadyOwnedByYou, "BucketAlreadyOwnedByYou", 409),
    (errors.InvalidBucketName, "InvalidBucketName", 400),
    (errors.InvalidObjectKey, "InvalidArgument", 400),
    (errors.BadDigest, "BadDigest", 400),
    (errors.InvalidPartOrder, "InvalidPartOrder", 400),
    (errors.InvalidPart, "InvalidPart", 400),
    (errors.EntityTooSmall, "EntityTooSmall", 400),
    (errors.EntityTooLarge, "EntityTooLarge", 400),
    (errors.InvalidRange, "InvalidRange", 416),
    (errors.ValidationError, "InvalidArgument", 400),
    (errors.NotImplementedOperation, "NotImplemented", 501),
    (errors.AuthenticationError, "AccessDenied", 403),
    (errors.NotFoundError, "NoSuchKey", 404),
    (errors.ConflictError, "OperationAborted", 409),
]

# Sub-resources S3 has and Shipyard does not implement, by the operation a client meant.
_UNSUPPORTED_SUBRESOURCES = {
    "acl": "Get/PutBucketAcl or Get/PutObjectAcl",
    "tagging": "Get/Put/DeleteObjectTagging",  # a bucket's tagging is served
    "versioning": "Get/PutBucketVersioning",
    "versions": "ListObjectVersions",
    "policy": "Get/Put/DeleteBucketPolicy",
    "cors": "Get/Put/DeleteBucketCors",
    "lifecycle": "Get/PutBucketLifecycleConfiguration",
    "encryption": "Get/PutBucketEncryption",
    "website": "Get/PutBucketWebsite",
    "notification": "Get/PutBucketNotificationConfiguration",
    "replication": "Get/PutBucketReplication",
    "object-lock": "Get/PutObjectLockConfiguration",
    "retention": "Get/PutObjectRetention",
    "legal-hold": "Get/PutObjectLegalHold",
    "torrent": "GetObjectTorrent",
    "restore": "RestoreObject",
    "select": "SelectObjectContent",
    "attributes": "GetObjectAttributes",
    "logging": "Get/PutBucketLogging",
    "ownershipControls": "Get/PutBucketOwnershipControls",
    "publicAccessBlock": "Get/PutPublicAccessBlock",
    "accelerate": "Get/PutBucketAccelerateConfiguration",
    "requestPayment": "Get/PutBucketRequestPayment",
    "analytics": "BucketAnalyticsConfiguration",
    "inventory": "BucketInventoryConfiguration",
    "metrics": "BucketMetricsConfiguration",
    "intelligent-tiering": "BucketIntelligentTieringConfiguration",
}
