"""Shipyard's errors as S3 answers them: the S3 error code and HTTP status of each, and the
sub-resources S3 has that Shipyard does not implement."""

from __future__ import annotations

from shipyard import errors


class _PreconditionFailed(errors.ShipyardError):
    def __init__(self) -> None:
        super().__init__("At least one of the pre-conditions you specified did not hold")


# Storage errors → (S3 code, HTTP status). Subclasses before their bases.
_ERROR_CODES: list[tuple[type[errors.ShipyardError], str, int]] = [
    (_PreconditionFailed, "PreconditionFailed", 412),
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
    "tagging": "Get/Put/DeleteBucketTagging or ObjectTagging",
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
