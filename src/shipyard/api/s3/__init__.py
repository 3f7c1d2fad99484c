"""The S3 protocol."""

from shipyard.api.s3._buckets import BucketOwnership
from shipyard.api.s3._handlers import S3Api

__all__ = ["BucketOwnership", "S3Api"]
