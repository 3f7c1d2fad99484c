"""Tags on resources (AddTags, ListTags, DeleteTags; S3's bucket tagging).

The tag ``shipyard:group`` (core.identity.SHARE_TAG) shares a resource with the group it names:
setting it, or removing it, tells the ``sharing`` port (the identity service) before the tags
change, so an unknown group refuses the change.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Protocol

from shipyard.core.arn import Arn
from shipyard.core.identity import SHARE_TAG
from shipyard.core.pagination import decode_token, encode_token
from shipyard.core.tags import Tag
from shipyard.errors import NotFoundError, ValidationError
from shipyard.store import TagRepository


class Sharing(Protocol):
    def share(self, resource_arn: str, group: str | None) -> None:
        """Share the resource with ``group`` (None: with none). Raises ValidationError for a
        name that cannot be a group's, NotFoundError for a group that does not exist."""
        ...

    def group(self, name: str) -> object:
        """The group named so. Raises NotFoundError when there is none."""
        ...


class TaggingService:
    """``on_change(arn)`` is called after a resource's tags change (the cost ledger follows them);
    ``sharing`` is told of the share tag (None: it is a tag like any other)."""

    def __init__(
        self,
        repository: TagRepository,
        on_change: Callable[[str], None] | None = None,
        sharing: Sharing | None = None,
    ) -> None:
        self._tags = repository
        self._on_change = on_change or (lambda arn: None)
        self.sharing = sharing

    @staticmethod
    def _check_arn(resource_arn: str) -> str:
        arn = Arn.parse(resource_arn)
        if arn.service != "sagemaker" or not arn.resource_type:
            raise ValidationError(
                f"ResourceArn {resource_arn!r} is not a SageMaker resource ARN "
                "(arn:aws:sagemaker:<region>:<account>:<type>/<name>)",
                field="ResourceArn",
                value=resource_arn,
            )
        return resource_arn

    def check(self, tags: Iterable[Tag]) -> None:
        """Refuse, before a resource is created with them, tags it could not be given: a share
        tag naming no group (ValidationError naming the value)."""
        sharing = self.sharing
        for tag in tags:
            if tag.key == SHARE_TAG and sharing is not None:
                _named_group(tag.value, functools.partial(sharing.group, tag.value))

    def add_tags(self, resource_arn: str, tags: list[Tag]) -> list[Tag]:
        self._check_arn(resource_arn)
        self.check(tags)
        added = self._tags.add(resource_arn, tags)
        self._share(resource_arn, tags)
        self._on_change(resource_arn)
        return added

    def list_tags(
        self, resource_arn: str, *, next_token: str | None = None, max_results: int = 50
    ) -> tuple[list[Tag], str | None]:
        after = decode_token(next_token)["after"] if next_token else None
        tags = self._tags.tags_of(self._check_arn(resource_arn), after_key=after, limit=max_results + 1)
        if len(tags) > max_results:
            tags = tags[:max_results]
            return tags, encode_token({"after": tags[-1].key})
        return tags, None

    def delete_tags(self, resource_arn: str, keys: list[str]) -> None:
        self._check_arn(resource_arn)
        if SHARE_TAG in keys and self.sharing is not None:
            self.sharing.share(resource_arn, None)
        self._tags.delete(resource_arn, keys)
        self._on_change(resource_arn)

    def tags_of(self, resource_arn: str) -> list[Tag]:
        return self._tags.tags_of(resource_arn)

    def set_tags(self, resource_arn: str, tags: list[Tag]) -> None:
        """Replace every tag of a resource (S3's PutBucketTagging; an empty list removes them),
        the share tag's group shared or unshared as it comes or goes."""
        before = {t.key: t.value for t in self._tags.tags_of(resource_arn)}
        after = {t.key: t.value for t in tags}
        self.check(tags)
        self._tags.replace(resource_arn, tags)
        if before.get(SHARE_TAG) != after.get(SHARE_TAG) and self.sharing is not None:
            if SHARE_TAG in after:
                self._share(resource_arn, tags)
            else:
                self.sharing.share(resource_arn, None)
        self._on_change(resource_arn)

    def clear(self, resource_arn: str) -> None:
        """Forget every tag of a deleted resource (a deleted bucket's)."""
        self._tags.delete_all(resource_arn)

    def _share(self, resource_arn: str, tags: Iterable[Tag]) -> None:
        sharing = self.sharing
        for tag in tags:
            if tag.key == SHARE_TAG and sharing is not None:
                _named_group(tag.value, functools.partial(sharing.share, resource_arn, tag.value))


def _named_group(value: str, act: Callable[[], object]) -> None:
    """``act`` on the group a share tag names; ValidationError naming the value when there is
    no such group (or it cannot be a group's name)."""
    try:
        act()
    except (NotFoundError, ValidationError):
        raise ValidationError(
            f"The tag {SHARE_TAG} shares a resource with a group of this server; its value {value!r} "
            "names none (the administrator makes groups: IAM CreateGroup)",
            field=f"Tags.{SHARE_TAG}",
            value=value,
        ) from None
