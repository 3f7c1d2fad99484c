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
from shipyard.api.s3._errors import _ERROR_CODES, _UNSUPPORTED_SUBRESOURCES, _PreconditionFailed
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
)
from shipyard.api.s3._xml import element, error_document, iso8601, leaf, maybe_url_encode, parse_xml
from shipyard.core.pagination import decode_token, encode_token
from shipyard.storage import ObjectInfo, ObjectStore

_MAX_KEYS = 1000


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
