"""Request bodies as S3 clients send them: aws-chunked encoding and the checksums they carry.

Recent botocore sends uploads with ``Content-Encoding: aws-chunked``: the body is a series of
``<hex size>[;chunk-signature=<sig>]\\r\\n<bytes>\\r\\n`` chunks, a zero-size chunk, then trailer
lines such as ``x-amz-checksum-crc32:<base64>`` and an empty line. :class:`AwsChunkedDecoder`
turns that back into the object's bytes; :class:`BodyChecksums` computes and checks the
``x-amz-checksum-*`` values, whether they came as headers or as trailers.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable, Mapping
from typing import Any

from shipyard.errors import BadDigest, ValidationError

_MAX_LINE = 4096


class AwsChunkedDecoder:
    """Incremental decoder: feed raw body bytes, get object bytes; trailers when done."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._remaining = 0  # bytes of the current chunk's data still to come
        self._state = "size"  # size -> data -> crlf -> size ... -> trailers -> done
        self.trailers: dict[str, str] = {}

    @property
    def done(self) -> bool:
        return self._state == "done"

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        self._buffer += data
        while self._buffer and self._state != "done":
            if self._state == "data":
                take = min(self._remaining, len(self._buffer))
                out.append(bytes(self._buffer[:take]))
                del self._buffer[:take]
                self._remaining -= take
                if self._remaining == 0:
                    self._state = "crlf"
                continue
            if self._state == "crlf":
                if len(self._buffer) < 2:
                    break
                if self._buffer[:2] != b"\r\n":
                    raise _malformed("a chunk's data is not followed by CRLF")
                del self._buffer[:2]
                self._state = "size"
                continue
            line = self._take_line()
            if line is None:
                break
            if self._state == "size":
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise _malformed(f"bad chunk size {size_text[:32]!r}") from None
                if size == 0:
                    self._state = "trailers"
                else:
                    self._remaining, self._state = size, "data"
            elif self._state == "trailers":
                if not line:
                    self._state = "done"
                else:
                    name, _, value = line.decode("latin-1").partition(":")
                    self.trailers[name.strip().lower()] = value.strip()
        return out

    def finish(self) -> None:
        # Some clients end the body right after the last trailer, without the final empty line.
        if self._state == "trailers" and not self._buffer:
            self._state = "done"
        if self._state != "done":
            raise _malformed("the body ended before its final chunk")

    def _take_line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_LINE:
                raise _malformed("a chunk header line is too long")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line


def _malformed(reason: str) -> ValidationError:
    return ValidationError(f"Malformed aws-chunked request body: {reason}", field="Body")


class _Crc:
    """An incremental CRC with the hashlib-like interface the checksums need."""

    def __init__(self, update: Callable[[bytes, int], int], width: int) -> None:
        self._update, self._width, self.value = update, width, 0

    def update(self, data: bytes) -> None:
        self.value = self._update(data, self.value)

    def digest(self) -> bytes:
        return int(self.value).to_bytes(self._width, "big")


def _crc(name: str) -> _Crc | None:
    if name == "crc32":
        return _Crc(zlib.crc32, 4)
    try:  # CRC32C and CRC64NVME need the AWS CRT, which botocore uses when it is installed.
        from awscrt import checksums  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    update = getattr(checksums, name, None)
    return _Crc(update, 8 if name == "crc64nvme" else 4) if update is not None else None


_ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")


class BodyChecksums:
    """Computes the checksums a request declares and checks them once the body is complete."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = headers
        wanted = set()
        for name in _ALGORITHMS:
            if f"x-amz-checksum-{name}" in headers:
                wanted.add(name)
        for trailer in headers.get("x-amz-trailer", "").split(","):
            trailer = trailer.strip().lower()
            if trailer.startswith("x-amz-checksum-"):
                wanted.add(trailer.removeprefix("x-amz-checksum-"))
        self._hashers: dict[str, Any] = {}
        for name in wanted:
            if name in ("sha1", "sha256"):
                self._hashers[name] = hashlib.new(name)
            elif (crc := _crc(name)) is not None:
                self._hashers[name] = crc
        content_sha = headers.get("x-amz-content-sha256", "")
        self._payload_sha256 = content_sha if len(content_sha) == 64 else None
        if self._payload_sha256 and not headers.get("content-encoding", "").startswith("aws-chunked"):
            self._plain_sha = hashlib.sha256()
        else:
            self._plain_sha = None  # type: ignore[assignment]

    def update(self, data: bytes) -> None:
        for hasher in self._hashers.values():
            hasher.update(data)
        if self._plain_sha is not None:
            self._plain_sha.update(data)

    def verify(self, trailers: Mapping[str, str]) -> dict[str, str]:
        """Raise BadDigest on any mismatch; return the verified ``x-amz-checksum-*`` values."""
        if self._plain_sha is not None and self._plain_sha.hexdigest() != self._payload_sha256:
            raise BadDigest(
                "XAmzContentSHA256Mismatch: the x-amz-content-sha256 you sent "
                f"({self._payload_sha256}) does not match the body's ({self._plain_sha.hexdigest()})",
                field="x-amz-content-sha256",
                value=self._payload_sha256,
            )
        verified: dict[str, str] = {}
        for name, hasher in self._hashers.items():
            header = f"x-amz-checksum-{name}"
            claimed = trailers.get(header) or self._headers.get(header)
            if claimed is None:
                continue
            actual = base64.b64encode(hasher.digest()).decode()
            if actual != claimed:
                raise BadDigest(
                    f"The {name.upper()} checksum you specified ({claimed}) did not match what we "
                    f"received ({actual})",
                    field=header,
                    value=claimed,
                )
            verified[header] = actual
        return verified
