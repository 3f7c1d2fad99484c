"""S3 requests read and answered: bucket and key from the path, parameters, headers, bodies
(streamed, aws-chunked decoded, checksums verified), ranges, preconditions, object headers."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.utils
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from shipyard import errors
from shipyard.api.s3 import _limits
from shipyard.api.s3._chunked import AwsChunkedDecoder, BodyChecksums
from shipyard.api.s3._errors import _S3CodedError
from shipyard.api.s3._xml import document, http_date
from shipyard.storage import ObjectInfo, ObjectWriter

_XML = "application/xml"
_WRITE_BATCH = 1024 * 1024
_RANGE_RE = re.compile(r"bytes=(\d*)-(\d*)$")
_DIGITS = re.compile(r"[0-9]{1,19}")
_HUGE = 10**18  # what a range bound of more digits than any size stands for


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
        key = _unquote(path[1:], path) if len(path) > 1 else None
        return bucket, key
    trimmed = path[1:] if path.startswith("/") else path
    if not trimmed:
        return None, None
    bucket_part, slash, key_part = trimmed.partition("/")
    bucket = _unquote(bucket_part, path)
    if not slash or key_part == "":
        return bucket, None
    return bucket, _unquote(key_part, path)


def _unquote(part: str, path: str) -> str:
    """Percent-decode a part of the path; InvalidURI (400) when the bytes are not UTF-8."""
    try:
        return unquote(part, errors="strict")
    except UnicodeDecodeError:
        raise _S3CodedError(
            "InvalidURI",
            f"Couldn't parse the specified URI: {path[:200]!r} percent-encodes bytes that are not UTF-8",
            field="URI",
            value=path[:200],
        ) from None


def _declared_size(request: Request) -> int | None:
    """The body's size as the request declares it (the decoded size of an aws-chunked body)."""
    headers = request.headers
    chunked = "aws-chunked" in headers.get("content-encoding", "") or headers.get(
        "x-amz-content-sha256", ""
    ).startswith("STREAMING-")
    raw = headers.get("x-amz-decoded-content-length") if chunked else headers.get("content-length")
    return _size(raw)


def _size(raw: str | None) -> int | None:
    """A decimal header value as an int; None when absent or no plain number."""
    return int(raw) if raw is not None and _DIGITS.fullmatch(raw) else None


def check_declared_size(request: Request, limit: int, what: str) -> None:
    """EntityTooLarge before a byte is read, when the declared size is over ``limit``."""
    declared = _declared_size(request)
    if declared is not None and declared > limit:
        raise errors.EntityTooLarge(what, limit, size=declared)


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
        request.state.declared_length = _size(declared)
        return
    async for raw in request.stream():
        if raw:
            checksums.update(raw)
            yield raw
    request.state.trailers = {}
    request.state.declared_length = None


async def _receive_into(
    writer: ObjectWriter, request: Request, limit: int, what: str
) -> tuple[Any, dict[str, str]]:
    """Stream the request body into ``writer`` and commit it; abort on any failure, and as soon
    as the body passes ``limit`` bytes (EntityTooLarge)."""
    checksums = BodyChecksums(request.headers)
    buffer = bytearray()
    with writer:
        async for chunk in _body_chunks(request, checksums):
            buffer += chunk
            if writer.size + len(buffer) > limit:
                raise errors.EntityTooLarge(what, limit)
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


async def _read_small_body(request: Request, what: str) -> bytes:
    """A request document (or a body the operation ignores), read whole up to
    ``MAX_XML_BODY`` bytes: past that, MaxMessageLengthExceeded without reading on."""
    limit = _limits.MAX_XML_BODY
    declared = _declared_size(request)
    too_big = _S3CodedError(
        "MaxMessageLengthExceeded",
        f"Your request was too big: the {what} body is "
        + (f"{declared} bytes" if declared is not None and declared > limit else f"more than {limit} bytes")
        + f"; the limit is {limit} bytes",
        field="Content-Length",
        value=declared,
    )
    if declared is not None and declared > limit:
        raise too_big
    checksums = BodyChecksums(request.headers)
    pieces: list[bytes] = []
    size = 0
    async for chunk in _body_chunks(request, checksums):
        size += len(chunk)
        if size > limit:
            raise too_big
        pieces.append(chunk)
    body = b"".join(pieces)
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
    first = _bound(match[1])
    last = _bound(match[2])
    if first is not None and last is not None and last < first:
        return None
    return first, last


def _bound(digits: str) -> int | None:
    if not digits:
        return None
    return int(digits) if len(digits) < 19 else _HUGE


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
