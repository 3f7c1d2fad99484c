"""Object store on a real S3-compatible service (AWS S3, MinIO, Ceph, another Shipyard server).

Buckets and keys map one to one. Writes are spooled to a temporary file (memory up to 8 MiB) and
uploaded on commit, so S3's own atomicity gives the store's: nothing is visible before commit.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any

from shipyard.errors import (
    BadDigest,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooSmall,
    InvalidPart,
    InvalidPartOrder,
    InvalidRange,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    ShipyardError,
)
from shipyard.storage._base import (
    MAX_LIST_KEYS,
    BucketInfo,
    ByteRange,
    ListPage,
    ObjectInfo,
    ObjectStore,
    ObjectWriter,
    PartInfo,
    UploadInfo,
)
from shipyard.storage._names import validate_bucket_name, validate_key

_SPOOL = 8 * 1024 * 1024
_CHUNK = 1024 * 1024


class S3ObjectStore(ObjectStore):
    """Object store backed by an S3 API endpoint.

    Args:
        endpoint_url: The service's URL; None for AWS itself.
        access_key_id / secret_access_key / region: credentials; None uses boto3's usual chain.
        session_token: With session credentials (a job's own, reaching this server's S3 API).
        max_attempts: How often a call is tried when the service does not answer or answers
            "retry" (backing off up to 20 s each time); None is boto3's default (3).
    """

    def __init__(
        self,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        region: str | None = None,
        max_attempts: int | None = None,
        session_token: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self._client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            region_name=region or "us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                retries={"mode": "standard", **({"max_attempts": max_attempts} if max_attempts else {})},
            ),
        )

    def _call(self, bucket: str, key: str | None, method: str, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        try:
            return getattr(self._client, method)(**kwargs)
        except ClientError as exc:
            error = _translate(exc, bucket, key, kwargs.get("UploadId"))
            if isinstance(error, NoSuchKey) and method == "head_object":
                # A HEAD answer has no body to tell a missing key from a missing bucket.
                self.head_bucket(bucket)
            raise error from None

    # -- buckets --------------------------------------------------------------------------------
    def create_bucket(self, bucket: str) -> BucketInfo:
        validate_bucket_name(bucket)
        self._call(bucket, None, "create_bucket", Bucket=bucket)
        return BucketInfo(bucket, dt.datetime.now(dt.UTC))

    def delete_bucket(self, bucket: str) -> None:
        self._call(bucket, None, "delete_bucket", Bucket=validate_bucket_name(bucket))

    def head_bucket(self, bucket: str) -> BucketInfo:
        self._call(bucket, None, "head_bucket", Bucket=validate_bucket_name(bucket))
        # HeadBucket does not say when the bucket was made; ListBuckets does.
        for info in self.list_buckets():
            if info.name == bucket:
                return info
        return BucketInfo(bucket, dt.datetime.now(dt.UTC))

    def list_buckets(self) -> list[BucketInfo]:
        response = self._call("", None, "list_buckets")
        return [BucketInfo(b["Name"], b["CreationDate"]) for b in response.get("Buckets", [])]

    # -- objects --------------------------------------------------------------------------------
    def open_writer(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
        expected_md5: bytes | None = None,
    ) -> ObjectWriter:
        validate_bucket_name(bucket)
        validate_key(key)
        return _S3Writer(self, bucket, key, None, content_type, dict(metadata or {}), expected_md5)

    def head_object(self, bucket: str, key: str) -> ObjectInfo:
        validate_bucket_name(bucket)
        validate_key(key)
        response = self._call(bucket, key, "head_object", Bucket=bucket, Key=key)
        return _info(bucket, key, response, response["ContentLength"])

    def read_object(
        self, bucket: str, key: str, byte_range: tuple[int | None, int | None] | None = None
    ) -> tuple[ObjectInfo, ByteRange | None, Iterator[bytes]]:
        validate_bucket_name(bucket)
        validate_key(key)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if byte_range is not None:
            first, last = byte_range
            kwargs["Range"] = f"bytes={'' if first is None else first}-{'' if last is None else last}"
        response = self._call(bucket, key, "get_object", **kwargs)
        resolved = None
        size = response["ContentLength"]
        if "ContentRange" in response:
            span, total = response["ContentRange"].split(" ", 1)[1].split("/")
            start, end = (int(x) for x in span.split("-"))
            resolved, size = ByteRange(start, end), int(total)
        body = response["Body"]
        return _info(bucket, key, response, size), resolved, _stream(body)

    def delete_object(self, bucket: str, key: str) -> None:
        validate_bucket_name(bucket)
        validate_key(key)
        self._call(bucket, key, "delete_object", Bucket=bucket, Key=key)

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
        for b, k in ((src_bucket, src_key), (dst_bucket, dst_key)):
            validate_bucket_name(b)
            validate_key(k)
        kwargs: dict[str, Any] = {
            "Bucket": dst_bucket,
            "Key": dst_key,
            "CopySource": {"Bucket": src_bucket, "Key": src_key},
        }
        if content_type is not None or metadata is not None:
            source = self.head_object(src_bucket, src_key)
            kwargs["MetadataDirective"] = "REPLACE"
            kwargs["ContentType"] = content_type or source.content_type
            kwargs["Metadata"] = dict(metadata if metadata is not None else source.metadata)
        self._call(src_bucket, src_key, "copy_object", **kwargs)
        return self.head_object(dst_bucket, dst_key)

    def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        start_after: str = "",
        max_keys: int = MAX_LIST_KEYS,
    ) -> ListPage:
        validate_bucket_name(bucket)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        if start_after:
            kwargs["StartAfter"] = start_after
        response = self._call(bucket, None, "list_objects_v2", **kwargs)
        objects = [
            ObjectInfo(bucket, o["Key"], o["Size"], o["ETag"].strip('"'), o["LastModified"])
            for o in response.get("Contents", [])
        ]
        prefixes = [p["Prefix"] for p in response.get("CommonPrefixes", [])]
        truncated = bool(response.get("IsTruncated"))
        last = max([o.key for o in objects] + prefixes) if truncated and (objects or prefixes) else None
        return ListPage(objects, prefixes, truncated, last)

    # -- multipart uploads ----------------------------------------------------------------------
    def create_multipart_upload(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> UploadInfo:
        validate_bucket_name(bucket)
        validate_key(key)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Metadata": dict(metadata or {})}
        if content_type:
            kwargs["ContentType"] = content_type
        response = self._call(bucket, key, "create_multipart_upload", **kwargs)
        return UploadInfo(
            response["UploadId"],
            bucket,
            key,
            dt.datetime.now(dt.UTC),
            content_type or "binary/octet-stream",
            dict(metadata or {}),
        )

    def open_part_writer(
        self, bucket: str, key: str, upload_id: str, part_number: int, *, expected_md5: bytes | None = None
    ) -> ObjectWriter:
        validate_bucket_name(bucket)
        validate_key(key)
        return _S3Writer(self, bucket, key, (upload_id, part_number), None, {}, expected_md5)

    def list_parts(self, bucket: str, key: str, upload_id: str) -> list[PartInfo]:
        parts: list[PartInfo] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "UploadId": upload_id}
        while True:
            response = self._call(bucket, key, "list_parts", **kwargs)
            parts.extend(
                PartInfo(p["PartNumber"], p["Size"], p["ETag"].strip('"'), p["LastModified"])
                for p in response.get("Parts", [])
            )
            if not response.get("IsTruncated"):
                return parts
            kwargs["PartNumberMarker"] = response["NextPartNumberMarker"]

    def complete_multipart_upload(
        self, bucket: str, key: str, upload_id: str, parts: list[tuple[int, str]]
    ) -> ObjectInfo:
        self._call(
            bucket,
            key,
            "complete_multipart_upload",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": f'"{e.strip(chr(34))}"'} for n, e in parts]},
        )
        return self.head_object(bucket, key)

    def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self._call(bucket, key, "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)

    def list_multipart_uploads(self, bucket: str, *, prefix: str = "") -> list[UploadInfo]:
        validate_bucket_name(bucket)
        uploads: list[UploadInfo] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        while True:
            response = self._call(bucket, None, "list_multipart_uploads", **kwargs)
            uploads.extend(
                UploadInfo(u["UploadId"], bucket, u["Key"], u["Initiated"])
                for u in response.get("Uploads", [])
            )
            if not response.get("IsTruncated"):
                return uploads
            kwargs["KeyMarker"] = response["NextKeyMarker"]
            kwargs["UploadIdMarker"] = response["NextUploadIdMarker"]

    def close(self) -> None:
        self._client.close()


class _S3Writer(ObjectWriter):
    def __init__(
        self,
        store: S3ObjectStore,
        bucket: str,
        key: str,
        part: tuple[str, int] | None,
        content_type: str | None,
        metadata: dict[str, str],
        expected_md5: bytes | None,
    ) -> None:
        super().__init__(expected_md5)
        self._store, self._bucket, self._key, self._part = store, bucket, key, part
        self._content_type, self._metadata = content_type, metadata
        self._spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL)  # noqa: SIM115 - closed by commit/abort
        self._done = False

    def _write(self, data: bytes) -> None:
        self._spool.write(data)

    def commit(self) -> ObjectInfo | PartInfo:
        import base64

        etag = self._check_digest()
        self._spool.seek(0)
        md5 = base64.b64encode(bytes.fromhex(etag)).decode()
        try:
            if self._part is not None:
                upload_id, number = self._part
                response = self._store._call(
                    self._bucket,
                    self._key,
                    "upload_part",
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=self._spool,
                    ContentMD5=md5,
                )
                return PartInfo(number, self._size, response["ETag"].strip('"'), dt.datetime.now(dt.UTC))
            kwargs: dict[str, Any] = {"Metadata": self._metadata, "ContentMD5": md5}
            if self._content_type:
                kwargs["ContentType"] = self._content_type
            self._store._call(
                self._bucket,
                self._key,
                "put_object",
                Bucket=self._bucket,
                Key=self._key,
                Body=self._spool,
                **kwargs,
            )
            return self._store.head_object(self._bucket, self._key)
        finally:
            self.abort()

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._spool.close()


def _info(bucket: str, key: str, response: Mapping[str, Any], size: int) -> ObjectInfo:
    return ObjectInfo(
        bucket,
        key,
        size,
        response.get("ETag", "").strip('"'),
        response["LastModified"],
        response.get("ContentType") or "binary/octet-stream",
        dict(response.get("Metadata", {})),
    )


def _stream(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(_CHUNK)
    finally:
        body.close()


_ERRORS: dict[str, Any] = {
    "NoSuchBucket": lambda b, k, u: NoSuchBucket(b),
    "NoSuchKey": lambda b, k, u: NoSuchKey(b, k or ""),
    "NoSuchUpload": lambda b, k, u: NoSuchUpload(u or ""),
    "BucketAlreadyOwnedByYou": lambda b, k, u: BucketAlreadyOwnedByYou(b),
    "BucketAlreadyExists": lambda b, k, u: BucketAlreadyOwnedByYou(b),
    "BucketNotEmpty": lambda b, k, u: BucketNotEmpty(b),
}
_MESSAGE_ERRORS: dict[str, type[ShipyardError]] = {
    "BadDigest": BadDigest,
    "InvalidPart": InvalidPart,
    "InvalidPartOrder": InvalidPartOrder,
    "EntityTooSmall": EntityTooSmall,
    "InvalidRange": InvalidRange,
}


def _translate(exc: Any, bucket: str, key: str | None, upload_id: str | None) -> ShipyardError:
    error = exc.response.get("Error", {})
    code = error.get("Code", "")
    if code in ("404", "NotFound"):  # HEAD answers have no body to carry the code
        return NoSuchKey(bucket, key) if key else NoSuchBucket(bucket)
    if code in _ERRORS:
        return _ERRORS[code](bucket, key, upload_id)
    if code in _MESSAGE_ERRORS:
        return _MESSAGE_ERRORS[code](error.get("Message", code))
    return ShipyardError(f"S3 object store error {code}: {error.get('Message', exc)}")
