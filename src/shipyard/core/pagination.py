"""Opaque pagination tokens (NextToken): what a list call needs to resume, tamper-evident enough."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from shipyard.errors import ValidationError

T = TypeVar("T")


def encode_token(state: dict[str, Any]) -> str:
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, *, field: str = "NextToken") -> dict[str, Any]:
    """Decode a token made by :func:`encode_token`; a token from elsewhere is a ValidationError."""
    try:
        padded = token + "=" * (-len(token) % 4)
        state = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(state, dict):
            raise ValueError
        return state
    except ValueError:
        raise ValidationError(
            f"Invalid pagination token {field}={token!r}: pass back the token a previous call returned",
            field=field,
            value=token,
        ) from None


def page_of(params: Mapping[str, Any], *, default_size: int) -> tuple[int, int]:
    """The offset (from NextToken) and page size (MaxResults) a list call asks for."""
    token = params.get("NextToken")
    offset = int(decode_token(token).get("offset", 0)) if token else 0
    return offset, int(params.get("MaxResults") or default_size)


def paged(found: Sequence[T], offset: int, size: int) -> tuple[list[T], str | None]:
    """A page from ``found`` (up to ``size + 1`` items read from ``offset``) and the next token."""
    if len(found) > size:
        return list(found[:size]), encode_token({"offset": offset + size})
    return list(found), None
