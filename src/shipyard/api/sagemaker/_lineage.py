"""SageMaker lineage: artifacts, contexts, actions, associations and QueryLineage
(services/lineage.py)."""

from __future__ import annotations

from typing import Any

from shipyard.api._context import RequestContext
from shipyard.api.sagemaker._experiments import _caller, _tag, _visible
from shipyard.core.experiments import EntityKind
from shipyard.services.lineage import artifact_document, named_document

CONTEXT, ACTION = EntityKind.CONTEXT, EntityKind.ACTION
_SUMMARIES = {
    CONTEXT: ("ContextArn", "ContextName", "Source", "ContextType", "CreationTime", "LastModifiedTime"),
    ACTION: ("ActionArn", "ActionName", "Source", "ActionType", "Status", "CreationTime", "LastModifiedTime"),
}


def create_artifact(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    artifact = ctx.platform.lineage.create_artifact(params, _caller(ctx))
    _tag(ctx, artifact, params)
    return {"ArtifactArn": artifact.arn}


def describe_artifact(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return artifact_document(ctx.platform.lineage.artifact(params["ArtifactArn"]))


def update_artifact(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"ArtifactArn": ctx.platform.lineage.update_artifact(params).arn}


def delete_artifact(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    artifact = ctx.platform.lineage.delete_artifact(params)
    ctx.platform.tagging.clear(artifact.arn)
    return {"ArtifactArn": artifact.arn}


def list_artifacts(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    found, token = ctx.platform.lineage.list_artifacts(params)
    found = _visible(ctx, found, lambda a: a.arn, "sagemaker:DescribeArtifact")
    members = ("ArtifactArn", "ArtifactName", "Source", "ArtifactType", "CreationTime", "LastModifiedTime")
    summaries = [{k: d.get(k) for k in members} for d in map(artifact_document, found)]
    return {"ArtifactSummaries": summaries, "NextToken": token}


# -- contexts and actions -------------------------------------------------------------------------
def _create(kind: EntityKind) -> Any:
    def create(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        entity = ctx.platform.lineage.create_named(kind, params, _caller(ctx))
        _tag(ctx, entity, params)
        return {f"{kind.label}Arn": entity.arn}

    return create


def _describe(kind: EntityKind) -> Any:
    def describe(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return named_document(ctx.platform.lineage.named(kind, params[kind.name_member], ctx.region))

    return describe


def _update(kind: EntityKind) -> Any:
    def update(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        return {f"{kind.label}Arn": ctx.platform.lineage.update_named(kind, params, ctx.region).arn}

    return update


def _delete(kind: EntityKind) -> Any:
    def delete(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        entity = ctx.platform.lineage.delete_named(kind, params[kind.name_member], ctx.region)
        ctx.platform.tagging.clear(entity.arn)
        return {f"{kind.label}Arn": entity.arn}

    return delete


def _list(kind: EntityKind) -> Any:
    def list_(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        found, token = ctx.platform.lineage.list_named(kind, params)
        found = _visible(ctx, found, lambda e: e.arn, f"sagemaker:Describe{kind.label}")
        summaries = [{k: d.get(k) for k in _SUMMARIES[kind]} for d in map(named_document, found)]
        return {f"{kind.label}Summaries": summaries, "NextToken": token}

    return list_


# -- associations and queries ---------------------------------------------------------------------
def add_association(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.lineage.add_association(params, _caller(ctx))
    return {"SourceArn": params["SourceArn"], "DestinationArn": params["DestinationArn"]}


def delete_association(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.lineage.delete_association(params["SourceArn"], params["DestinationArn"])
    return {"SourceArn": params["SourceArn"], "DestinationArn": params["DestinationArn"]}


def list_associations(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    found, token = ctx.platform.lineage.list_associations(params)
    # Both ends must be the caller's to see: an association says something about each.
    found = _visible(ctx, found, lambda a: str(a["SourceArn"]), "sagemaker:ListAssociations")
    found = _visible(ctx, found, lambda a: str(a["DestinationArn"]), "sagemaker:ListAssociations")
    return {"AssociationSummaries": found, "NextToken": token}


def query_lineage(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    """QueryLineage: vertices the caller may not reach are left out, and the edges to them."""

    def visible(arns: list[str]) -> list[str]:
        return _visible(ctx, arns, lambda a: a, "sagemaker:QueryLineage")

    result, token = ctx.platform.lineage.query(params, ctx.region, visible)
    include_source = bool(params.get("IncludeSource"))
    return {
        "Vertices": [v.to_wire(include_source=include_source) for v in result.vertices],
        "Edges": [e.to_wire() for e in result.edges],
        "NextToken": token,
    }


OPERATIONS = {
    "CreateArtifact": create_artifact,
    "DescribeArtifact": describe_artifact,
    "UpdateArtifact": update_artifact,
    "DeleteArtifact": delete_artifact,
    "ListArtifacts": list_artifacts,
    "AddAssociation": add_association,
    "DeleteAssociation": delete_association,
    "ListAssociations": list_associations,
    "QueryLineage": query_lineage,
    **{
        f"{verb}{kind.label}{'s' if verb == 'List' else ''}": make(kind)
        for kind in (CONTEXT, ACTION)
        for verb, make in (
            ("Create", _create),
            ("Describe", _describe),
            ("Update", _update),
            ("Delete", _delete),
            ("List", _list),
        )
    },
}
