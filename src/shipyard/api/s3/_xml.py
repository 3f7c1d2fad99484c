"""S3's XML: building responses and errors, reading request documents safely."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree as ET

from shipyard.errors import ValidationError

S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
_MAX_XML = 2 * 1024 * 1024


def iso8601(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def http_date(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def element(tag: str, children: Iterable[Any] = (), text: str | None = None, ns: bool = False) -> ET.Element:
    node = ET.Element(tag, {"xmlns": S3_NS} if ns else {})
    if text is not None:
        node.text = text
    for child in children:
        if child is not None:
            node.append(child)
    return node


def leaf(tag: str, value: Any) -> ET.Element | None:
    """A text element, or None (left out) when value is None."""
    if value is None:
        return None
    if isinstance(value, bool):
        value = "true" if value else "false"
    return element(tag, text=str(value))


def document(root: ET.Element) -> bytes:
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")


def maybe_url_encode(value: str | None, encoding_type: str | None) -> str | None:
    if value is None or encoding_type != "url":
        return value
    return quote(value, safe="/")


def parse_xml(body: bytes, what: str) -> ET.Element:
    """Parse a small request document; namespaces are stripped so lookups use plain tags.

    ElementTree does not fetch external entities or expand entities beyond the XML builtins, so
    this is safe on untrusted input; size is capped.
    """
    if len(body) > _MAX_XML:
        raise ValidationError(
            f"MalformedXML: the {what} document is larger than {_MAX_XML} bytes", field=what
        )
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise ValidationError(f"MalformedXML: the {what} document may not declare a DOCTYPE", field=what)
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise ValidationError(
            f"MalformedXML: the {what} document is not well-formed XML: {exc}", field=what
        ) from None
    for node in root.iter():
        if isinstance(node.tag, str) and "}" in node.tag:
            node.tag = node.tag.split("}", 1)[1]
    return root


def error_document(code: str, message: str, request_id: str, **extra: str | None) -> bytes:
    root = element(
        "Error",
        [
            leaf("Code", code),
            leaf("Message", message),
            *(leaf(k, v) for k, v in extra.items()),
            leaf("RequestId", request_id),
        ],
    )
    return document(root)
