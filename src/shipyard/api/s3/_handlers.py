"""The S3 REST API (path-style, as botocore sends it to a custom endpoint) over the object store.

Each request is parsed here, handed to the :class:`~shipyard.storage.ObjectStore`, and answered in
S3's own form: headers and XML documents, errors as ``<Error><Code>`` documents with S3's codes and
HTTP statuses. Bodies stream in both directions; nothing holds a whole object in memory.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from shipyard import errors
from shipyard.api.s3 import _limits
from shipyard.api.s3._buckets import BucketOwnership, parse_tagging, tagging_document
from shipyard.api.s3._errors import (
    _ERROR_CODES,
    _UNSUPPORTED_SUBRESOURCES,
    _BucketAlreadyExists,
    _NoSuchTagSet,
    _PreconditionFailed,
    _S3CodedError,
)
from shipyard.api.s3._http import (
    _XML,
    _bucket_and_key,
    _close,
    _content_md5,
    _int_param,
    _object_headers,
    _parse_range,
    _preconditions,
    _read_small_body,
    _receive_into,
    _user_metadata,
    _xml_response,
    check_declared_size,
)
from shipyard.api.s3._xml import element, error_document, iso8601, leaf, maybe_url_encode, parse_xml
from shipyard.core.credentials import Principal
from shipyard.core.pagination import decode_token, encode_token
from shipyard.core.tags import Tag
from shipyard.storage import ObjectInfo, ObjectStore, UploadInfo

_ROOT = Principal("arn:aws:iam::000000000000:root", (), administrator=True)  # no caller given


class S3Api:
    """Serves S3 requests for one object store. ``ownership``: who owns each bucket and its tags
    (None: every bucket is the caller's, tagging is not served)."""

    def __init__(self, store: ObjectStore, region: str, ownership: BucketOwnership | None = None) -> None:
        self.store = store
        self.region = region
        self.ownership = ownership

    async def handle(self, request: Request, request_id: str, caller: Principal | None = None) -> Response:
        """Serve ``request`` for ``caller`` (authorized already; None: the account's root)."""
        bucket: str | None = None
        key: str | None = None
        try:
            bucket, key = _bucket_and_key(request)
            served = None
            if bucket is not None and key is None and self.ownership is not None:
                served = await self._owned_bucket(request, bucket, caller or _ROOT)
            if served is not None:
                response = served
            elif bucket is None and request.method == "GET":
                response = await self._list_buckets(caller or _ROOT)
            else:
                response = await self._dispatch(request, bucket, key)
        except errors.ShipyardError as exc:
            response = self._error(exc, request, bucket, key, request_id)
        return _with_request_id(response, request_id)

    async def _owned_bucket(self, request: Request, bucket: str, caller: Principal) -> Response | None:
        """CreateBucket, DeleteBucket and the bucket's tagging, which ownership follows; None
        for every other bucket request."""
        assert self.ownership is not None
        ownership, method, query = self.ownership, request.method, request.query_params
        if "tagging" in query:
            if method == "GET":
                tags = await run_in_threadpool(_existing_tags, self.store, ownership, bucket)
                return _xml_response(tagging_document(tags))
            if method == "PUT":
                tags = parse_tagging(await _read_small_body(request, "PutBucketTagging"))
                await run_in_threadpool(self.store.head_bucket, bucket)
                await run_in_threadpool(ownership.set_tags, bucket, tags, caller, "s3:PutBucketTagging")
                return Response(status_code=204)
            if method == "DELETE":
                await run_in_threadpool(self.store.head_bucket, bucket)
                await run_in_threadpool(ownership.set_tags, bucket, [], caller, "s3:DeleteBucketTagging")
                return Response(status_code=204)
            return None
        if method == "PUT" and not any(sub in query for sub in _UNSUPPORTED_SUBRESOURCES):
            try:
                response = await self._create_bucket(request, bucket, None)
            except errors.BucketAlreadyOwnedByYou:
                if await run_in_threadpool(ownership.taken_by_another, bucket, caller):
                    raise _BucketAlreadyExists(bucket) from None
                raise
            await run_in_threadpool(ownership.created, bucket, caller)
            return response
        if method == "DELETE" and not query:
            response = await self._delete_bucket(request, bucket, None)
            await run_in_threadpool(ownership.deleted, bucket)
            return response
        return None

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
        if isinstance(exc, _S3CodedError):
            code = exc.code
        elif message.startswith("XAmzContentSHA256Mismatch"):
            code = "XAmzContentSHA256Mismatch"
        elif message.startswith("MalformedXML"):
            code = "MalformedXML"
        extra: dict[str, str | None] = {"BucketName": bucket, "Key": key}
        if isinstance(exc, errors.EntityTooLarge):
            extra = {
                "ProposedSize": None if exc.size is None else str(exc.size),
                "MaxSizeAllowed": str(exc.limit),
                **extra,
            }
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
    async def _list_buckets(self, caller: Principal) -> Response:
        buckets = await run_in_threadpool(self.store.list_buckets)
        if self.ownership is not None:
            buckets = await run_in_threadpool(self.ownership.visible, buckets, caller)
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
        body = await _read_small_body(request, "CreateBucket")
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
            return await self._list_uploads(request, bucket)
        return await self._list_objects(request, bucket, v2=query.get("list-type") == "2")

    async def _list_objects(self, request: Request, bucket: str, *, v2: bool) -> Response:
        q = request.query_params
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        encoding = q.get("encoding-type")
        max_keys = _int_param(q, "max-keys", _limits.MAX_KEYS, 0, None)
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
            max_keys=min(max_keys, _limits.MAX_KEYS),
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
        body = await _read_small_body(request, "DeleteObjects")
        root = _document(body, "Delete")
        quiet = (root.findtext("Quiet") or "").strip().lower() == "true"
        objects = root.findall("Object")
        if not objects or len(objects) > _limits.MAX_DELETE_KEYS:
            raise _malformed(
                f"DeleteObjects takes 1 to {_limits.MAX_DELETE_KEYS} Object elements, got {len(objects)}",
                "Delete",
            )
        if any(obj.find("Key") is None for obj in objects):
            raise _malformed("every Object of a DeleteObjects document needs a Key", "Key")
        keys = [obj.findtext("Key") or "" for obj in objects]

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
        check_declared_size(request, _limits.MAX_PUT_SIZE, "object")
        writer = await run_in_threadpool(
            self.store.open_writer,
            bucket,
            key,
            content_type=headers.get("content-type") or None,
            metadata=_user_metadata(request),
            expected_md5=_content_md5(request),
        )
        info, checksums = await _receive_into(writer, request, _limits.MAX_PUT_SIZE, "object")
        assert isinstance(info, ObjectInfo)
        return Response(status_code=200, headers={"ETag": f'"{info.etag}"', **checksums})

    async def _copy_object(self, request: Request, bucket: str, key: str) -> Response:
        raw = request.headers["x-amz-copy-source"]
        try:
            source = unquote(raw.split("?", 1)[0], errors="strict")
        except UnicodeDecodeError:
            raise errors.ValidationError(
                f"x-amz-copy-source {raw[:200]!r} percent-encodes bytes that are not UTF-8",
                field="x-amz-copy-source",
                value=raw[:200],
            ) from None
        src_bucket, _, src_key = source.removeprefix("/").partition("/")
        if not src_key:
            raise errors.ValidationError(
                f"x-amz-copy-source {source!r} must name a bucket and a key: <bucket>/<key>",
                field="x-amz-copy-source",
                value=source,
            )
        replace = request.headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE"
        await _read_small_body(request, "CopyObject")
        size = (await run_in_threadpool(self.store.head_object, src_bucket, src_key)).size
        if size > _limits.MAX_COPY_SIZE:
            raise _S3CodedError(
                "InvalidRequest",
                f"The specified copy source is larger than the maximum allowable size for a copy "
                f"source: {_limits.MAX_COPY_SIZE} (it is {size} bytes); copy it in parts",
                field="x-amz-copy-source",
                value=source,
            )
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
        await _read_small_body(request, "CreateMultipartUpload")
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
        part_number = _int_param(q, "partNumber", None, 1, _limits.MAX_PART_NUMBER)
        check_declared_size(request, _limits.MAX_PART_SIZE, "part")
        writer = await run_in_threadpool(
            self.store.open_part_writer,
            bucket,
            key,
            q["uploadId"],
            part_number,
            expected_md5=_content_md5(request),
        )
        info, checksums = await _receive_into(writer, request, _limits.MAX_PART_SIZE, "part")
        return Response(status_code=200, headers={"ETag": f'"{info.etag}"', **checksums})

    async def _complete_upload(self, request: Request, bucket: str, key: str) -> Response:
        body = await _read_small_body(request, "CompleteMultipartUpload")
        parts = _completed_parts(_document(body, "CompleteMultipartUpload"))
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

    async def _list_uploads(self, request: Request, bucket: str) -> Response:
        """ListMultipartUploads: uploads by key then by start, markers and a delimiter as S3 has them."""
        q = request.query_params
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        encoding = q.get("encoding-type")
        key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
        max_uploads = _int_param(q, "max-uploads", _limits.MAX_KEYS, 0, None)
        uploads = await run_in_threadpool(self.store.list_multipart_uploads, bucket, prefix=prefix)
        entries = _grouped(_after_markers(uploads, key_marker, id_marker, delimiter), prefix, delimiter)
        limit = min(max_uploads, _limits.MAX_KEYS)
        page, truncated = entries[:limit], len(entries) > limit
        last = page[-1] if truncated and page else None

        def enc(value: str | None) -> str | None:
            return maybe_url_encode(value, encoding)

        owner = [leaf("ID", "shipyard"), leaf("DisplayName", "shipyard")]
        root = element(
            "ListMultipartUploadsResult",
            [
                leaf("Bucket", bucket),
                leaf("KeyMarker", enc(key_marker)),
                leaf("UploadIdMarker", id_marker),
                leaf("NextKeyMarker", enc(last if isinstance(last, str) else last.key) if last else None),
                leaf("NextUploadIdMarker", last.upload_id if isinstance(last, UploadInfo) else None),
                leaf("Delimiter", enc(delimiter) if delimiter else None),
                leaf("Prefix", enc(prefix)),
                leaf("MaxUploads", max_uploads),
                leaf("EncodingType", encoding),
                leaf("IsTruncated", truncated),
                *(
                    element(
                        "Upload",
                        [
                            leaf("Key", enc(u.key)),
                            leaf("UploadId", u.upload_id),
                            element("Initiator", owner),
                            element("Owner", owner),
                            leaf("StorageClass", "STANDARD"),
                            leaf("Initiated", iso8601(u.initiated)),
                        ],
                    )
                    for u in page
                    if isinstance(u, UploadInfo)
                ),
                *(element("CommonPrefixes", [leaf("Prefix", enc(p))]) for p in page if isinstance(p, str)),
            ],
            ns=True,
        )
        return _xml_response(root)

    async def _list_parts(self, request: Request, bucket: str, key: str) -> Response:
        q = request.query_params
        marker = _int_param(q, "part-number-marker", 0, 0, None)
        max_parts = _int_param(q, "max-parts", _limits.MAX_KEYS, 0, _limits.MAX_KEYS)
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


def _with_request_id(response: Response, request_id: str) -> Response:
    response.headers["x-amz-request-id"] = request_id
    response.headers["x-amz-id-2"] = request_id
    return response


def _existing_tags(store: ObjectStore, ownership: BucketOwnership, bucket: str) -> list[Tag]:
    """GetBucketTagging's tags: NoSuchBucket, or NoSuchTagSet when it has none (as S3)."""
    store.head_bucket(bucket)
    tags = ownership.tags(bucket)
    if not tags:
        raise _NoSuchTagSet(bucket)
    return tags


def _malformed(reason: str, field: str) -> errors.ValidationError:
    return errors.ValidationError(f"MalformedXML: {reason}", field=field)


def _document(body: bytes, tag: str) -> Any:
    """The request document, which must be a ``<tag>`` (else MalformedXML)."""
    root = parse_xml(body, tag)
    if root.tag != tag:
        raise _malformed(f"expected a {tag} document, got <{root.tag}>", tag)
    return root


def _completed_parts(root: Any) -> list[tuple[int, str]]:
    """The ``(part number, ETag)`` pairs a CompleteMultipartUpload document lists, checked."""
    nodes = root.findall("Part")
    if len(nodes) > _limits.MAX_PARTS:
        raise errors.ValidationError(
            f"CompleteMultipartUpload lists {len(nodes)} parts; at most {_limits.MAX_PARTS} are allowed",
            field="Part",
            value=len(nodes),
        )
    parts: list[tuple[int, str]] = []
    for node in nodes:
        text, etag = node.findtext("PartNumber"), node.findtext("ETag")
        if text is None or etag is None:
            raise _malformed("every Part needs a PartNumber and an ETag", "Part")
        text = text.strip()
        if not text.isascii() or not text.isdigit() or len(text) > 9:
            raise _malformed(f"PartNumber {text[:40]!r} is not a number", "PartNumber")
        number = int(text)
        if not 1 <= number <= _limits.MAX_PART_NUMBER:
            raise errors.ValidationError(
                f"Part number must be an integer between 1 and {_limits.MAX_PART_NUMBER}, inclusive; got {number}",
                field="PartNumber",
                value=number,
            )
        parts.append((number, etag.strip().strip('"')))
    return parts


def _after_markers(
    uploads: list[UploadInfo], key_marker: str, id_marker: str, delimiter: str
) -> list[UploadInfo]:
    """The uploads a ListMultipartUploads page starts from: after ``key_marker`` (and, for that
    key, after ``id_marker``); a marker that is a common prefix skips every key below it."""
    if not key_marker:
        return uploads
    if id_marker:
        for index, upload in enumerate(uploads):
            if upload.key == key_marker and upload.upload_id == id_marker:
                return uploads[index + 1 :]
    skip_below = key_marker if delimiter and key_marker.endswith(delimiter) else None
    return [
        u
        for u in uploads
        if u.key > key_marker and not (skip_below is not None and u.key.startswith(skip_below))
    ]


def _grouped(uploads: list[UploadInfo], prefix: str, delimiter: str) -> list[UploadInfo | str]:
    """Uploads whose key has ``delimiter`` after ``prefix`` become one common prefix each."""
    out: list[UploadInfo | str] = []
    for upload in uploads:
        cut = upload.key.find(delimiter, len(prefix)) if delimiter else -1
        if cut < 0:
            out.append(upload)
            continue
        common = upload.key[: cut + len(delimiter)]
        if not out or out[-1] != common:
            out.append(common)
    return out
