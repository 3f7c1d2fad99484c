"""Notebook instances: Create/Describe/List/Start/Stop/Update/Delete and the presigned URL."""

from __future__ import annotations

from typing import Any

from shipyard.api._context import RequestContext
from shipyard.api.sagemaker._ownership import visible
from shipyard.core.notebooks import NotebookInstance
from shipyard.core.tags import Tag


def _describe(notebook: NotebookInstance) -> dict[str, Any]:
    request = notebook.request
    answer: dict[str, Any] = {
        "NotebookInstanceArn": notebook.arn,
        "NotebookInstanceName": notebook.name,
        "NotebookInstanceStatus": notebook.status.value,
        "InstanceType": notebook.instance_type,
        "RoleArn": notebook.role_arn,
        "VolumeSizeInGB": notebook.volume_gb,
        "DirectInternetAccess": request.get("DirectInternetAccess", "Enabled"),
        "RootAccess": request.get("RootAccess", "Enabled"),
        "PlatformIdentifier": request.get("PlatformIdentifier", "notebook-al2-v3"),
        "CreationTime": notebook.created,
        "LastModifiedTime": notebook.last_modified,
    }
    if notebook.url:
        answer["Url"] = notebook.url.removeprefix("http://")
    if notebook.failure_reason:
        answer["FailureReason"] = notebook.failure_reason
    for member in ("SubnetId", "SecurityGroupIds", "KmsKeyId", "InstanceMetadataServiceConfiguration"):
        if request.get(member):
            answer[member] = request[member]
    return answer


def create_notebook_instance(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    notebook = ctx.platform.notebooks.create(params, region=ctx.region, owner=ctx.owner)
    if params.get("Tags"):
        ctx.platform.tagging.add_tags(notebook.arn, [Tag.from_wire(t) for t in params["Tags"]])
    return {"NotebookInstanceArn": notebook.arn}


def describe_notebook_instance(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return _describe(ctx.platform.notebooks.get(params["NotebookInstanceName"]))


def list_notebook_instances(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    found, token = ctx.platform.notebooks.find(params)
    found = visible(ctx, found, lambda n: n.arn, "sagemaker:DescribeNotebookInstance")
    items = []
    for notebook in found:
        item = {
            key: value
            for key, value in _describe(notebook).items()
            if key
            in (
                "NotebookInstanceName",
                "NotebookInstanceArn",
                "NotebookInstanceStatus",
                "Url",
                "InstanceType",
                "CreationTime",
                "LastModifiedTime",
            )
        }
        items.append(item)
    return {"NotebookInstances": items, "NextToken": token}


def start_notebook_instance(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.notebooks.start_instance(params["NotebookInstanceName"])
    return {}


def stop_notebook_instance(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.notebooks.stop_instance(params["NotebookInstanceName"])
    return {}


def delete_notebook_instance(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.notebooks.delete(params["NotebookInstanceName"])
    return {}


def update_notebook_instance(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.notebooks.update(params)
    return {}


def create_presigned_notebook_instance_url(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    url = ctx.platform.notebooks.presigned_url(
        params["NotebookInstanceName"], params.get("SessionExpirationDurationInSeconds")
    )
    return {"AuthorizedUrl": url}


OPERATIONS = {
    "CreateNotebookInstance": create_notebook_instance,
    "DescribeNotebookInstance": describe_notebook_instance,
    "ListNotebookInstances": list_notebook_instances,
    "StartNotebookInstance": start_notebook_instance,
    "StopNotebookInstance": stop_notebook_instance,
    "DeleteNotebookInstance": delete_notebook_instance,
    "UpdateNotebookInstance": update_notebook_instance,
    "CreatePresignedNotebookInstanceUrl": create_presigned_notebook_instance_url,
}
