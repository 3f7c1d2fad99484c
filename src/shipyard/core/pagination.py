"""Opaque pagination tokens (NextToken): what a list call needs to resume, tamper-evident enough."""

from __future__ import annotations

import base64
import json
from typing import Any

from shipyard.errors import ValidationError


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
