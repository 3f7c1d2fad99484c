"""Answers to AWS services Shipyard does not serve, in each service's own protocol.

A client of such a service (signed for its name, e.g. ``lambda``, ``dynamodb``, ``sqs``) parses
errors as its protocol writes them; a JSON body it cannot read would surface as a parse error
far from the cause. :func:`service_protocol` finds the protocol botocore itself would speak to
the service by its signing name (botocore's loader; the model named like it first, every model
once on a miss; cached), and :func:`unserved_error` answers in it:

==============  ===================================================================
json            JSON ``__type`` ``UnknownOperationException`` (and x-amzn-ErrorType)
rest-json       JSON body, ``x-amzn-ErrorType: UnknownOperationException``
query           XML ``ErrorResponse`` ``InvalidAction`` in the service's namespace
ec2             EC2's XML ``Response/Errors/Error`` ``InvalidAction``
rest-xml        XML ``Error`` ``InvalidAction``
==============  ===================================================================
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from xml.etree import ElementTree as ET

from starlette.responses import Response

from shipyard.api._json import json_error
from shipyard.api.s3._xml import error_document

# What botocore prefers when a model lists several (botocore.utils), CBOR left out: the
# clients of a service that offers it speak one of the others too.
_PREFERRED = ("json", "rest-json", "rest-xml", "query", "ec2")
_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class ServiceProtocol:
    """A service as botocore knows it: its model's name, its id for people, its protocol and
    (query and ec2) its XML namespace."""

    name: str
    service_id: str
    protocol: str
    namespace: str = ""


def _describe(name: str, metadata: dict[str, object]) -> ServiceProtocol:
    listed = [str(p) for p in metadata.get("protocols") or [metadata.get("protocol")]]  # type: ignore[attr-defined]
    protocol = next((p for p in listed if p in _PREFERRED), "json")
    namespace = str(metadata.get("xmlNamespace") or "")
    return ServiceProtocol(name, str(metadata.get("serviceId") or name), protocol, namespace)


def _signing_name(metadata: dict[str, object]) -> str:
    return str(metadata.get("signingName") or metadata.get("endpointPrefix") or "")


@functools.cache
def _loader():  # type: ignore[no-untyped-def]
    import botocore.loaders

    return botocore.loaders.create_loader()


@functools.cache
def _all_services() -> dict[str, ServiceProtocol]:
    loader = _loader()
    found: dict[str, ServiceProtocol] = {}
    for name in loader.list_available_services("service-2"):
        metadata = loader.load_service_model(name, "service-2")["metadata"]
        found.setdefault(_signing_name(metadata), _describe(name, metadata))
    return found


@functools.lru_cache(maxsize=1024)  # bounded: a request names any signing name it likes
def service_protocol(signing_name: str) -> ServiceProtocol | None:
    """The service whose requests are signed for ``signing_name``; None when botocore knows
    none. Blocking (models are read from disk): call it off the event loop the first time."""
    with _lock:
        loader = _loader()
        if signing_name in loader.list_available_services("service-2"):
            metadata = loader.load_service_model(signing_name, "service-2")["metadata"]
            if _signing_name(metadata) in (signing_name, ""):
                return _describe(signing_name, metadata)
        return _all_services().get(signing_name)


def unserved_error(
    service: str | None, message: str, request_id: str, *, status: int = 400, code: str | None = None
) -> Response:
    """An error in the protocol of ``service`` (a signing name): ``code`` when given, else
    UnknownOperationException (JSON protocols) or InvalidAction (XML ones)."""
    known = service_protocol(service) if service else None
    protocol = known.protocol if known else "json"
    if protocol in ("json", "rest-json"):
        code = {"AccessDenied": "AccessDeniedException"}.get(code or "", code)
        return json_error(code or "UnknownOperationException", message, status, request_id)
    code = code or "InvalidAction"
    if protocol == "ec2":
        root = ET.Element("Response")
        error = ET.SubElement(ET.SubElement(root, "Errors"), "Error")
        ET.SubElement(error, "Code").text = code
        ET.SubElement(error, "Message").text = message
        ET.SubElement(root, "RequestID").text = request_id
        return Response(
            ET.tostring(root, encoding="utf-8", xml_declaration=True), status, media_type="text/xml"
        )
    if protocol == "query":
        assert known is not None
        root = ET.Element("ErrorResponse", {"xmlns": known.namespace} if known.namespace else {})
        error = ET.SubElement(root, "Error")
        for tag, text in (("Type", "Sender"), ("Code", code), ("Message", message)):
            ET.SubElement(error, tag).text = text
        ET.SubElement(root, "RequestId").text = request_id
        return Response(
            ET.tostring(root, encoding="utf-8", xml_declaration=True), status, media_type="text/xml"
        )
    return Response(error_document(code, message, request_id), status, media_type="application/xml")


def not_served_message(service: str | None) -> str:
    known = service_protocol(service) if service else None
    named = f"{known.service_id} ({service!r})" if known else repr(service)
    return (
        f"Shipyard does not serve the AWS service {named}, named by the request's credential scope: "
        "it serves SageMaker, S3, IAM, STS, CloudWatch, CloudWatch Logs, Application Auto Scaling, "
        "Cost Explorer and EC2's DescribeInstances"
    )
