"""The S3 REST API (path-style, as botocore sends it to a custom endpoint) over the object store.

Each request is parsed here, handed to the :class:`~shipyard.storage.ObjectStore`, and answered in
S3's own form: headers and XML documents, errors as ``<Error><Code>`` documents with S3's codes and
HTTP statuses. Bodies stream in both directions; nothing holds a whole object in memory.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from shipyard import errors
from shipyard.api.s3._chunked import AwsChunkedDecoder, BodyChecksums
from shipyard.api.s3._xml import (
    document,
    element,
    error_document,
    http_date,
    iso8601,
    leaf,
    maybe_url_encode,
    parse_xml,
)
from shipyard.core.pagination import decode_token, encode_token
from shipyard.storage import ObjectInfo, ObjectStore, ObjectWriter

_XML = "application/xml"
_MAX_KEYS = 1000
_WRITE_BATCH = 1024 * 1024
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)$")

# Storage errors → (S3 code, HTTP status). Subclasses before their bases.
_ERROR_CODES: list[tuple[type[errors.ShipyardError], str, int]] = [
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


class S3Api:
    """Serves S3 requests for one object store."""

    def __init__(self, store: ObjectStore, region: str) -> None:
        self.store = store
        self.region = region

    async def handle(self, request: Request, request_id: str) -> Response:
        bucket, key = _bucket_and_key(request)
        try:
            response = await self._dispatch(request, bucket, key)
        except errors.ShipyardError as exc:
            response = self._error(exc, request, bucket, key, request_id)
        response.headers["x-amz-request-id"] = request_id
        response.headers["x-amz-id-2"] = request_id
        return response

    def _error(
        self,
        exc: errors.ShipyardError,
        request: Request,
        bucket: str | None,
        key: str | None,
        request_id: str,
    ) -> Response:
        code, status = "InternalError", 500
        for cls, c, s in _ERROR_CODES:
            if isinstance(exc, cls):
                code, status = c, s
                break
        message = exc.message
        if message.startswith("XAmzContentSHA256Mismatch"):
            code = "XAmzContentSHA256Mismatch"
        elif message.startswith("MalformedXML"):
            code = "MalformedXML"
        extra: dict[str, str | None] = {"BucketName": bucket, "Key": key}
        if code == "InvalidArgument" and isinstance(exc, errors.ValidationError) and exc.field:
            extra = {"ArgumentName": exc.field, "ArgumentValue": str(exc.value)[:256], **extra}
        if isinstance(exc, errors.NoSuchUpload):
            extra["UploadId"] = exc.upload_id
        if request.method == "HEAD":  # HEAD answers carry no body
            return Response(status_code=status, headers={"x-amz-error-code": code})
        return Response(error_document(code, message, request_id, **extra), status, media_type=_XML)

    async def _dispatch(self, request: Request, bucket: str | None, key: str | None) -> Response:
        method, query = request.method, request.query_params
        for sub, operation in _UNSUPPORTED_SUBRESOURCES.items():
            if sub in query:
                raise errors.NotImplementedOperation("S3", operation)
        if bucket is None:
            if method == "GET":
                return await self._list_buckets()
            raise errors.NotImplementedOperation("S3", f"{method} /")
        routes: dict[str, Callable[..., Awaitable[Response]]]
        if key is None:
            routes = {
                "PUT": self._create_bucket,
                "HEAD": self._head_bucket,
                "DELETE": self._delete_bucket,
                "GET": self._get_bucket,
                "POST": self._post_bucket,
            }
        elif "uploadId" in query:
            routes = {
                "PUT": self._upload_part,
                "POST": self._complete_upload,
                "DELETE": self._abort_upload,
                "GET": self._list_parts,
            }
        else:
            routes = {
                "PUT": self._put_object,
                "GET": self._get_object,
                "HEAD": self._get_object,
                "DELETE": self._delete_object,
                "POST": self._post_object,
            }
        handler = routes.get(method)
        if handler is None:
            raise errors.NotImplementedOperation("S3", f"{method} on {'an object' if key else 'a bucket'}")
        return await handler(request, bucket, key)

    # -- service & buckets ----------------------------------------------------------------------
    async def _list_buckets(self) -> Response:
        buckets = await run_in_threadpool(self.store.list_buckets)
        root = element(
            "ListAllMyBucketsResult",
            [
                element("Owner", [leaf("ID", "shipyard"), leaf("DisplayName", "shipyard")]),
                element(
                    "Buckets",
                    [
                        element("Bucket", [leaf("Name", b.name), leaf("CreationDate", iso8601(b.created))])
                        for b in buckets
                    ],
                ),
            ],
            ns=True,
        )
        return _xml_response(root)

    async def _create_bucket(self, request: Request, bucket: str, _: None) -> Response:
        body = await _read_small_body(request)
        if body.strip():
            # The location constraint needs no action here, but a body that is not a
            # CreateBucketConfiguration is refused, as S3 refuses it.
            root = parse_xml(body, "CreateBucketConfiguration")
            if root.tag != "CreateBucketConfiguration":
                raise errors.ValidationError(
                    f"MalformedXML: expected a CreateBucketConfiguration document, got <{root.tag}>",
                    field="CreateBucketConfiguration",
                )
        await run_in_threadpool(self.store.create_bucket, bucket)
        return Response(status_code=200, headers={"Location": f"/{bucket}"})

    async def _head_bucket(self, request: Request, bucket: str, _: None) -> Response:
        await run_in_threadpool(self.store.head_bucket, bucket)
        return Response(status_code=200, headers={"x-amz-bucket-region": self.region})

    async def _delete_bucket(self, request: Request, bucket: str, _: None) -> Response:
        await run_in_threadpool(self.store.delete_bucket, bucket)
        return Response(status_code=204)

    async def _get_bucket(self, request: Request, bucket: str, _: None) -> Response:
        query = request.query_params
        if "location" in query:
            await run_in_threadpool(self.store.head_bucket, bucket)
            region = "" if self.region == "us-east-1" else self.region
            return _xml_response(element("LocationConstraint", text=region, ns=True))
        if "uploads" in query:
            raise errors.NotImplementedOperation("S3", "ListMultipartUploads")
        return await self._list_objects(request, bucket, v2=query.get("list-type") == "2")

    async def _list_objects(self, request: Request, bucket: str, *, v2: bool) -> Response:
        q = request.query_params
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        encoding = q.get("encoding-type")
        max_keys = _int_param(q, "max-keys", _MAX_KEYS, 0, None)
        if v2:
            token = q.get("continuation-token")
            start_after = (
                decode_token(token, field="continuation-token")["k"] if token else q.get("start-after", "")
            )
        else:
            start_after = q.get("marker", "")
        page = await run_in_threadpool(
            self.store.list_objects,
            bucket,
            prefix=prefix,
            delimiter=delimiter,
            start_after=start_after,
            max_keys=min(max_keys, _MAX_KEYS),
        )
        if max_keys == 0:
            page = type(page)([], [], False, None)
        contents = [
            element(
                "Contents",
                [
                    leaf("Key", maybe_url_encode(o.key, encoding)),
                    leaf("LastModified", iso8601(o.last_modified)),
                    leaf("ETag", f'"{o.etag}"'),
                    leaf("Size", o.size),
                    leaf("StorageClass", "STANDARD"),
                ],
            )
            for o in page.objects
        ]
        prefixes = [
            element("CommonPrefixes", [leaf("Prefix", maybe_url_encode(p, encoding))])
            for p in page.common_prefixes
        ]
        head: list[Any] = [
            leaf("Name", bucket),
            leaf("Prefix", maybe_url_encode(prefix, encoding)),
            leaf("Delimiter", maybe_url_encode(delimiter, encoding) if delimiter else None),
            leaf("MaxKeys", max_keys),
            leaf("EncodingType", encoding),
            leaf("IsTruncated", page.is_truncated),
        ]
        if v2:
            head += [
                leaf("KeyCount", len(page.objects) + len(page.common_prefixes)),
                leaf("ContinuationToken", q.get("continuation-token")),
                leaf(
                    "NextContinuationToken",
                    encode_token({"k": page.next_start_after}) if page.is_truncated else None,
                ),
                leaf("StartAfter", maybe_url_encode(q.get("start-after"), encoding)),
            ]
        else:
            head += [
                leaf("Marker", maybe_url_encode(q.get("marker", ""), encoding)),
                leaf(
                    "NextMarker",
                    maybe_url_encode(page.next_start_after, encoding)
                    if page.is_truncated and delimiter
                    else None,
                ),
            ]
        return _xml_response(element("ListBucketResult", head + contents + prefixes, ns=True))

    async def _post_bucket(self, request: Request, bucket: str, _: None) -> Response:
        if "delete" not in request.query_params:
            raise errors.NotImplementedOperation("S3", "POST on a bucket (browser-based uploads)")
        body = await _read_small_body(request)
        root = parse_xml(body, "Delete")
        quiet = (root.findtext("Quiet") or "").strip().lower() == "true"
        keys = [obj.findtext("Key") or "" for obj in root.findall("Object")]
        if len(keys) > 1000:
            raise errors.ValidationError(
                f"MalformedXML: DeleteObjects takes at most 1000 keys, got {len(keys)}", field="Delete"
            )

        def delete_all() -> list[Any]:
            results: list[Any] = []
            for key in keys:
                try:
                    self.store.delete_object(bucket, key)
                    if not quiet:
                        results.append(element("Deleted", [leaf("Key", key)]))
                except errors.NoSuchBucket:
                    raise
                except errors.ShipyardError as exc:
                    code = "InvalidArgument" if isinstance(exc, errors.ValidationError) else "InternalError"
                    results.append(
                        element("Error", [leaf("Key", key), leaf("Code", code), leaf("Message", exc.message)])
                    )
            return results

        results = await run_in_threadpool(delete_all)
        return _xml_response(element("DeleteResult", results, ns=True))

    # -- objects --------------------------------------------------------------------------------
    async def _put_object(self, request: Request, bucket: str, key: str) -> Response:
        headers = request.headers
        if "x-amz-copy-source" in headers:
            return await self._copy_object(request, bucket, key)
        writer = await run_in_threadpool(
            self.store.open_writer,
            bucket,
            key,
            content_type=headers.get("content-type") or None,
            metadata=_user_metadata(request),
            expected_md5=_content_md5(request),
        )
        info, checksums = await _receive_into(writer, request)
        assert isinstance(info, ObjectInfo)
        return Response(status_code=200, headers={"ETag": f'"{info.etag}"', **checksums})

    async def _copy_object(self, request: Request, bucket: str, key: str) -> Response:
        source = unquote(request.headers["x-amz-copy-source"]).split("?", 1)[0].lstrip("/")
        src_bucket, _, src_key = source.partition("/")
        if not src_key:
            raise errors.ValidationError(
                f"x-amz-copy-source {source!r} must name a bucket and a key: <bucket>/<key>",
                field="x-amz-copy-source",
                value=source,
            )
        replace = request.headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE"
        await request.body()
        info = await run_in_threadpool(
            self.store.copy_object,
            src_bucket,
            src_key,
            bucket,
            key,
            content_type=request.headers.get("content-type") if replace else None,
            metadata=_user_metadata(request) if replace else None,
        )
        root = element(
            "CopyObjectResult",
            [leaf("LastModified", iso8601(info.last_modified)), leaf("ETag", f'"{info.etag}"')],
            ns=True,
        )
        return _xml_response(root)

    async def _get_object(self, request: Request, bucket: str, key: str) -> Response:
        byte_range = _parse_range(request.headers.get("range"))
        if request.method == "HEAD":
            info = await run_in_threadpool(self.store.head_object, bucket, key)
            status = _preconditions(request, info)
            headers = _object_headers(info)
            if status is None and byte_range is not None and info.size > 0:
                from shipyard.storage._base import resolve_range

                span = resolve_range(byte_range[0], byte_range[1], info.size)
                headers["Content-Range"] = f"bytes {span.start}-{span.end}/{info.size}"
                headers["Content-Length"] = str(span.length)
                status = 206
            return Response(status_code=status or 200, headers=headers)
        info, resolved, chunks = await run_in_threadpool(self.store.read_object, bucket, key, byte_range)
        precondition = _preconditions(request, info)
        if precondition is not None:
            _close(chunks)
            if precondition == 412:
                raise _PreconditionFailed()
            return Response(status_code=precondition, headers=_object_headers(info))
        headers = _object_headers(info)
        status = 200
        if resolved is not None:
            headers["Content-Range"] = f"bytes {resolved.start}-{resolved.end}/{info.size}"
            headers["Content-Length"] = str(resolved.length)
            status = 206
        for name, value in request.query_params.items():  # response-content-type=... overrides
            if name.startswith("response-"):
                header = {
                    "response-content-type": "Content-Type",
                    "response-content-disposition": "Content-Disposition",
                    "response-cache-control": "Cache-Control",
                    "response-content-encoding": "Content-Encoding",
                    "response-expires": "Expires",
                    "response-content-language": "Content-Language",
                }.get(name)
                if header:
                    headers[header] = value
        return StreamingResponse(
            chunks, status_code=status, headers=headers, media_type=headers["Content-Type"]
        )

    async def _delete_object(self, request: Request, bucket: str, key: str) -> Response:
        await run_in_threadpool(self.store.delete_object, bucket, key)
        return Response(status_code=204)

    async def _post_object(self, request: Request, bucket: str, key: str) -> Response:
        if "uploads" not in request.query_params:
            raise errors.NotImplementedOperation("S3", "POST on an object")
        await request.body()
        upload = await run_in_threadpool(
            self.store.create_multipart_upload,
            bucket,
            key,
            content_type=request.headers.get("content-type") or None,
            metadata=_user_metadata(request),
        )
        root = element(
            "InitiateMultipartUploadResult",
            [leaf("Bucket", bucket), leaf("Key", key), leaf("UploadId", upload.upload_id)],
            ns=True,
        )
        headers = {}
        if algorithm := request.headers.get("x-amz-checksum-algorithm"):
            headers["x-amz-checksum-algorithm"] = algorithm
        return _xml_response(root, headers)

    # -- multipart ------------------------------------------------------------------------------
    async def _upload_part(self, request: Request, bucket: str, key: str) -> Response:
        q = request.query_params
        if "x-amz-copy-source" in request.headers:
            raise errors.NotImplementedOperation("S3", "UploadPartCopy")
        part_number = _int_param(q, "partNumber", None, 1, 10_000)
        writer = await run_in_threadpool(
            self.store.open_part_writer,
            bucket,
            key,
            q["uploadId"],
            part_number,
            expected_md5=_content_md5(request),
        )
        info, checksums = await _receive_into(writer, request)
        return Response(status_code=200, headers={"ETag": f'"{info.etag}"', **checksums})

    async def _complete_upload(self, request: Request, bucket: str, key: str) -> Response:
        body = await _read_small_body(request)
        root = parse_xml(body, "CompleteMultipartUpload")
        parts: list[tuple[int, str]] = []
        for part in root.findall("Part"):
            try:
                parts.append(
                    (int(part.findtext("PartNumber") or ""), (part.findtext("ETag") or "").strip('"'))
                )
            except ValueError:
                raise errors.ValidationError(
                    f"MalformedXML: PartNumber {part.findtext('PartNumber')!r} is not a number",
                    field="PartNumber",
                ) from None
        info = await run_in_threadpool(
            self.store.complete_multipart_upload, bucket, key, request.query_params["uploadId"], parts
        )
        root = element(
            "CompleteMultipartUploadResult",
            [
                leaf("Location", f"{request.base_url}{bucket}/{key}"),
                leaf("Bucket", bucket),
                leaf("Key", key),
                leaf("ETag", f'"{info.etag}"'),
            ],
            ns=True,
        )
        return _xml_response(root)

    async def _abort_upload(self, request: Request, bucket: str, key: str) -> Response:
        await run_in_threadpool(
            self.store.abort_multipart_upload, bucket, key, request.query_params["uploadId"]
        )
        return Response(status_code=204)

    async def _list_parts(self, request: Request, bucket: str, key: str) -> Response:
        q = request.query_params
        marker = _int_param(q, "part-number-marker", 0, 0, None)
        max_parts = _int_param(q, "max-parts", 1000, 0, 1000)
        parts = await run_in_threadpool(self.store.list_parts, bucket, key, q["uploadId"])
        after = [p for p in parts if p.part_number > marker]
        page, truncated = after[:max_parts], len(after) > max_parts
        root = element(
            "ListPartsResult",
            [
                leaf("Bucket", bucket),
                leaf("Key", key),
                leaf("UploadId", q["uploadId"]),
                leaf("PartNumberMarker", marker),
                leaf("NextPartNumberMarker", page[-1].part_number if page else marker),
                leaf("MaxParts", max_parts),
                leaf("IsTruncated", truncated),
                leaf("StorageClass", "STANDARD"),
                *(
                    element(
                        "Part",
                        [
                            leaf("PartNumber", p.part_number),
                            leaf("LastModified", iso8601(p.last_modified)),
                            leaf("ETag", f'"{p.etag}"'),
                            leaf("Size", p.size),
                        ],
                    )
                    for p in page
                ),
            ],
            ns=True,
        )
        return _xml_response(root)


class _PreconditionFailed(errors.ShipyardError):
    def __init__(self) -> None:
        super().__init__("At least one of the pre-conditions you specified did not hold")


_ERROR_CODES.insert(0, (_PreconditionFailed, "PreconditionFailed", 412))


def _bucket_and_key(request: Request) -> tuple[str | None, str | None]:
    """Bucket and key from a path-style URL (or a ``<bucket>.localhost`` virtual host).

    The raw path is split before percent-decoding, so an encoded ``%2F`` stays inside the key and
    encoded dots are decoded exactly once (and then refused by key validation).
    """
    raw_path: bytes = request.scope.get("raw_path") or request.url.path.encode()
    path = raw_path.decode("latin-1").split("?", 1)[0]
    host = request.headers.get("host", "").rsplit(":", 1)[0]
    if host.endswith(".localhost"):
        bucket = host.removesuffix(".localhost")
        key = unquote(path[1:], errors="strict") if len(path) > 1 else None
        return bucket, key
    trimmed = path.lstrip("/")
    if not trimmed:
        return None, None
    bucket_part, slash, key_part = trimmed.partition("/")
    bucket = unquote(bucket_part)
    if not slash or key_part == "":
        return bucket, None
    return bucket, unquote(key_part, errors="strict")


def _xml_response(root: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(document(root), 200, headers=headers, media_type=_XML)


def _int_param(query: Any, name: str, default: int | None, low: int, high: int | None) -> int:
    raw = query.get(name)
    if raw is None:
        if default is None:
            raise errors.ValidationError(f"Missing required parameter {name}", field=name)
        return default
    try:
        value = int(raw)
    except ValueError:
        raise errors.ValidationError(
            f"{name} must be an integer, got {raw!r}", field=name, value=raw
        ) from None
    if value < low or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise errors.ValidationError(f"{name} must be {bounds}, got {value}", field=name, value=value)
    return value


def _user_metadata(request: Request) -> dict[str, str]:
    return {k[len("x-amz-meta-") :]: v for k, v in request.headers.items() if k.startswith("x-amz-meta-")}


def _content_md5(request: Request) -> bytes | None:
    raw = request.headers.get("content-md5")
    if raw is None:
        return None
    try:
        digest = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        digest = b""
    if len(digest) != 16:
        raise errors.ValidationError(
            f"InvalidDigest: the Content-MD5 you specified ({raw!r}) is not a base64 MD5 digest",
            field="Content-MD5",
            value=raw,
        )
    return digest


async def _body_chunks(request: Request, checksums: BodyChecksums) -> AsyncIterator[bytes]:
    """The object bytes of a request body, aws-chunked decoded when it is; feeds the checksums."""
    encoding = request.headers.get("content-encoding", "")
    if "aws-chunked" in encoding or request.headers.get("x-amz-content-sha256", "").startswith("STREAMING-"):
        decoder = AwsChunkedDecoder()
        async for raw in request.stream():
            for piece in decoder.feed(raw):
                checksums.update(piece)
                yield piece
        decoder.finish()
        request.state.trailers = decoder.trailers
        declared = request.headers.get("x-amz-decoded-content-length")
        request.state.declared_length = int(declared) if declared and declared.isdigit() else None
        return
    async for raw in request.stream():
        if raw:
            checksums.update(raw)
            yield raw
    request.state.trailers = {}
    request.state.declared_length = None


async def _receive_into(writer: ObjectWriter, request: Request) -> tuple[Any, dict[str, str]]:
    """Stream the request body into ``writer`` and commit it; abort on any failure."""
    checksums = BodyChecksums(request.headers)
    buffer = bytearray()
    with writer:
        async for chunk in _body_chunks(request, checksums):
            buffer += chunk
            if len(buffer) >= _WRITE_BATCH:
                writer.write(bytes(buffer))
                buffer.clear()
        if buffer:
            writer.write(bytes(buffer))
        declared = request.state.declared_length
        if declared is not None and declared != writer.size:
            raise errors.ValidationError(
                f"IncompleteBody: x-amz-decoded-content-length says {declared} bytes, received {writer.size}",
                field="x-amz-decoded-content-length",
                value=declared,
            )
        verified = checksums.verify(request.state.trailers)
        info = await run_in_threadpool(writer.commit)
    return info, verified


async def _read_small_body(request: Request) -> bytes:
    checksums = BodyChecksums(request.headers)
    body = b"".join([chunk async for chunk in _body_chunks(request, checksums)])
    checksums.verify(request.state.trailers)
    expected = _content_md5(request)
    if expected is not None:
        import hashlib

        if hashlib.md5(body).digest() != expected:
            raise errors.BadDigest("The Content-MD5 you specified did not match what we received")
    return body


def _parse_range(header: str | None) -> tuple[int | None, int | None] | None:
    if not header:
        return None
    match = _RANGE_RE.match(header.strip())
    if not match or (not match[1] and not match[2]):
        return None  # S3 ignores ranges it cannot parse (and multi-range requests)
    first = int(match[1]) if match[1] else None
    last = int(match[2]) if match[2] else None
    if first is not None and last is not None and last < first:
        return None
    return first, last


def _object_headers(info: ObjectInfo) -> dict[str, str]:
    headers = {
        "ETag": f'"{info.etag}"',
        "Last-Modified": http_date(info.last_modified),
        "Content-Length": str(info.size),
        "Content-Type": info.content_type,
        "Accept-Ranges": "bytes",
    }
    for name, value in info.metadata.items():
        headers[f"x-amz-meta-{name}"] = value
    return headers


def _preconditions(request: Request, info: ObjectInfo) -> int | None:
    """HTTP conditional headers, as S3 evaluates them: None to go on, else the status to answer."""
    headers = request.headers
    etag = f'"{info.etag}"'
    modified = info.last_modified.replace(microsecond=0)
    if (if_match := headers.get("if-match")) is not None:
        if not any(t.strip() in (etag, info.etag, "*") for t in if_match.split(",")):
            return 412
    elif (since := _http_time(headers.get("if-unmodified-since"))) is not None and modified > since:
        return 412
    if (if_none := headers.get("if-none-match")) is not None:
        if any(t.strip() in (etag, info.etag, "*") for t in if_none.split(",")):
            return 304
    elif (since := _http_time(headers.get("if-modified-since"))) is not None and modified <= since:
        return 304
    return None


def _http_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None


def _close(chunks: Iterator[bytes]) -> None:
    close: Callable[[], None] | None = getattr(chunks, "close", None)
    if close is not None:
        close()
