"""The S3 protocol."""

from shipyard.api.s3._handlers import S3Api

__all__ = ["S3Api"]
