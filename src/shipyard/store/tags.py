"""Tags of resources, by ARN."""

from __future__ import annotations

import sqlalchemy as sa

from shipyard.core.tags import Tag, merge_tags
from shipyard.store._db import Database
from shipyard.store._models import TagRow


class TagRepository:
    """Reads and writes tags; every method is one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, resource_arn: str, tags: list[Tag]) -> list[Tag]:
        """Add or overwrite tags; returns the resource's tags after the change."""
        with self._db.transaction() as session:
            self._db.lock(session, f"tags:{resource_arn}")
            rows = session.scalars(sa.select(TagRow).where(TagRow.resource_arn == resource_arn)).all()
            merged = merge_tags((Tag(r.key, r.value) for r in rows), tags)
            by_key = {r.key: r for r in rows}
            # A key given twice gets its last value, as merge_tags has it (the sagemaker SDK's
            # tuner sends its own tags and then its estimator's, keys repeated).
            for key, value in {tag.key: tag.value for tag in tags}.items():
                row = by_key.get(key)
                if row is None:
                    session.add(TagRow(resource_arn=resource_arn, key=key, value=value))
                else:
                    row.value = value
        return merged

    def tags_of(
        self, resource_arn: str, *, after_key: str | None = None, limit: int | None = None
    ) -> list[Tag]:
        """Tags in key order, starting after ``after_key``, at most ``limit``."""
        query = sa.select(TagRow).where(TagRow.resource_arn == resource_arn).order_by(TagRow.key)
        if after_key is not None:
            query = query.where(TagRow.key > after_key)
        if limit is not None:
            query = query.limit(limit)
        with self._db.transaction(readonly=True) as session:
            return [Tag(r.key, r.value) for r in session.scalars(query)]

    def delete(self, resource_arn: str, keys: list[str]) -> None:
        """Remove the given keys; keys the resource does not have are ignored, as in SageMaker."""
        with self._db.transaction() as session:
            session.execute(
                sa.delete(TagRow).where(TagRow.resource_arn == resource_arn, TagRow.key.in_(keys))
            )

    def replace(self, resource_arn: str, tags: list[Tag]) -> list[Tag]:
        """Make ``tags`` the resource's only tags (S3's PutBucketTagging), in one transaction."""
        merged = merge_tags((), tags)  # the limit holds
        with self._db.transaction() as session:
            self._db.lock(session, f"tags:{resource_arn}")
            session.execute(sa.delete(TagRow).where(TagRow.resource_arn == resource_arn))
            session.flush()
            for tag in merged:
                session.add(TagRow(resource_arn=resource_arn, key=tag.key, value=tag.value))
        return merged

    def delete_all(self, resource_arn: str) -> None:
        with self._db.transaction() as session:
            session.execute(sa.delete(TagRow).where(TagRow.resource_arn == resource_arn))
