"""The object store: buckets of objects, kept under the data dir or in a real S3 service."""

from __future__ import annotations

from typing import TYPE_CHECKING

from shipyard.storage._base import (
    MIN_PART_SIZE,
    BucketInfo,
    ByteRange,
    ListPage,
    ObjectInfo,
    ObjectStore,
    ObjectWriter,
    PartInfo,
    UploadInfo,
)
from shipyard.storage._housekeeping import UploadSweeper
from shipyard.storage._local import LocalObjectStore
from shipyard.storage._names import validate_bucket_name, validate_key

if TYPE_CHECKING:
    from shipyard.config import Settings

__all__ = [
    "MIN_PART_SIZE",
    "BucketInfo",
    "ByteRange",
    "ListPage",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "ObjectWriter",
    "PartInfo",
    "UploadInfo",
    "UploadSweeper",
    "open_object_store",
    "validate_bucket_name",
    "validate_key",
]


def open_object_store(settings: Settings) -> ObjectStore:
    """The object store the settings ask for (``local`` by default, or ``s3``)."""
    if settings.object_store == "s3":
        from shipyard.storage._s3 import S3ObjectStore

        return S3ObjectStore(
            settings.s3_endpoint_url,
            settings.s3_access_key_id,
            settings.s3_secret_access_key,
            settings.s3_region or settings.region,
        )
    return LocalObjectStore(settings.data_dir / "objects")
