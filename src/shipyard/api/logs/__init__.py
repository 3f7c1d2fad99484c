"""CloudWatch Logs (AWS JSON 1.1, ``X-Amz-Target: Logs_20140328.<Operation>``): job logs."""

from __future__ import annotations

from typing import Any

from shipyard import errors
from shipyard.api._context import RequestContext
from shipyard.api._json import ErrorTypes, JsonApi, Operation
from shipyard.schema import ServiceSchema

LOGS_ERRORS: ErrorTypes = [
    (errors.ValidationError, "InvalidParameterException", 400),
    (errors.NotFoundError, "ResourceNotFoundException", 400),
    (errors.NotImplementedOperation, "NotImplementedException", 400),
]


def describe_log_streams(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    streams = ctx.platform.logs.streams(params["logGroupName"], params.get("logStreamNamePrefix", ""))
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
        params["logGroupName"],
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
    found, token = ctx.platform.logs.filter_events(
        params["logGroupName"],
        stream_names=params.get("logStreamNames"),
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
    return JsonApi("CloudWatch Logs", ServiceSchema.load("logs"), OPERATIONS, LOGS_ERRORS)
