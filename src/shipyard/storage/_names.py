"""Validation of bucket names and object keys: untrusted input that becomes file paths.

A key that passes :func:`validate_key` maps to a relative path below its bucket folder that cannot
leave it: no absolute paths, no ``.``/``..`` segments, no empty segments, no NUL or control
characters, and segments short enough for the filesystem. Percent-decoding happens before (in the
protocol layer), so encoded variants such as ``%2e%2e`` arrive here as ``..`` and are refused.
"""

from __future__ import annotations

import re

from shipyard.errors import InvalidBucketName, InvalidObjectKey

MAX_KEY_BYTES = 1024
# Filesystems allow 255 bytes a name; the local store adds ".json" for an object's metadata file.
MAX_SEGMENT_BYTES = 250

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_IP_RE = re.compile(r"\d+\.\d+\.\d+\.\d+")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


def validate_bucket_name(bucket: str) -> str:
    """Return ``bucket`` if it follows S3's bucket naming rules, else raise InvalidBucketName."""
    if not _BUCKET_RE.fullmatch(bucket):
        raise InvalidBucketName(
            bucket,
            "bucket names are 3-63 characters of lowercase letters, digits, dots and hyphens, "
            "beginning and ending with a letter or digit",
        )
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        raise InvalidBucketName(bucket, "dots may not be adjacent to each other or to hyphens")
    if _IP_RE.fullmatch(bucket):
        raise InvalidBucketName(bucket, "bucket names may not look like an IP address")
    return bucket


def validate_key(key: str) -> str:
    """Return ``key`` if it is safe to store, else raise InvalidObjectKey naming the problem."""
    if not key:
        raise InvalidObjectKey(key, "keys may not be empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidObjectKey(key[:64] + "...", f"keys are limited to {MAX_KEY_BYTES} bytes")
    if _CONTROL_RE.search(key):
        raise InvalidObjectKey(key, "keys may not contain NUL or other control characters")
    if key.startswith("/"):
        raise InvalidObjectKey(key, "keys may not begin with '/' (absolute paths are refused)")
    segments = key.split("/")
    # A trailing "/" marks a folder object ("data/"): its last segment is empty.
    body = segments[:-1] if key.endswith("/") else segments
    for segment in body:
        if segment in ("", ".", ".."):
            raise InvalidObjectKey(
                key, f"keys may not contain empty, '.' or '..' path segments (found {segment!r})"
            )
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            raise InvalidObjectKey(
                key, f"each '/'-separated part of a key is limited to {MAX_SEGMENT_BYTES} bytes"
            )
    return key


def is_folder_key(key: str) -> bool:
    return key.endswith("/")
