"""SageMaker Metrics (``sagemaker-metrics``, REST-JSON, signed for the ``sagemaker`` service):
``PUT /BatchPutMetrics``, what the sagemaker SDK's ``Run.log_metric`` sends (each datum adds to
its metric's summary on the trial component, what DescribeTrialComponent and Search answer, and
to its series), and ``POST /BatchGetMetrics``, the series read back by MetricStat and Period
(core/experiments/_series.py), a trial component's or a training job's."""

from __future__ import annotations

import functools
import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from shipyard import errors
from shipyard.api._context import RequestContext
from shipyard.api._json import SAGEMAKER_ERRORS, error_response, parse_body
from shipyard.schema import ServiceSchema

PATHS = {("PUT", "/BatchPutMetrics"): "BatchPutMetrics", ("POST", "/BatchGetMetrics"): "BatchGetMetrics"}


def is_metrics_call(method: str, path: str) -> bool:
    return (method, path) in PATHS


@functools.cache
def _schema() -> ServiceSchema:
    return ServiceSchema.load("sagemaker-metrics")


async def handle_metrics(request: Request, context: RequestContext) -> Response:
    operation = PATHS[(request.method, request.url.path)]
    try:
        schema = _schema()
        params = schema.validate_input(operation, parse_body(await request.body()))
        experiments = context.platform.experiments
        answer: dict[str, Any]
        if operation == "BatchGetMetrics":
            results = await run_in_threadpool(experiments.get_metrics, params["MetricQueries"])
            answer = {"MetricQueryResults": results}
        else:
            failures = await run_in_threadpool(
                experiments.put_metrics, params["TrialComponentName"], params["MetricData"], context.region
            )
            answer = {"Errors": failures}
        body = json.dumps(schema.shape_output(operation, answer), separators=(",", ":"))
        return Response(
            body, 200, media_type="application/json", headers={"x-amzn-RequestId": context.request_id}
        )
    except errors.ShipyardError as exc:
        return error_response(exc, context.request_id, SAGEMAKER_ERRORS)
