"""Fuzzing the AWS protocols in process: no generated request gets a 5xx.

- every operation of every AWS JSON service the server speaks (SageMaker, CloudWatch Logs and
  metrics, Application Auto Scaling), its members drawn from botocore's own input shape and
  mutated (tests/security/_shapes.py), serialized by botocore with its client-side validation off,
  or sent as the raw JSON when botocore cannot serialize the junk;
- raw bodies of any bytes and any JSON to any of those operations;
- S3: random methods, paths (bucket and key text, escapes), sub-resource query parameters, headers
  and bodies, against a bucket that holds a few objects;
- STS and IAM (query protocol): random actions and parameters, signed-scope or unsigned form POSTs.

Each runs a fixed number of examples, derandomized (the same requests every run), and counts its
requests for the tier's ``fuzz:`` summary line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import botocore.serialize
import pytest
from botocore.model import OperationModel
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from shipyard.api.autoscaling import OPERATIONS as AUTOSCALING_OPERATIONS
from shipyard.api.logs import OPERATIONS as LOGS_OPERATIONS
from shipyard.api.monitoring import OPERATIONS as CLOUDWATCH_OPERATIONS
from shipyard.api.sagemaker import OPERATIONS as SAGEMAKER_OPERATIONS
from shipyard.schema import ServiceSchema
from tests.security import _fuzz
from tests.security._shapes import members

_SERIALIZER = botocore.serialize.create_serializer("json", include_validation=False)

# Examples per operation: more where Shipyard has a handler, a few where validation alone answers.
SERVED_EXAMPLES = 12
UNSERVED_EXAMPLES = 2


def _settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )


@pytest.fixture(autouse=True)
def _flush_counts() -> Iterator[None]:
    yield
    _fuzz.flush()


def _post(client: TestClient, protocol: str, body: bytes, headers: Mapping[str, Any], what: str) -> None:
    answer = client.post("/", content=body, headers=headers)
    _fuzz.record(protocol, answer.status_code)
    assert answer.status_code < 500, f"{what}: {answer.status_code} {answer.text[:800]}\nbody: {body[:800]!r}"


@pytest.mark.parametrize(
    ("service", "served"),
    [
        ("sagemaker", SAGEMAKER_OPERATIONS),
        ("logs", LOGS_OPERATIONS),
        ("cloudwatch", CLOUDWATCH_OPERATIONS),
        ("application-autoscaling", AUTOSCALING_OPERATIONS),
    ],
)
def test_every_json_operation_with_generated_members(
    client: TestClient, service: str, served: dict[str, Any]
) -> None:
    schema = ServiceSchema.load(service)
    model = schema.model
    content_type = f"application/x-amz-json-{model.metadata.get('jsonVersion', '1.1')}"
    for operation in sorted(schema.operation_names):
        examples = SERVED_EXAMPLES if operation in served else UNSERVED_EXAMPLES
        _operation_fuzz(client, service, model.operation_model(operation), content_type, examples)()


def _operation_fuzz(
    client: TestClient, service: str, op_model: OperationModel, content_type: str, examples: int
) -> Callable[[], None]:
    target = f"{op_model.service_model.metadata['targetPrefix']}.{op_model.name}"
    headers = {"X-Amz-Target": target, "Content-Type": content_type}

    @_settings(examples)
    @given(params=members(service, op_model.input_shape), raw=st.booleans())
    def check(params: dict[str, Any], raw: bool) -> None:
        body = json.dumps(params).encode()
        if not raw:
            try:
                request = _SERIALIZER.serialize_to_request(params, op_model)
            except Exception:  # junk botocore cannot serialize goes as raw JSON
                pass
            else:
                body = request["body"] or b"{}"
        _post(client, service, body, headers, target)

    return check


_ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
_RAW_BODIES = st.one_of(
    st.binary(max_size=64),
    _ANY_JSON.map(lambda v: json.dumps(v).encode()),
    st.integers(60, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.integers(60, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.sampled_from(
        [b'{"a": "\\ud800"}', b'{"a": "\xff\xfe"}', b"{", b'{"a": NaN}', b"\x00", b"\xef\xbb\xbf{}"]
    ),
)
_TARGETS = st.one_of(
    st.sampled_from(
        [
            "SageMaker.ListTrainingJobs",
            "SageMaker.CreateTrainingJob",
            "SageMaker.DescribePipelineExecution",
            "SageMaker.Search",
            "SageMaker.",
            "SageMaker",
            ".",
            "Logs_20140328.GetLogEvents",
            "GraniteServiceVersion20100801.GetMetricStatistics",
            "AnyScaleFrontendService.PutScalingPolicy",
            "DynamoDB_20120810.ListTables",
        ]
    ),
    st.text(max_size=30).filter(lambda t: t.strip()),  # an empty target is no JSON call (S3's)
)


@_settings(300)
@given(
    target=_TARGETS,
    body=_RAW_BODIES,
    content_type=st.sampled_from(["application/x-amz-json-1.1", "text/plain", ""]),
)
def test_raw_bodies_to_json_targets(client: TestClient, target: str, body: bytes, content_type: str) -> None:
    headers = {"X-Amz-Target": target.encode("utf-8"), "Content-Type": content_type.encode()}
    _post(client, "json-raw", body, headers, target)


# -- S3 ------------------------------------------------------------------------------------------
_BUCKETS = st.sampled_from(
    ["fuzz-bucket", "no-such-bucket", "a", "UPPER", "x" * 70, "..", "api", "ui", "%ff", ""]
)
_KEYS = st.one_of(
    st.sampled_from(
        ["k", "dir/", "dir/k", "a/../b", "..", "%2e%2e/x", "%ff%fe", "%", "%zz", "~", "a//b", "x" * 1100]
    ),
    st.text(max_size=12),
)
_SUBRESOURCES = st.dictionaries(
    st.sampled_from(
        [
            "uploads",
            "uploadId",
            "partNumber",
            "list-type",
            "max-keys",
            "max-uploads",
            "max-parts",
            "part-number-marker",
            "prefix",
            "delimiter",
            "continuation-token",
            "start-after",
            "marker",
            "key-marker",
            "upload-id-marker",
            "encoding-type",
            "fetch-owner",
            "tagging",
            "acl",
            "versioning",
            "location",
            "delete",
            "versionId",
            "x-id",
            "X-Amz-Algorithm",
            "X-Amz-Expires",
            "X-Amz-Credential",
            "X-Amz-Date",
        ]
    ),
    st.one_of(
        st.sampled_from(["", "1", "0", "-1", "2", "10001", "99999999999999999999", "abc", "%ff"]),
        st.text(max_size=6),
    ),
    max_size=3,
)
_S3_HEADERS = st.dictionaries(
    st.sampled_from(
        [
            "range",
            "content-md5",
            "x-amz-copy-source",
            "x-amz-copy-source-range",
            "x-amz-content-sha256",
            "x-amz-decoded-content-length",
            "content-encoding",
            "if-match",
            "if-none-match",
            "if-modified-since",
            "if-unmodified-since",
            "x-amz-meta-a",
            "x-amz-checksum-crc32",
            "x-amz-checksum-sha256",
            "x-amz-sdk-checksum-algorithm",
            "x-amz-trailer",
            "x-amz-metadata-directive",
            "x-amz-tagging",
            "content-type",
            "authorization",
        ]
    ),
    st.one_of(
        st.sampled_from(
            [
                "bytes=0-1",
                "bytes=5-",
                "bytes=-3",
                "bytes=9-1",
                "bytes=a-b",
                "bytes=0-99999999999999999999",
                "aws-chunked",
                "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                "UNSIGNED-PAYLOAD",
                "fuzz-bucket/k",
                "/fuzz-bucket/dir/k",
                "no-such/k",
                "%ff",
                "-1",
                "99999999999999999999",
                "*",
                "Mon, 01 Jan 2024 00:00:00 GMT",
                "AWS4-HMAC-SHA256 Credential=k/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
                "AWS4-HMAC-SHA256 garbage",
            ]
        ),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=10),
    ),
    max_size=3,
)
_S3_BODIES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"<Delete><Object><Key>k</Key></Object></Delete>",
            b"<Delete><Object><Key></Key></Object>",
            b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part></CompleteMultipartUpload>",
            b"<CompleteMultipartUpload><Part><PartNumber>abc</PartNumber></Part></CompleteMultipartUpload>",
            b"<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value></Tag></TagSet></Tagging>",
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
            b"<a>" * 200,
            b"5\r\nhello\r\n0\r\n\r\n",
            b"zz\r\nhello\r\n",
        ]
    ),
)


@pytest.fixture(scope="module")
def s3_objects(client: TestClient) -> None:
    """A bucket with a few objects, so the fuzz reaches the handlers of existing ones."""
    assert client.put("/fuzz-bucket").status_code in (200, 409)
    for key in ("k", "dir/k", "dir/", "a/b"):
        assert client.put(f"/fuzz-bucket/{key}", content=b"hello world").status_code == 200


@_settings(500)
@given(
    method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH"]),
    bucket=_BUCKETS,
    key=st.one_of(st.none(), _KEYS),
    query=_SUBRESOURCES,
    headers=_S3_HEADERS,
    body=_S3_BODIES,
)
def test_s3_requests(
    client: TestClient,
    s3_objects: None,
    method: str,
    bucket: str,
    key: str | None,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
) -> None:
    path = f"/{bucket}" + (f"/{key}" if key is not None else "")
    raw_query = "&".join(f"{k}={v}" if v else k for k, v in query.items())
    url = quote(path, safe="/%~") + (f"?{quote(raw_query, safe='=&%')}" if raw_query else "")
    answer = client.request(method, url, content=body, headers=headers)
    # S3 answers 501 NotImplemented for a feature it has that Shipyard does not (browser POST
    # uploads, ...), as AWS does for features it lacks: counted apart, not as a failure.
    not_implemented = answer.status_code == 501 and (
        method == "HEAD" or b"<Code>NotImplemented</Code>" in answer.content  # HEAD answers have no body
    )
    _fuzz.record("s3", 400 if not_implemented else answer.status_code, not_implemented=not_implemented)
    assert answer.status_code < 500 or not_implemented, (
        f"{method} {url} {headers} {body[:200]!r}: {answer.status_code} {answer.text[:500]}"
    )


# -- STS and IAM (query protocol) ------------------------------------------------------------------
_ACTIONS = st.sampled_from(
    ["GetCallerIdentity", "GetRole", "AssumeRole", "ListRoles", "", "%ff", "GetRole\x00"]
)
_QUERY_PARAMS = st.dictionaries(
    st.sampled_from(["RoleName", "Version", "RoleArn", "DurationSeconds", "X", "Action"]),
    st.one_of(st.sampled_from(["", "r", "x" * 65, "%ff", "\u00e9", "1e9"]), st.text(max_size=8)),
    max_size=3,
)


@_settings(200)
@given(
    service=st.sampled_from(["sts", "iam", None]),
    action=_ACTIONS,
    params=_QUERY_PARAMS,
    raw=st.one_of(st.none(), st.binary(max_size=40)),
    in_query=st.booleans(),
)
def test_query_protocol_requests(
    client: TestClient,
    service: str | None,
    action: str,
    params: dict[str, str],
    raw: bytes | None,
    in_query: bool,
) -> None:
    form = urlencode({"Action": action, **params}).encode() if raw is None else raw
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if service is not None:  # auth is off: the credential scope only routes the call
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/{service}/aws4_request, "
            "SignedHeaders=host, Signature=00"
        )
    url = "/?" + quote(form, safe="=&%+") if in_query else "/"
    answer = client.post(url, content=b"" if in_query else form, headers=headers)
    _fuzz.record("query", answer.status_code)
    assert answer.status_code < 500, f"{service} {form!r}: {answer.status_code} {answer.text[:500]}"


# -- signatures, with credentials configured ------------------------------------------------------
_SCOPES = st.sampled_from(["s3", "sagemaker", "sts", "iam", "logs", "execute-api", "", "s3/x"])
_AUTHORIZATIONS = st.one_of(
    st.builds(
        lambda key, date, scope, signed, signature: (
            f"AWS4-HMAC-SHA256 Credential={key}/{date}/us-east-1/{scope}/aws4_request, "
            f"SignedHeaders={signed}, Signature={signature}"
        ),
        st.sampled_from(["AKIDSHIPYARDFUZZ", "ASIAFUZZ", "AKIDNOBODY", "", "\u00e9", "ASIA\u00e9"]),
        st.sampled_from(["20240101", "", "x"]),
        _SCOPES,
        st.sampled_from(["host", "host;x-amz-date", "", ";", "x-amz-security-token"]),
        st.sampled_from(["00", "ab" * 32, "0"]),
    ),
    st.sampled_from(
        ["AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 Credential=", "Bearer ", "Bearer x", "Basic eA=="]
    ),
    st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=20),
)
_PRESIGNED = st.dictionaries(
    st.sampled_from(
        [
            "X-Amz-Algorithm",
            "X-Amz-Credential",
            "X-Amz-Date",
            "X-Amz-Expires",
            "X-Amz-SignedHeaders",
            "X-Amz-Signature",
            "X-Amz-Security-Token",
        ]
    ),
    st.sampled_from(
        [
            "AWS4-HMAC-SHA256",
            "AKIDSHIPYARDFUZZ/20240101/us-east-1/s3/aws4_request",
            "20240101T000000Z",
            "-1",
            "604801",
            "x",
            "",
            "99999999999999999999",
        ]
    ),
    max_size=6,
)


@_settings(300)
@given(
    target=st.sampled_from(
        [
            ("GET", "/fuzz-bucket/k", None),
            ("POST", "/", "SageMaker.ListTrainingJobs"),
            ("GET", "/api/v1/jobs/training", None),
            ("POST", "/api/v1/estimates", None),
            ("POST", "/", None),
            ("POST", "/endpoints/e/invocations", None),
        ]
    ),
    authorization=st.one_of(st.none(), _AUTHORIZATIONS),
    amz_date=st.one_of(st.none(), st.sampled_from(["20240101T000000Z", "x", "", "99991231T235959Z"])),
    token=st.one_of(st.none(), st.sampled_from(["", "tok", "\u00e9"])),
    presigned=_PRESIGNED,
)
def test_signatures_with_credentials_configured(
    signed_client: TestClient,
    target: tuple[str, str, str | None],
    authorization: str | None,
    amz_date: str | None,
    token: str | None,
    presigned: dict[str, str],
) -> None:
    method, path, amz_target = target
    headers = {
        "content-type": "application/x-www-form-urlencoded"
        if path == "/" and not amz_target
        else "application/json"
    }
    if amz_target:
        headers["x-amz-target"] = amz_target
    if authorization is not None:
        headers["authorization"] = authorization
    if amz_date is not None:
        headers["x-amz-date"] = amz_date
    if token is not None:
        headers["x-amz-security-token"] = token
    url = path + ("?" + urlencode(presigned) if presigned else "")
    encoded = {k: v.encode("utf-8") for k, v in headers.items()}  # as a client would send non-ASCII
    answer = signed_client.request(
        method, url, content=b"Action=GetCallerIdentity" if method == "POST" else b"", headers=encoded
    )
    _fuzz.record("signed", answer.status_code)
    assert answer.status_code < 500, f"{method} {url} {headers}: {answer.status_code} {answer.text[:500]}"
