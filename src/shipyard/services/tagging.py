"""Tags on resources (AddTags, ListTags, DeleteTags)."""

from __future__ import annotations

from collections.abc import Callable

from shipyard.core.arn import Arn
from shipyard.core.pagination import decode_token, encode_token
from shipyard.core.tags import Tag
from shipyard.errors import ValidationError
from shipyard.store import TagRepository


class TaggingService:
    """``on_change(arn)`` is called after a resource's tags change (the cost ledger follows them)."""

    def __init__(self, repository: TagRepository, on_change: Callable[[str], None] | None = None) -> None:
        self._tags = repository
        self._on_change = on_change or (lambda arn: None)

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

    def add_tags(self, resource_arn: str, tags: list[Tag]) -> list[Tag]:
        added = self._tags.add(self._check_arn(resource_arn), tags)
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
        self._tags.delete(self._check_arn(resource_arn), keys)
        self._on_change(resource_arn)

    def tags_of(self, resource_arn: str) -> list[Tag]:
        return self._tags.tags_of(resource_arn)
