"""AWS's event stream framing (``application/vnd.amazon.eventstream``), the writing side.

InvokeEndpointWithResponseStream answers with a stream of these messages, which botocore's
``EventStream`` parses. A message is a prelude (its total length, its headers' length, their
CRC32), its headers (a name of one length byte, type 7: a string of two length bytes), its
payload, and a CRC32 of all before. SageMaker Runtime's events are ``PayloadPart`` (the payload is
the part's bytes) and the exceptions ``ModelStreamError`` and ``InternalStreamFailure`` (a JSON
payload of the shape's members).
"""

from __future__ import annotations

import json
import struct
import zlib

_STRING = 7


def message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event stream message."""
    encoded = b""
    for name, value in headers.items():
        key, data = name.encode("utf-8"), value.encode("utf-8")
        encoded += struct.pack("!B", len(key)) + key + struct.pack("!BH", _STRING, len(data)) + data
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    body = prelude + struct.pack("!I", zlib.crc32(prelude)) + encoded + payload
    return body + struct.pack("!I", zlib.crc32(body))


def payload_part(part: bytes) -> bytes:
    """A ``PayloadPart`` event carrying ``part``."""
    return message(
        {":event-type": "PayloadPart", ":content-type": "application/octet-stream", ":message-type": "event"},
        part,
    )


def stream_exception(kind: str, message_text: str, **members: str) -> bytes:
    """An exception event (``ModelStreamError``, ``InternalStreamFailure``): botocore raises it
    from the stream as an ``EventStreamError`` with this code and message."""
    return message(
        {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
        json.dumps({"Message": message_text, **members}).encode(),
    )
