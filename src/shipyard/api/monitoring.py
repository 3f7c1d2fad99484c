"""CloudWatch metrics (``X-Amz-Target: GraniteServiceVersion20100801.<Operation>``, JSON 1.0 as
botocore sends it): GetMetricStatistics over instance utilization (CPUUtilization,
MemoryUtilization, DiskUtilization in ``/aws/sagemaker/{Training,Processing,Transform}Jobs`` by
Host, ``/aws/sagemaker/Endpoints`` by EndpointName and VariantName), endpoint metrics (namespace ``AWS/SageMaker``,
dimensions EndpointName and VariantName) and training job metrics (namespace
``/aws/sagemaker/TrainingJobs``, dimension TrainingJobName, as the sagemaker SDK's
TrainingJobAnalytics asks, or Host ``<job>/algo-1``, as the console's charts do).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from shipyard import errors
from shipyard.api._context import RequestContext
from shipyard.api._json import ErrorTypes, JsonApi, Operation
from shipyard.schema import ServiceSchema
from shipyard.services.endpoint_metrics import COUNTS, LATENCIES, Statistics

CLOUDWATCH_ERRORS: ErrorTypes = [
    (errors.ValidationError, "InvalidParameterValue", 400),
    (errors.NotFoundError, "ResourceNotFound", 400),
    (errors.NotImplementedOperation, "NotImplementedException", 400),
]


def _epoch(value: Any) -> float:
    return value.timestamp() if isinstance(value, dt.datetime) else float(value)


def _datapoints(periods: list[tuple[int, Statistics]], wanted: list[str], unit: str) -> list[dict[str, Any]]:
    points = []
    for at, stats in periods:
        values = stats.to_dict()
        point: dict[str, Any] = {"Timestamp": dt.datetime.fromtimestamp(at, dt.UTC), "Unit": unit}
        point.update({name: values[name] for name in wanted if name in values})
        points.append(point)
    return points


# Instance utilization, as SageMaker publishes it: per host of a job (Host "<job>/algo-1"), per
# variant of an endpoint (EndpointName, VariantName). CPU is the sum over cores.
UTILIZATION = {
    "CPUUtilization": "cpu",
    "MemoryUtilization": "memory",
    "DiskUtilization": "disk",
    "GPUUtilization": "gpu",  # averaged over the instance's GPUs; none sampled: no series
    "GPUMemoryUtilization": "gpu_memory",
}
_INSTANCE_NAMESPACES = {
    "/aws/sagemaker/TrainingJobs": "training",
    "/aws/sagemaker/ProcessingJobs": "processing",
    "/aws/sagemaker/TransformJobs": "transform",
    "/aws/sagemaker/Endpoints": "endpoint",
}


def get_metric_statistics(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    namespace, metric = params["Namespace"], params["MetricName"]
    dimensions = {d["Name"]: d["Value"] for d in params.get("Dimensions") or []}
    start, end, period = _epoch(params["StartTime"]), _epoch(params["EndTime"]), int(params["Period"])
    wanted = list(params.get("Statistics") or [])
    if params.get("ExtendedStatistics"):
        raise errors.ValidationError(
            "ExtendedStatistics (percentiles) are not kept; ask for Statistics",
            field="ExtendedStatistics",
        )
    if period < 60 or period % 60:
        raise errors.ValidationError(
            f"Period must be a multiple of 60 seconds, got {period}", field="Period", value=period
        )
    if namespace == "AWS/SageMaker":
        if metric not in (*COUNTS, *LATENCIES) or "EndpointName" not in dimensions:
            return {"Label": metric, "Datapoints": []}  # CloudWatch: no such series, no data
        endpoints = ctx.platform.endpoints
        periods = list(
            endpoints.metrics.series(
                dimensions["EndpointName"],
                metric,
                start=start,
                end=end,
                period=period,
                variant=dimensions.get("VariantName"),
            )
        )
        unit = "Microseconds" if metric in LATENCIES else "None"
        return {"Label": metric, "Datapoints": _datapoints(periods, wanted, unit)}
    if metric in UTILIZATION and namespace in _INSTANCE_NAMESPACES:
        kind = _INSTANCE_NAMESPACES[namespace]
        if kind == "endpoint":
            name, host = dimensions.get("EndpointName", ""), dimensions.get("VariantName")
        else:
            name, _, host = dimensions.get("Host", "").partition("/")
        samples: dict[int, Statistics] = {}
        for sample in ctx.platform.utilization.series(kind, name):
            at = sample.at.timestamp()
            value = getattr(sample, UTILIZATION[metric])
            wanted_host = sample.host == host or (kind == "endpoint" and sample.host.startswith(f"{host}/"))
            if start <= at < end and value is not None and (not host or wanted_host):
                samples.setdefault(int(at // period * period), Statistics()).add(value)
        return {"Label": metric, "Datapoints": _datapoints(sorted(samples.items()), wanted, "Percent")}
    if namespace == "/aws/sagemaker/TrainingJobs":
        job = dimensions.get("TrainingJobName") or dimensions.get("Host", "").rsplit("/", 1)[0]
        try:
            points = ctx.platform.training.metric_series(job).get(metric, [])
        except errors.NotFoundError:
            points = []
        buckets: dict[int, Statistics] = {}
        for point in points:
            at = point.timestamp.timestamp()
            if start <= at < end:
                buckets.setdefault(int(at // period * period), Statistics()).add(point.value)
        return {"Label": metric, "Datapoints": _datapoints(sorted(buckets.items()), wanted, "None")}
    return {"Label": metric, "Datapoints": []}


OPERATIONS: dict[str, Operation] = {
    "GetMetricStatistics": get_metric_statistics,
}


def cloudwatch_api() -> JsonApi:
    return JsonApi("CloudWatch", ServiceSchema.load("cloudwatch"), OPERATIONS, CLOUDWATCH_ERRORS)
