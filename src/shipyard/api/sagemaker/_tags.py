"""AddTags, ListTags, DeleteTags on any SageMaker resource ARN."""

from __future__ import annotations

from typing import Any

from shipyard.api._context import RequestContext
from shipyard.core.tags import Tag


def add_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    tags = [Tag.from_wire(t) for t in params["Tags"]]
    ctx.platform.tagging.add_tags(params["ResourceArn"], tags)
    return {"Tags": [t.to_wire() for t in tags]}


def list_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    tags, next_token = ctx.platform.tagging.list_tags(
        params["ResourceArn"], next_token=params.get("NextToken"), max_results=params.get("MaxResults", 50)
    )
    return {"Tags": [t.to_wire() for t in tags], "NextToken": next_token}


def delete_tags(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.tagging.delete_tags(params["ResourceArn"], list(params["TagKeys"]))
    return {}


OPERATIONS = {"AddTags": add_tags, "ListTags": list_tags, "DeleteTags": delete_tags}
