"""SageMaker lineage: artifacts and associations (services/lineage.py)."""

from __future__ import annotations

from typing import Any

from shipyard.api._context import RequestContext
from shipyard.api.sagemaker._experiments import _caller, _tag, _visible
from shipyard.services.lineage import artifact_document


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


OPERATIONS = {
    "CreateArtifact": create_artifact,
    "DescribeArtifact": describe_artifact,
    "UpdateArtifact": update_artifact,
    "DeleteArtifact": delete_artifact,
    "ListArtifacts": list_artifacts,
    "AddAssociation": add_association,
    "DeleteAssociation": delete_association,
    "ListAssociations": list_associations,
}
