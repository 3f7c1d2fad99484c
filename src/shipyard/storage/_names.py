"""Validation of bucket names and object keys, as S3 defines them.

A key is any text of 1 to 1,024 bytes of UTF-8, as in S3: ``a/../b``, ``/x``, ``a//b``, ``%`` and
control characters included. Keys never become paths as they are: the local store writes each one
through :mod:`shipyard.storage._layout`, which keeps every key below its bucket folder; code that
makes a path of a key itself (a job's inputs) checks it there.
"""

from __future__ import annotations

import re

from shipyard.errors import InvalidBucketName, InvalidObjectKey

MAX_KEY_BYTES = 1024

_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]")
_IP_RE = re.compile(r"\d+\.\d+\.\d+\.\d+")


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
    """Return ``key`` if S3 would store it, else raise InvalidObjectKey naming the problem."""
    if not key:
        raise InvalidObjectKey(key, "keys may not be empty")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidObjectKey(
            key[:64], "keys must be text that UTF-8 can encode (found a lone surrogate)"
        ) from None
    if size > MAX_KEY_BYTES:
        raise InvalidObjectKey(
            key[:64] + "...", f"keys are limited to {MAX_KEY_BYTES} bytes of UTF-8, got {size}"
        )
    return key


def is_folder_key(key: str) -> bool:
    return key.endswith("/")
