"""Who owns a bucket, and its tags (Get/Put/DeleteBucketTagging).

CreateBucket records its creator (the sagemaker SDK's default bucket, ``sagemaker-<region>-
<account>``, is the lab's whoever makes it, as it is the whole account's in AWS); DeleteBucket
forgets the record and the tags. ListBuckets shows what the caller reaches: its own, the lab's
and those shared with its groups. A bucket is shared by its ``shipyard:group`` tag, which only
its owner (or an administrator) may set, change or remove.
"""

from __future__ import annotations

from typing import Any

from shipyard import errors
from shipyard.api.s3._errors import _S3CodedError
from shipyard.api.s3._xml import element, leaf, parse_xml
from shipyard.core.credentials import Principal
from shipyard.core.identity import SHARE_TAG, is_lab_bucket
from shipyard.core.tags import MAX_TAGS_PER_RESOURCE, Tag
from shipyard.services.identity import IdentityService, reaches
from shipyard.services.tagging import TaggingService
from shipyard.storage import BucketInfo


def bucket_arn(bucket: str) -> str:
    return f"arn:aws:s3:::{bucket}"


class BucketOwnership:
    """The S3 API's port onto the identity and tagging services (blocking: call it from a
    worker thread)."""

    def __init__(self, identity: IdentityService, tagging: TaggingService) -> None:
        self.identity = identity
        self.tagging = tagging

    def created(self, bucket: str, caller: Principal) -> None:
        owner = None if is_lab_bucket(bucket, self.identity.account_id) else caller.user
        self.identity.claim_for(bucket_arn(bucket), owner)

    def taken_by_another(self, bucket: str, caller: Principal) -> bool:
        """Whether an existing bucket is another user's (CreateBucket answers BucketAlreadyExists,
        not BucketAlreadyOwnedByYou)."""
        if caller.is_administrator or caller.user is None:
            return False
        record = self.identity.owners([bucket_arn(bucket)])[bucket_arn(bucket)]
        return record is not None and record.owner is not None and record.owner != caller.user

    def deleted(self, bucket: str) -> None:
        self.identity.forget(bucket_arn(bucket))
        self.tagging.clear(bucket_arn(bucket))

    def visible(self, buckets: list[BucketInfo], caller: Principal) -> list[BucketInfo]:
        if caller.is_administrator or caller.user is None or not buckets:
            return buckets
        owners = self.identity.owners(bucket_arn(b.name) for b in buckets)
        return [b for b in buckets if reaches(caller, owners[bucket_arn(b.name)])]

    def tags(self, bucket: str) -> list[Tag]:
        return self.tagging.tags_of(bucket_arn(bucket))

    def set_tags(self, bucket: str, tags: list[Tag], caller: Principal, action: str) -> None:
        """Replace the bucket's tags; a change of its share tag takes its owner."""
        arn = bucket_arn(bucket)
        before = {t.key: t.value for t in self.tagging.tags_of(arn)}.get(SHARE_TAG)
        after = {t.key: t.value for t in tags}.get(SHARE_TAG)
        if before != after and not caller.is_administrator:
            record = self.identity.owners([arn])[arn]
            if (record.owner if record is not None else None) != caller.user:
                raise errors.AccessDenied(
                    caller.arn,
                    action,
                    arn,
                    f"only the owner of a bucket (or an administrator) may set or remove its {SHARE_TAG} tag",
                )
        try:
            self.tagging.set_tags(arn, tags)
        except errors.ValidationError as exc:
            raise _S3CodedError("InvalidTag", exc.message, field=exc.field, value=exc.value) from None


def parse_tagging(body: bytes) -> list[Tag]:
    """A PutBucketTagging document's tags, as S3 checks them (InvalidTag, MalformedXML)."""
    root = parse_xml(body, "Tagging")
    if root.tag != "Tagging" or root.find("TagSet") is None:
        raise errors.ValidationError(
            "MalformedXML: expected a Tagging document with a TagSet", field="Tagging"
        )
    tags: list[Tag] = []
    seen: set[str] = set()
    for node in root.find("TagSet") or ():
        if node.tag != "Tag":
            continue
        key, value = node.findtext("Key"), node.findtext("Value")
        if key is None or value is None:
            raise errors.ValidationError("MalformedXML: every Tag needs a Key and a Value", field="Tag")
        if key in seen:
            raise _S3CodedError(
                "InvalidTag",
                f"Cannot provide multiple Tags with the same key: {key!r}",
                field="Key",
                value=key,
            )
        seen.add(key)
        try:
            tags.append(Tag(key, value))
        except errors.ValidationError as exc:
            raise _S3CodedError("InvalidTag", exc.message, field=exc.field, value=exc.value) from None
    if len(tags) > MAX_TAGS_PER_RESOURCE:
        raise _S3CodedError(
            "BadRequest",
            f"Bucket tag count cannot be greater than {MAX_TAGS_PER_RESOURCE}; got {len(tags)}",
            field="TagSet",
            value=len(tags),
        )
    return tags


def tagging_document(tags: list[Tag]) -> Any:
    return element(
        "Tagging",
        [element("TagSet", [element("Tag", [leaf("Key", t.key), leaf("Value", t.value)]) for t in tags])],
        ns=True,
    )
