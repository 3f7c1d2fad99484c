"""The object store interface: buckets of objects addressed by key, as S3 defines them.

Two implementations stand behind it: :class:`~shipyard.storage.LocalObjectStore` (buckets as folders
under the data dir, the default) and :class:`~shipyard.storage.S3ObjectStore` (any S3-compatible
service). The S3 API of the server, the job runtime and the SDK all go through this interface.

Contract, for every implementation:

* Thread safety: every method may be called from several threads at once.
* Atomicity: an object becomes visible whole or not at all. A writer that is aborted, or whose
  process dies before :meth:`ObjectWriter.commit`, leaves nothing visible.
* Keys are validated by :func:`~shipyard.storage.validate_key` before they touch anything (any
  text S3 accepts: 1 to 1,024 bytes of UTF-8); bucket names by
  :func:`~shipyard.storage.validate_bucket_name`. A key may be an object and the beginning of other
  keys at once (``a``, ``a/``, ``a/b``).
* Errors are the storage errors of :mod:`shipyard.errors` (``NoSuchBucket``, ``NoSuchKey``, ...).
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import datetime as dt
import hashlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import TracebackType

from shipyard.errors import BadDigest, NoSuchUpload

# S3's limits, which clients (boto3's transfer manager among them) are written against.
MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_NUMBER = 10_000
MAX_LIST_KEYS = 1000


@dataclasses.dataclass(frozen=True)
class BucketInfo:
    name: str
    created: dt.datetime


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """What is known of a stored object without reading it.

    ``etag`` is unquoted: the MD5 hex digest for a single-part object, ``<md5-of-md5s>-<parts>`` for
    one assembled from a multipart upload.
    """

    bucket: str
    key: str
    size: int
    etag: str
    last_modified: dt.datetime
    content_type: str = "binary/octet-stream"
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PartInfo:
    part_number: int
    size: int
    etag: str
    last_modified: dt.datetime


@dataclasses.dataclass(frozen=True)
class UploadInfo:
    upload_id: str
    bucket: str
    key: str
    initiated: dt.datetime
    content_type: str = "binary/octet-stream"
    metadata: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class ListPage:
    """One page of a listing, in S3 key order (UTF-8 byte order).

    ``next_start_after`` is the last key or common prefix of the page when it is truncated: passing
    it back as ``start_after`` continues the listing.
    """

    objects: list[ObjectInfo]
    common_prefixes: list[str]
    is_truncated: bool
    next_start_after: str | None


@dataclasses.dataclass(frozen=True)
class ByteRange:
    """An inclusive byte range, already resolved against the object size."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class ObjectWriter(abc.ABC):
    """Receives an object's bytes; nothing is visible until :meth:`commit` returns.

    Use as a context manager: leaving the block without committing aborts the write.
    """

    def __init__(self, expected_md5: bytes | None = None) -> None:
        self._md5 = hashlib.md5()
        self._size = 0
        self._expected_md5 = expected_md5

    def write(self, data: bytes) -> None:
        self._md5.update(data)
        self._size += len(data)
        self._write(data)

    @property
    def size(self) -> int:
        return self._size

    def _check_digest(self) -> str:
        digest = self._md5.digest()
        if self._expected_md5 is not None and digest != self._expected_md5:
            raise BadDigest(
                "The Content-MD5 you specified did not match what we received "
                f"(expected {self._expected_md5.hex()}, received {digest.hex()})"
            )
        return digest.hex()

    @abc.abstractmethod
    def _write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def commit(self) -> ObjectInfo | PartInfo:
        """Make the bytes written so far visible, atomically. Raises BadDigest on MD5 mismatch."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Discard everything written. Safe to call more than once."""

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.abort()


