"""Opaque pagination tokens (NextToken): what a list call needs to resume, tamper-evident enough;
and :class:`Page`, the one way a list call pages by offset."""

from __future__ import annotations

import base64
import dataclasses
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


@dataclasses.dataclass(frozen=True)
class Page:
    """One page of a list call that pages by offset: where it starts and how many it holds.

    Every offset-paged list (SageMaker's, Application Auto Scaling's) works the same way: the
    NextToken carries the offset of the next page, and a page is known to be the last when fewer
    than ``size + 1`` items were found from its offset. Build one with :meth:`requested` (from a
    request's ``NextToken`` and ``MaxResults``) or :meth:`at`; then either read :attr:`limit`
    items from :attr:`offset` (a query) and hand them to :meth:`cut`, or hand a whole list to
    :meth:`slice`. Both return the page's items and the next page's token (None on the last page).

        page = Page.requested(params, default_size=10)
        found = repository.find(..., offset=page.offset, limit=page.limit)
        items, token = page.cut(found)
    """

    offset: int = 0
    size: int = 10

    @classmethod
    def requested(cls, params: Mapping[str, Any], *, default_size: int) -> Page:
        """The page a request asks for: its ``NextToken`` and ``MaxResults`` (else ``default_size``).

        Raises:
            ValidationError: The token was not made by :meth:`cut` or :meth:`slice`.
        """
        return cls.at(params.get("NextToken"), int(params.get("MaxResults") or default_size))

    @classmethod
    def at(cls, next_token: str | None, size: int) -> Page:
        """The page ``next_token`` points at (the first page without one), of ``size`` items.

        Raises:
            ValidationError: The token was not made by :meth:`cut` or :meth:`slice`.
        """
        if not next_token:
            return cls(0, size)
        offset = decode_token(next_token).get("offset", 0)
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValidationError(
                f"Invalid pagination token NextToken={next_token!r}: pass back the token a previous call "
                "returned",
                field="NextToken",
                value=next_token,
            )
        return cls(offset, size)

    @property
    def limit(self) -> int:
        """How many items to read from :attr:`offset`: one more than the page holds, which tells
        whether another page follows."""
        return self.size + 1

    def cut(self, found: Sequence[T]) -> tuple[list[T], str | None]:
        """The page from ``found`` (at most :attr:`limit` items read from :attr:`offset`), and the
        next page's token (None when this is the last page)."""
        if len(found) > self.size:
            return list(found[: self.size]), encode_token({"offset": self.offset + self.size})
        return list(found), None

    def slice(self, items: Sequence[T]) -> tuple[list[T], str | None]:
        """The page of a whole list, and the next page's token (None when this is the last page)."""
        return self.cut(items[self.offset : self.offset + self.limit])
