"""Signatures made by botocore's own signer verify; anything altered does not."""

import datetime as dt

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from shipyard.api._auth import parse_sigv4, verify_sigv4
from shipyard.errors import AuthenticationError

CREDS = Credentials("AKIDSHIPYARD", "s3cr3t")


def _verify(request: AWSRequest, secret: str = "s3cr3t", body: bytes | None = None) -> None:
    from urllib.parse import parse_qsl, urlsplit

    prepared = request.prepare()
    url = urlsplit(prepared.url)
    headers = {k.lower(): v for k, v in prepared.headers.items()}
    headers.setdefault("host", url.netloc)
    sig = parse_sigv4(headers, dict(parse_qsl(url.query)))
    assert sig is not None
    verify_sigv4(
        sig,
        secret=secret,
        expected_access_key_id="AKIDSHIPYARD",
        method=prepared.method,
        raw_path=url.path,
        raw_query=url.query,
        headers=headers,
        body=body,
    )


def test_sagemaker_json_request_verifies() -> None:
    body = b'{"ResourceArn": "arn:aws:sagemaker:us-east-1:000000000000:training-job/x"}'
    request = AWSRequest(
        "POST",
        "http://127.0.0.1:8300/",
        data=body,
        headers={"X-Amz-Target": "SageMaker.ListTags", "Content-Type": "application/x-amz-json-1.1"},
    )
    SigV4Auth(CREDS, "sagemaker", "us-east-1").add_auth(request)
    _verify(request, body=body)
    with pytest.raises(AuthenticationError, match="signature does not match"):
        _verify(request, body=body + b" ")
    with pytest.raises(AuthenticationError, match="signature does not match"):
        _verify(request, secret="wrong", body=body)


def test_s3_request_with_odd_key_verifies() -> None:
    request = AWSRequest(
        "PUT", "http://127.0.0.1:8300/bucket/dir/na%C3%AFve%20file%2Bplus.txt?x-id=PutObject", data=b"data"
    )
    S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(request)
    _verify(request)


def test_presigned_url_verifies_until_it_expires() -> None:
    request = AWSRequest("GET", "http://127.0.0.1:8300/bucket/key.txt")
    S3SigV4QueryAuth(CREDS, "s3", "us-east-1", expires=60).add_auth(request)
    _verify(request)
    from urllib.parse import parse_qsl, urlsplit

    url = urlsplit(request.prepare().url)
    sig = parse_sigv4({"host": url.netloc}, dict(parse_qsl(url.query)))
    assert sig is not None
    with pytest.raises(AuthenticationError, match="expired"):
        verify_sigv4(
            sig,
            secret="s3cr3t",
            expected_access_key_id="AKIDSHIPYARD",
            method="GET",
            raw_path=url.path,
            raw_query=url.query,
            headers={"host": url.netloc},
            body=None,
            now=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
        )


def test_unknown_access_key_is_named() -> None:
    request = AWSRequest("GET", "http://127.0.0.1:8300/")
    S3SigV4Auth(Credentials("OTHER", "x"), "s3", "us-east-1").add_auth(request)
    with pytest.raises(AuthenticationError, match="'OTHER'"):
        _verify(request)


@pytest.mark.parametrize(
    "amz_date",
    [
        "",
        "2026-12-03T06:44:52Z",
        "20261303T064452Z",
        "20261203T064452",
        "\u0662\u0660\u0662\u06661203T064452Z",
    ],
)
def test_a_malformed_or_impossible_amz_date_is_named(amz_date: str) -> None:
    request = AWSRequest("GET", "http://127.0.0.1:8300/bucket/key")
    S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(request)
    request.headers.replace_header("X-Amz-Date", amz_date)
    with pytest.raises(AuthenticationError, match=f"Malformed or missing X-Amz-Date '{amz_date}'"):
        _verify(request)


def test_a_request_signed_too_long_ago_is_refused_naming_the_clock() -> None:
    request = AWSRequest("GET", "http://127.0.0.1:8300/bucket/key")
    S3SigV4Auth(CREDS, "s3", "us-east-1").add_auth(request)
    signed = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16)
    request.headers.replace_header("X-Amz-Date", f"{signed:%Y%m%dT%H%M%SZ}")
    with pytest.raises(AuthenticationError, match="more than 15 minutes from the server's time"):
        _verify(request)
