"""EC2 in its own query protocol (``Action=`` form POST, XML answers in EC2's shape): only
``DescribeInstances``, answered with an empty reservation set — Shipyard's jobs run on this
machine, not on EC2 instances — so code that lists instances (a lesson's cleanup helper) runs
unchanged. Any other action is EC2's ``InvalidAction``, in EC2's error form."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from starlette.requests import Request
from starlette.responses import Response

from shipyard.api._context import RequestContext
from shipyard.api._query import form_params
from shipyard.api._unserved import unserved_error

_NAMESPACE = "http://ec2.amazonaws.com/doc/2016-11-15/"


async def handle_ec2(request: Request, context: RequestContext) -> Response:
    params = form_params(await request.body(), request.query_params)
    action = params.get("Action", "")
    if action != "DescribeInstances":
        return unserved_error(
            "ec2",
            f"The action {action or '(no Action)'} is not valid for this web service: Shipyard's EC2 "
            "answers DescribeInstances only",
            context.request_id,
        )
    asked = sorted(v for k, v in params.items() if k.startswith("InstanceId."))
    if asked:  # no instance is Shipyard's, as EC2 answers for IDs it does not know
        return unserved_error(
            "ec2",
            f"The instance ID {asked[0]!r} does not exist",
            context.request_id,
            code="InvalidInstanceID.NotFound",
        )
    root = ET.Element("DescribeInstancesResponse", {"xmlns": _NAMESPACE})
    ET.SubElement(root, "requestId").text = context.request_id
    ET.SubElement(root, "reservationSet")
    return Response(ET.tostring(root, encoding="utf-8", xml_declaration=True), 200, media_type="text/xml")
