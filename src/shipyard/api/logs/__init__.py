"""CloudWatch Logs (AWS JSON 1.1, ``X-Amz-Target: Logs_20140328.<Operation>``): job logs."""

from __future__ import annotations

from typing import Any

from shipyard import errors
from shipyard.api._body import LOGS_JSON_LIMIT
from shipyard.api._context import RequestContext
from shipyard.api._json import ErrorTypes, JsonApi, Operation
from shipyard.api._ownership import JOB_LOG_GROUPS
from shipyard.core.arn import sagemaker_arn
from shipyard.schema import ServiceSchema
from shipyard.services.logs import LogStream

LOGS_ERRORS: ErrorTypes = [
    (errors.ValidationError, "InvalidParameterException", 400),
    (errors.NotFoundError, "ResourceNotFoundException", 400),
    (errors.NotImplementedOperation, "NotImplementedException", 400),
]


def _group(params: dict[str, Any]) -> str:
    """The log group a request names: logGroupName, or logGroupIdentifier (a name or its ARN);
    botocore's model makes both optional, so each call checks it has one."""
    if name := params.get("logGroupName"):
        return str(name)
    identifier = str(params.get("logGroupIdentifier") or "")
    if not identifier:
        raise errors.ValidationError(
            "logGroupName or logGroupIdentifier is required", field="logGroupName", value=None
        )
    if identifier.startswith("arn:"):  # arn:aws:logs:<region>:<account>:log-group:<name>[:*]
        identifier = identifier.partition(":log-group:")[2].removesuffix(":*")
    return identifier


def _visible(ctx: RequestContext, group: str, streams: list[LogStream]) -> list[LogStream]:
    """The streams of the jobs the caller reaches (its own, its groups' shared ones, the lab's):
    a job log group holds every user's jobs' streams, ``<job>/<instance>``."""
    caller, kind = ctx.caller, JOB_LOG_GROUPS.get(group)
    if caller.is_administrator or caller.user is None or kind is None or not streams:
        return streams
    arns = {s.name: sagemaker_arn(ctx.region, ctx.account_id, kind, s.name.split("/", 1)[0]) for s in streams}
    reach = ctx.platform.identity.reachable(caller, set(arns.values()))
    return [s for s in streams if reach[arns[s.name]]]


def describe_log_streams(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    group = _group(params)
    streams = _visible(ctx, group, ctx.platform.logs.streams(group, params.get("logStreamNamePrefix", "")))
    if params.get("orderBy") == "LastEventTime":
        streams = sorted(streams, key=lambda s: s.describe().get("lastEventTimestamp", 0))
    if params.get("descending"):
        streams = list(reversed(streams))
    start = int(params.get("nextToken") or 0) if str(params.get("nextToken") or "0").isdigit() else 0
    limit = params.get("limit", 50)
    page = streams[start : start + limit]
    more = start + limit < len(streams)
    return {"logStreams": [s.describe() for s in page], "nextToken": str(start + limit) if more else None}


def get_log_events(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    events, start, end = ctx.platform.logs.get_events(
        _group(params),
        params["logStreamName"],
        token=params.get("nextToken"),
        start_time=params.get("startTime"),
        end_time=params.get("endTime"),
        limit=params.get("limit", 10_000),
        start_from_head=params.get("startFromHead", False),
    )
    return {
        "events": [e.to_wire() for e in events],
        "nextForwardToken": f"f/{end}",
        "nextBackwardToken": f"b/{start}",
    }


def filter_log_events(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    group = _group(params)
    names = params.get("logStreamNames")
    if group in JOB_LOG_GROUPS and not ctx.caller.is_administrator and ctx.caller.user is not None:
        streams = ctx.platform.logs.streams(group, params.get("logStreamNamePrefix", ""))
        names = [s.name for s in _visible(ctx, group, streams) if not names or s.name in names]
        if not names:
            return {"events": [], "nextToken": None}
    found, token = ctx.platform.logs.filter_events(
        group,
        stream_names=names,
        prefix=params.get("logStreamNamePrefix", ""),
        pattern=params.get("filterPattern", ""),
        start_time=params.get("startTime"),
        end_time=params.get("endTime"),
        token=params.get("nextToken"),
        limit=params.get("limit", 10_000),
    )
    return {
        "events": [
            {"logStreamName": stream, "eventId": f"{stream}/{e.offset}", **e.to_wire()} for stream, e in found
        ],
        "nextToken": token,
    }


OPERATIONS: dict[str, Operation] = {
    "DescribeLogStreams": describe_log_streams,
    "GetLogEvents": get_log_events,
    "FilterLogEvents": filter_log_events,
}


def logs_api() -> JsonApi:
    return JsonApi(
        "CloudWatch Logs", ServiceSchema.load("logs"), OPERATIONS, LOGS_ERRORS, max_body=LOGS_JSON_LIMIT
    )
