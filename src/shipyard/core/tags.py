"""Tags: key/value labels on any resource, used for search and cost allocation."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any

from shipyard.errors import LimitExceededError, ValidationError

MAX_TAGS_PER_RESOURCE = 50
_KEY_RE = re.compile(r"^([\w\s.:/=+\-@]*)$", re.UNICODE)


@dataclasses.dataclass(frozen=True)
class Tag:
    key: str
    value: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.key) <= 128 or not _KEY_RE.match(self.key):
            raise ValidationError(
                f"Tag key {self.key!r} is invalid: 1-128 letters, digits, spaces and _.:/=+-@",
                field="Tags.Key",
                value=self.key,
            )
        if self.key.lower().startswith("aws:"):
            raise ValidationError(
                f"Tag key {self.key!r} is invalid: the 'aws:' prefix is reserved",
                field="Tags.Key",
                value=self.key,
            )
        if len(self.value) > 256 or not _KEY_RE.match(self.value):
            raise ValidationError(
                f"Tag value {self.value!r} for key {self.key!r} is invalid: up to 256 letters, digits, "
                "spaces and _.:/=+-@",
                field="Tags.Value",
                value=self.value,
            )

    @classmethod
    def from_wire(cls, item: Mapping[str, Any]) -> Tag:
        return cls(str(item["Key"]), str(item.get("Value", "")))

    def to_wire(self) -> dict[str, str]:
        return {"Key": self.key, "Value": self.value}


def merge_tags(existing: Iterable[Tag], new: Iterable[Tag]) -> list[Tag]:
    """Apply AddTags: new values replace old ones of the same key; the resource limit holds."""
    merged = {t.key: t for t in existing}
    for tag in new:
        merged[tag.key] = tag
    if len(merged) > MAX_TAGS_PER_RESOURCE:
        raise LimitExceededError(
            f"A resource can have at most {MAX_TAGS_PER_RESOURCE} tags; this request would give it "
            f"{len(merged)}"
        )
    return sorted(merged.values(), key=lambda t: t.key)
