"""Listing helpers shared by object store implementations."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from shipyard.storage._base import ObjectInfo


def collapse_delimited(
    entries: Iterable[ObjectInfo | str], prefix: str, delimiter: str
) -> Iterator[ObjectInfo | str]:
    """Group keys that contain ``delimiter`` after ``prefix`` into common prefixes, as S3 does.

    ``entries`` must be in key order; each common prefix is yielded once, where its first key was.
    """
    last_prefix: str | None = None
    for entry in entries:
        key = entry if isinstance(entry, str) else entry.key
        cut = key.find(delimiter, len(prefix))
        if cut < 0:
            yield entry
            continue
        common = key[: cut + len(delimiter)]
        if common != last_prefix:
            last_prefix = common
            yield common
