"""Tags on resources (AddTags, ListTags, DeleteTags)."""

from __future__ import annotations

from shipyard.core.arn import Arn
from shipyard.core.pagination import decode_token, encode_token
from shipyard.core.tags import Tag
from shipyard.errors import ValidationError
from shipyard.store import TagRepository


class TaggingService:
    def __init__(self, repository: TagRepository) -> None:
        self._tags = repository

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
        return self._tags.add(self._check_arn(resource_arn), tags)

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

    def tags_of(self, resource_arn: str) -> list[Tag]:
        return self._tags.tags_of(resource_arn)
