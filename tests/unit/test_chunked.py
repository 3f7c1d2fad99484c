import base64
import zlib

import pytest

from shipyard.api.s3._chunked import AwsChunkedDecoder, BodyChecksums
from shipyard.errors import BadDigest, ValidationError


def _encode(data: bytes, chunk: int, signed: bool) -> bytes:
    out = b""
    for i in range(0, len(data), chunk):
        piece = data[i : i + chunk]
        out += f"{len(piece):x}".encode() + (b";chunk-signature=" + b"0" * 64 if signed else b"") + b"\r\n"
        out += piece + b"\r\n"
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    return out + b"0\r\n" + f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode()


@pytest.mark.parametrize("signed", [False, True])
def test_decoder_survives_every_split_point(signed: bool) -> None:
    data = bytes(range(256)) * 3
    body = _encode(data, 100, signed)
    for split in range(1, len(body), 7):
        decoder = AwsChunkedDecoder()
        out = b"".join(decoder.feed(body[:split]) + decoder.feed(body[split:]))
        decoder.finish()
        assert out == data
        assert "x-amz-checksum-crc32" in decoder.trailers


def test_truncated_body_is_an_error() -> None:
    decoder = AwsChunkedDecoder()
    decoder.feed(_encode(b"abc" * 100, 50, False)[:-40])
    with pytest.raises(ValidationError, match="ended before its final chunk"):
        decoder.finish()


def test_trailer_checksum_is_verified() -> None:
    data = b"hello"
    decoder = AwsChunkedDecoder()
    decoder.feed(_encode(data, 10, False))
    headers = {"x-amz-trailer": "x-amz-checksum-crc32", "content-encoding": "aws-chunked"}
    checksums = BodyChecksums(headers)
    checksums.update(data)
    assert checksums.verify(decoder.trailers)["x-amz-checksum-crc32"]
    bad = BodyChecksums(headers)
    bad.update(b"hellO")
    with pytest.raises(BadDigest, match="CRC32"):
        bad.verify(decoder.trailers)