class ObjectStore(abc.ABC):
    """Buckets of objects. See the module docstring for the contract every implementation keeps."""

    # -- buckets --------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_bucket(self, bucket: str) -> BucketInfo:
        """Raises InvalidBucketName, BucketAlreadyOwnedByYou."""

    @abc.abstractmethod
    def delete_bucket(self, bucket: str) -> None:
        """Raises NoSuchBucket, BucketNotEmpty."""

    @abc.abstractmethod
    def head_bucket(self, bucket: str) -> BucketInfo:
        """Raises NoSuchBucket."""

    @abc.abstractmethod
    def list_buckets(self) -> list[BucketInfo]: ...

    # -- objects --------------------------------------------------------------------------------
    @abc.abstractmethod
    def open_writer(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        expected_md5: bytes | None = None,
    ) -> ObjectWriter:
        """Start writing an object; its ``commit`` returns the ObjectInfo. Raises NoSuchBucket."""

    @abc.abstractmethod
    def head_object(self, bucket: str, key: str) -> ObjectInfo:
        """Raises NoSuchBucket, NoSuchKey."""

    @abc.abstractmethod
    def read_object(
        self, bucket: str, key: str, byte_range: tuple[int | None, int | None] | None = None
    ) -> tuple[ObjectInfo, ByteRange | None, Iterator[bytes]]:
        """Open an object for streaming.

        ``byte_range`` is ``(first, last)`` as in an HTTP Range header: ``(None, n)`` means the
        last n bytes, ``(n, None)`` from n to the end. Returns the info, the resolved range (None
        when the whole object is sent) and an iterator of chunks that closes the object when
        exhausted or closed. Raises NoSuchBucket, NoSuchKey, InvalidRange.
        """

    @abc.abstractmethod
    def delete_object(self, bucket: str, key: str) -> None:
        """Delete a key; deleting a missing key succeeds, as in S3. Raises NoSuchBucket."""

    @abc.abstractmethod
    def copy_object(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Copy an object; ``metadata``/``content_type`` of None keep the source's."""

    @abc.abstractmethod
    def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        max_keys: int = MAX_LIST_KEYS,
    ) -> ListPage:
        """List keys after ``start_after`` that begin with ``prefix``, grouping by ``delimiter``."""

    def bucket_bytes(self, bucket: str) -> int:
        """What a bucket stores, in bytes (for the cost ledger's storage samples)."""
        total, after = 0, ""
        while True:
            page = self.list_objects(bucket, start_after=after)
            total += sum(o.size for o in page.objects)
            if not page.is_truncated or page.next_start_after is None:
                return total
            after = page.next_start_after

    def put_object(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Store a small object held in memory."""
        with self.open_writer(bucket, key, content_type=content_type, metadata=metadata) as writer:
            writer.write(data)
            info = writer.commit()
        assert isinstance(info, ObjectInfo)
        return info

    def get_object_bytes(self, bucket: str, key: str) -> bytes:
        """Read a small object whole."""
        _, _, chunks = self.read_object(bucket, key)
        return b"".join(chunks)

    def local_path(self, bucket: str, key: str) -> Path | None:
        """The object's file on this machine, when the store keeps it as one; else None.

        Lets jobs link inputs instead of copying them. The file must be treated as read-only.
        """
        return None

    # -- multipart uploads ----------------------------------------------------------------------
    @abc.abstractmethod
    def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> UploadInfo: ...

    @abc.abstractmethod
    def open_part_writer(
        self, bucket: str, key: str, upload_id: str, part_number: int, *, expected_md5: bytes | None = None
    ) -> ObjectWriter:
        """Start writing one part; its ``commit`` returns the PartInfo. Raises NoSuchUpload."""

    @abc.abstractmethod
    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[PartInfo]: ...

    @abc.abstractmethod
    def complete_multipart_upload(
        self, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> ObjectInfo:
        """Assemble the listed ``(part_number, etag)`` parts into the object.

        Raises NoSuchUpload, InvalidPart, InvalidPartOrder, EntityTooSmall.
        """

    @abc.abstractmethod
    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """Raises NoSuchUpload."""

    @abc.abstractmethod
    def list_multipart_uploads(self, bucket: str, *, prefix: str = "") -> list[UploadInfo]:
        """Uploads begun and neither completed nor aborted (a crash's included), by key and then
        by when they began. Raises NoSuchBucket."""

    def abort_stale_uploads(self, max_age: dt.timedelta, *, now: dt.datetime | None = None) -> int:
        """Abort every upload begun more than ``max_age`` ago, as an S3 lifecycle rule would; how
        many were."""
        now = now or dt.datetime.now(dt.UTC)
        aborted = 0
        for bucket in self.list_buckets():
            for upload in self.list_multipart_uploads(bucket.name):
                if now - upload.initiated > max_age:
                    with contextlib.suppress(NoSuchUpload):
                        self.abort_multipart_upload(bucket.name, upload.key, upload.upload_id)
                    aborted += 1
        return aborted

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources held by the store."""


def resolve_range(first: int | None, last: int | None, size: int) -> ByteRange:
    """Resolve an HTTP byte range against an object of ``size`` bytes, as RFC 9110 says."""
    from shipyard.errors import InvalidRange

    if first is None:
        if last is None or last <= 0:
            raise InvalidRange(f"The requested range is not satisfiable: suffix length {last!r}")
        start = max(size - last, 0)
        end = size - 1
    else:
        if first >= size:
            raise InvalidRange(
                f"The requested range is not satisfiable: start {first} is beyond the object size {size}"
            )
        start = first
        end = size - 1 if last is None else min(last, size - 1)
        if end < start:
            raise InvalidRange(f"The requested range is not satisfiable: bytes={first}-{last}")
    if size == 0:
        raise InvalidRange("The requested range is not satisfiable: the object is empty")
    return ByteRange(start, end)


def multipart_etag(part_etags: list[str]) -> str:
    """S3's ETag of an object assembled from parts: MD5 of the concatenated part MD5s, dash, count."""
    digest = hashlib.md5(b"".join(bytes.fromhex(e) for e in part_etags)).hexdigest()
    return f"{digest}-{len(part_etags)}"
