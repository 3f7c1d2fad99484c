"""Credentials are checked before a body is read, and a signed native API call with a body gets
its answer (it hung: the signature check consumed the body the app then waited for)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import httpx
import pytest
from starlette.testclient import TestClient

from shipyard.config import Settings
from tests.security._asgi import call
from tests.security._servers import serving
from tests.security.conftest import ACCESS_KEY, SECRET

GIB = str(1024**3)
SAGEMAKER = {"x-amz-target": "SageMaker.ListTrainingJobs", "content-type": "application/x-amz-json-1.1"}


def _signed(method: str, url: str, body: bytes, service: str, key: str = ACCESS_KEY) -> dict[str, str]:
    """The headers botocore's SigV4 signer gives the request."""
    request = botocore.awsrequest.AWSRequest(
        method=method, url=url, data=body, headers={"Content-Type": "application/json"}
    )
    credentials = botocore.credentials.Credentials(key, SECRET)
    botocore.auth.SigV4Auth(credentials, service, "us-east-1").add_auth(request)
    return dict(request.headers.items())


def test_an_unsigned_request_is_refused_before_its_body_is_read(signed_client: TestClient) -> None:
    answer = call(signed_client.app, "POST", "/", {**SAGEMAKER, "content-length": GIB}, [b"{}"])
    assert answer.status == 403
    assert answer.json()["__type"] == "InvalidSignatureException"
    assert answer.pulled == 0


def test_a_wrong_bearer_token_is_refused_before_the_body_is_read(signed_client: TestClient) -> None:
    headers = {"authorization": "Bearer not-the-secret", "content-type": "application/json"}
    answer = call(signed_client.app, "POST", "/api/v1/budgets", {**headers, "content-length": "2"}, [b"{}"])
    assert answer.status == 401
    assert answer.json()["error"] == "AuthenticationError"
    assert answer.pulled == 0
    assert answer.headers["connection"] == "close"


def test_an_unsigned_native_call_is_refused_before_the_body_is_read(signed_client: TestClient) -> None:
    headers = {"content-type": "application/json", "content-length": GIB}
    answer = call(signed_client.app, "POST", "/api/v1/estimates", headers, [b"{}"])
    assert answer.status == 401
    assert answer.pulled == 0


def test_a_signed_body_over_the_limit_is_refused_while_reading(signed_client: TestClient) -> None:
    headers = {**_signed("POST", "http://127.0.0.1:8300/", b"{}", "sagemaker"), **SAGEMAKER}
    answer = call(
        signed_client.app, "POST", "/", {**headers, "transfer-encoding": "chunked"}, [b"x" * 2**20] * 40
    )
    assert answer.status == 413
    assert answer.pulled == 9  # 8 MiB, then the chunk that passed it


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server on a loopback port with credentials configured."""
    data_dir: Path = tmp_path_factory.mktemp("signed-server")
    settings = Settings(data_dir=data_dir, access_key_id=ACCESS_KEY, secret_access_key=SECRET)
    with serving(settings) as url:
        yield url


def test_a_signed_native_post_with_a_body_gets_its_answer(server: str) -> None:
    body = json.dumps({"kind": "training", "request": {"ResourceConfig": {}}}).encode()
    url = f"{server}/api/v1/estimates"
    headers = _signed("POST", url, body, "execute-api")
    # The timeout only bounds a hang: the answer comes at once.
    answer = httpx.post(url, content=body, headers=headers, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "request"  # the body reached the route: it read it and named it


def test_a_signed_native_post_is_verified_against_its_body(server: str) -> None:
    body = b'{"kind": "training", "request": {}}'
    url = f"{server}/api/v1/estimates"
    headers = _signed("POST", url, body, "execute-api")
    answer = httpx.post(url, content=body.replace(b"training", b"tuning__"), headers=headers, timeout=30)
    assert answer.status_code == 401
    assert "signature does not match" in answer.json()["message"]


def test_over_http_an_oversized_body_is_answered_before_it_is_sent(server: str) -> None:
    """The server answers 413 on the headers alone; the client never sends the gigabyte."""
    parts = urlsplit(server)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            b"POST /api/v1/estimates HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + SECRET.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + GIB.encode()
            + b"\r\n\r\n{"
        )
        head = sock.recv(4096).decode()
    assert head.startswith("HTTP/1.1 413 ")
    assert "connection: close" in head.lower()


def test_a_request_signed_with_an_unknown_key_is_refused_before_its_body_is_read(
    signed_client: TestClient,
) -> None:
    headers = {**_signed("POST", "http://127.0.0.1:8300/", b"{}", "sagemaker", key="AKIDNOBODY"), **SAGEMAKER}
    answer = call(signed_client.app, "POST", "/", {**headers, "content-length": GIB}, [b"{}"])
    assert answer.status == 403
    assert "AKIDNOBODY" in answer.json()["message"]
    assert answer.pulled == 0
