"""The S3 API against hostile and careless clients, on a real server (loopback, real boto3).

Keys that are folders of other keys coexist; malformed requests answer 4xx with S3's codes;
multipart uploads a crash left open are listed and swept after the site's age; AWS's size limits
hold while the body streams; a bad signature is refused before the body is read; presigned URLs
past AWS's 7 days are refused.

The server runs in this process (uvicorn in a thread) so a test can lower a limit of
:mod:`shipyard.api.s3._limits` with monkeypatch instead of sending 5 GiB.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from botocore.config import Config
from botocore.exceptions import ClientError

from shipyard.api.app import ShipyardApp
from shipyard.api.s3 import _limits
from shipyard.config import Settings
from tests._support import boto_client

ACCESS_KEY, SECRET = "AKIDHARDENING", "hardening-secret"


@dataclasses.dataclass
class Served:
    url: str
    port: int
    data_dir: Path


@contextlib.contextmanager
def serve(data_dir: Path, *, background: bool = False, **settings: Any) -> Iterator[Served]:
    """The whole server on a loopback port of this process, until the block ends."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = ShipyardApp(Settings(data_dir=data_dir, port=port, **settings), background=background)
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:  # wait for the lifespan startup to finish
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield Served(f"http://127.0.0.1:{port}", port, data_dir)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(tmp_path_factory.mktemp("s3-open")) as served:
        yield served


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(
        tmp_path_factory.mktemp("s3-signed"), access_key_id=ACCESS_KEY, secret_access_key=SECRET
    ) as served:
        yield served


def _s3(url: str, **kwargs: Any) -> Any:
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"mode": "standard", "max_attempts": 1},
    )
    return boto_client("s3", url, config=config, **kwargs)


@pytest.fixture
def s3(open_server: Served) -> Any:
    return _s3(open_server.url)


@pytest.fixture
def bucket(s3: Any) -> str:
    name = f"hard-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def _raw(port: int, head: str, body: bytes = b"") -> bytes:
    """Send a request's head (and ``body``, which may be less than it declares); the answer, read
    until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head.encode("latin-1") + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def _tmp_files(served: Served) -> list[Path]:
    return list((served.data_dir / "objects/tmp").iterdir())


# -- keys that are folders of other keys --------------------------------------------------------
def test_keys_that_are_folders_of_others_coexist(s3: Any, bucket: str) -> None:
    keys = ["model.json/w", "model.json", "x", "x/", "a", "a/b", "a/", "a/../b", "100%/~"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    for key in keys:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
        assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(key.encode())
    s3.copy_object(Bucket=bucket, Key="x/copy", CopySource={"Bucket": bucket, "Key": "model.json"})
    keys.append("x/copy")
    assert s3.get_object(Bucket=bucket, Key="x/copy")["Body"].read() == b"model.json"
    ordered = sorted(keys)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ordered
    assert [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]] == ordered
    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["a", "model.json", "x"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["100%/", "a/", "model.json/", "x/"]
    below = s3.list_objects_v2(Bucket=bucket, Prefix="a/", Delimiter="/")
    assert [o["Key"] for o in below["Contents"]] == ["a/", "a/b"]
    assert [p["Prefix"] for p in below["CommonPrefixes"]] == ["a/../"]
    after = s3.list_objects_v2(Bucket=bucket, StartAfter="model.json")
    assert [o["Key"] for o in after["Contents"]] == [k for k in ordered if k > "model.json"]
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, PaginationConfig={"PageSize": 2})
    assert [o["Key"] for page in pages for o in page.get("Contents", [])] == ordered
    pages = s3.get_paginator("list_objects").paginate(
        Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 2}
    )
    seen = [(o["Key"], None) for p in pages for o in p.get("Contents", [])]
    pages = s3.get_paginator("list_objects").paginate(
        Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 2}
    )
    prefixes = [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])]
    assert ([k for k, _ in seen], prefixes) == (
        ["a", "model.json", "x"],
        ["100%/", "a/", "model.json/", "x/"],
    )
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "x"}, {"Key": "a/"}]})
    s3.delete_object(Bucket=bucket, Key="model.json")
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert left == [k for k in ordered if k not in ("x", "a/", "model.json")]


# -- malformed requests -------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "PUT", "HEAD", "DELETE"])
def test_invalid_utf8_escapes_in_a_key_are_invalid_uri(open_server: Served, bucket: str, method: str) -> None:
    response = httpx.request(
        method, f"{open_server.url}/{bucket}/%ff%fe", content=b"x" if method == "PUT" else None
    )
    assert response.status_code == 400
    if method == "HEAD":
        assert response.headers["x-amz-error-code"] == "InvalidURI"
    else:
        assert b"<Code>InvalidURI</Code>" in response.content and b"%ff%fe" in response.content
    assert httpx.get(f"{open_server.url}/%ff%fe/key").status_code == 400


def _upload(s3: Any, bucket: str, key: str = "mp") -> str:
    upload_id: str = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    return upload_id


@pytest.mark.parametrize(
    ("document", "code", "named"),
    [
        (b"<CompleteMultipartUpload><Part>", "MalformedXML", b"not well-formed"),
        (b"<Delete/>", "MalformedXML", b"expected a CompleteMultipartUpload"),
        (b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>", "MalformedXML", b"'x'"),
        (b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>", "MalformedXML", b"ETag"),
        (b"<CompleteMultipartUpload><Part><PartNumber>0</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>", "InvalidArgument", b"got 0"),
        (b"<CompleteMultipartUpload><Part><PartNumber>10001</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>", "InvalidArgument", b"got 10001"),
        (b"<CompleteMultipartUpload><Part><PartNumber>99999999999999999999999</PartNumber><ETag>e</ETag></Part></CompleteMultipartUpload>", "MalformedXML", b"99999"),
    ],
)  # fmt: skip
def test_bad_complete_documents_are_400(
    open_server: Served, s3: Any, bucket: str, document: bytes, code: str, named: bytes
) -> None:
    upload_id = _upload(s3, bucket)
    response = httpx.post(f"{open_server.url}/{bucket}/mp?uploadId={upload_id}", content=document)
    assert response.status_code == 400, response.text
    assert f"<Code>{code}</Code>".encode() in response.content and named in response.content


def test_a_complete_listing_more_parts_than_allowed_is_refused(
    open_server: Served, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_limits, "MAX_PARTS", 2)
    upload_id = _upload(s3, bucket)
    parts = [{"PartNumber": n, "ETag": '"e"'} for n in (1, 2, 3)]
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="mp", UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    assert _code(exc) == "InvalidArgument" and "at most 2" in exc.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("document", "named"),
    [
        (b"<Delete><Object><Key>a", b"not well-formed"),
        (b"<Delete></Delete>", b"got 0"),
        (b"<Delete><Object></Object></Delete>", b"needs a Key"),
        (b"<Delete>" + b"<Object><Key>k</Key></Object>" * 1001 + b"</Delete>", b"got 1001"),
        (b"<NotDelete/>", b"expected a Delete"),
    ],
)
def test_bad_delete_objects_documents_are_malformed_xml(
    open_server: Served, bucket: str, document: bytes, named: bytes
) -> None:
    response = httpx.post(f"{open_server.url}/{bucket}?delete", content=document)
    assert response.status_code == 400 and b"<Code>MalformedXML</Code>" in response.content
    assert named in response.content


def test_a_request_document_over_its_limit_is_refused(
    open_server: Served, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_limits, "MAX_XML_BODY", 1024)
    document = b"<Delete>" + b"<Object><Key>k</Key></Object>" * 100 + b"</Delete>"
    response = httpx.post(f"{open_server.url}/{bucket}?delete", content=document)
    assert response.status_code == 400 and b"<Code>MaxMessageLengthExceeded</Code>" in response.content

    def streamed() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield document

    response = httpx.post(f"{open_server.url}/{bucket}?delete", content=streamed())
    assert response.status_code == 400 and b"more than 1024 bytes" in response.content


def test_bad_ranges_part_numbers_and_list_parameters_are_4xx(
    open_server: Served, s3: Any, bucket: str
) -> None:
    url = open_server.url
    s3.put_object(Bucket=bucket, Key="k", Body=b"0123456789")
    huge = "9" * 5000
    assert httpx.get(f"{url}/{bucket}/k", headers={"Range": f"bytes={huge}-"}).status_code == 416
    tail = httpx.get(f"{url}/{bucket}/k", headers={"Range": f"bytes=2-{huge}"})
    assert (tail.status_code, tail.content) == (206, b"23456789")
    assert httpx.get(f"{url}/{bucket}/k", headers={"Range": "bytes=abc"}).content == b"0123456789"
    for query, name in [
        ("max-keys=-1", b"max-keys"),
        ("max-keys=" + huge, b"max-keys"),
        ("uploads&max-uploads=-5", b"max-uploads"),
    ]:
        response = httpx.get(f"{url}/{bucket}?{query}")
        assert response.status_code == 400 and b"<ArgumentName>" + name in response.content, query
    assert httpx.get(f"{url}/{bucket}?max-keys=99999999999999999999").status_code == 200
    upload_id = _upload(s3, bucket)
    for number in ["0", "10001", "-1", "x", huge]:
        response = httpx.put(f"{url}/{bucket}/mp?uploadId={upload_id}&partNumber={number}", content=b"p")
        assert response.status_code == 400 and b"<ArgumentName>partNumber" in response.content, number
    chunked = httpx.put(
        f"{url}/{bucket}/c",
        content=b"5\r\nhello\r\n0\r\n\r\n",
        headers={
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": "\u00b2".encode("latin-1"),
        },
    )
    assert chunked.status_code == 200


# -- multipart uploads left open ----------------------------------------------------------------
def test_list_and_abort_multipart_uploads_through_boto3(s3: Any, bucket: str) -> None:
    first = _upload(s3, bucket, "data/b.bin")
    second = _upload(s3, bucket, "data/b.bin")
    other = _upload(s3, bucket, "a.bin")
    deep = _upload(s3, bucket, "data/deep/c.bin")
    listed = s3.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in listed["Uploads"]] == [
        ("a.bin", other),
        ("data/b.bin", first),
        ("data/b.bin", second),
        ("data/deep/c.bin", deep),
    ]
    grouped = s3.list_multipart_uploads(Bucket=bucket, Prefix="data/", Delimiter="/")
    assert [u["UploadId"] for u in grouped["Uploads"]] == [first, second]
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["data/deep/"]
    pages = s3.get_paginator("list_multipart_uploads").paginate(
        Bucket=bucket, PaginationConfig={"PageSize": 1}
    )
    assert [u["UploadId"] for page in pages for u in page.get("Uploads", [])] == [other, first, second, deep]
    s3.abort_multipart_upload(Bucket=bucket, Key="data/b.bin", UploadId=first)
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [
        other,
        second,
        deep,
    ]
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="data/b.bin", UploadId=first)
    assert _code(exc) == "NoSuchUpload"
    with pytest.raises(ClientError) as exc:
        s3.abort_multipart_upload(Bucket=bucket, Key="data/b.bin", UploadId=first)
    assert _code(exc) == "NoSuchUpload"


def test_the_s3_backed_store_lists_and_sweeps_uploads_through_the_api(
    open_server: Served, bucket: str
) -> None:
    """The ``s3`` object store (here on this server's S3 API) lists uploads and sweeps old ones."""
    from shipyard.storage._s3 import S3ObjectStore

    store = S3ObjectStore(open_server.url, "key", "secret")
    try:
        uploads = [store.create_multipart_upload(bucket, f"k{i}").upload_id for i in range(3)]
        assert [u.upload_id for u in store.list_multipart_uploads(bucket)] == uploads
        assert [u.key for u in store.list_multipart_uploads(bucket, prefix="k1")] == ["k1"]
        assert store.abort_stale_uploads(dt.timedelta(hours=1)) == 0
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
        assert store.abort_stale_uploads(dt.timedelta(hours=1), now=later) >= 3
        assert store.list_multipart_uploads(bucket) == []
    finally:
        store.close()


def test_uploads_left_open_are_listed_and_swept_after_the_sites_age(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with serve(data_dir) as served:
        s3 = _s3(served.url)
        s3.create_bucket(Bucket="crashed")
        stale = _upload(s3, "crashed", "half.bin")
        s3.upload_part(Bucket="crashed", Key="half.bin", UploadId=stale, PartNumber=1, Body=b"part")
        fresh = _upload(s3, "crashed", "recent.bin")
    # The client died nine days ago, mid-upload.
    upload_json = data_dir / "objects/uploads" / stale / "upload.json"
    record = json.loads(upload_json.read_text())
    record["initiated"] = (dt.datetime.now(dt.UTC) - dt.timedelta(days=9)).isoformat()
    upload_json.write_text(json.dumps(record))
    with serve(data_dir, multipart_max_age_hours=0) as served:  # 0: never swept
        s3 = _s3(served.url)
        assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="crashed")["Uploads"]] == [
            stale,
            fresh,
        ]
    with serve(data_dir, background=True) as served:  # the default age, 7 days
        s3 = _s3(served.url)
        deadline = time.monotonic() + 60
        while len(s3.list_multipart_uploads(Bucket="crashed").get("Uploads", [])) > 1:
            assert time.monotonic() < deadline, "the stale upload was not swept"
            time.sleep(0.1)
        assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket="crashed")["Uploads"]] == [fresh]
    assert not (data_dir / "objects/uploads" / stale).exists()


def test_a_negative_multipart_age_is_a_configuration_error(tmp_path: Path) -> None:
    from shipyard.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"multipart_max_age_hours.*-1"):
        Settings(data_dir=tmp_path, multipart_max_age_hours=-1)


# -- limits while reading -----------------------------------------------------------------------
def test_a_put_over_the_object_limit_is_refused_as_it_streams(
    open_server: Served, s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_limits, "MAX_PUT_SIZE", 64 * 1024)
    s3.put_object(Bucket=bucket, Key="fits", Body=b"x" * 64 * 1024)
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="big", Body=b"x" * (64 * 1024 + 1))
    assert _code(exc) == "EntityTooLarge"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400

    def streamed() -> Iterator[bytes]:  # chunked transfer, no size declared
        for _ in range(4):
            yield b"y" * 32 * 1024

    response = httpx.put(f"{open_server.url}/{bucket}/streamed", content=streamed())
    assert response.status_code == 400 and b"<Code>EntityTooLarge</Code>" in response.content
    assert b"<MaxSizeAllowed>65536</MaxSizeAllowed>" in response.content
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["fits"] and not _tmp_files(open_server)


def test_a_declared_size_past_5_gib_is_refused_before_the_body(open_server: Served, bucket: str) -> None:
    declared = 5 * 1024**3 + 1
    answer = _raw(
        open_server.port,
        f"PUT /{bucket}/huge HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n",
        b"only a little of it",
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer[:300]
    assert b"<Code>EntityTooLarge</Code>" in answer and f"<ProposedSize>{declared}<".encode() in answer
    assert not _tmp_files(open_server)


def test_a_part_over_the_part_limit_is_refused(s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_limits, "MAX_PART_SIZE", 1024)
    upload_id = _upload(s3, bucket)
    s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"p" * 1024)
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload_id, PartNumber=2, Body=b"p" * 1025)
    assert _code(exc) == "EntityTooLarge"
    parts = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload_id)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1]


def test_a_copy_of_a_source_past_the_copy_limit_is_refused(
    s3: Any, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.put_object(Bucket=bucket, Key="src", Body=b"z" * 100)
    monkeypatch.setattr(_limits, "MAX_COPY_SIZE", 99)
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert _code(exc) == "InvalidRequest" and "99" in exc.value.response["Error"]["Message"]


# -- authentication before the body -------------------------------------------------------------
def test_a_bad_signature_is_refused_before_its_body_is_read(signed_server: Served) -> None:
    _s3(signed_server.url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET).create_bucket(
        Bucket="guarded"
    )
    now = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    head = (
        "PUT /guarded/big HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{now[:8]}/us-east-1/s3/aws4_request, "
        f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}\r\n"
        f"x-amz-date: {now}\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n"
        f"Content-Length: {1024**3}\r\n\r\n"
    )
    # Not a byte of the GiB it declares: the answer, and the closed connection, come all the same.
    answer = _raw(signed_server.port, head)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:300]
    assert b"<Code>AccessDenied</Code>" in answer and b"signature does not match" in answer
    assert not _tmp_files(signed_server)


def test_presigned_urls_past_seven_days_are_refused(signed_server: Served) -> None:
    s3 = _s3(signed_server.url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET)
    s3.create_bucket(Bucket="shared")
    s3.put_object(Bucket="shared", Key="report.csv", Body=b"a,b\n")
    params = {"Bucket": "shared", "Key": "report.csv"}
    week = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=604800)
    assert httpx.get(week).content == b"a,b\n"
    eight_days = s3.generate_presigned_url("get_object", Params=params, ExpiresIn=8 * 24 * 3600)
    response = httpx.get(eight_days)
    assert response.status_code == 400
    assert b"<Code>AuthorizationQueryParametersError</Code>" in response.content
    assert b"X-Amz-Expires must be less than a week" in response.content and b"604800" in response.content
    negative = httpx.get(week.replace("X-Amz-Expires=604800", "X-Amz-Expires=-1"))
    assert negative.status_code == 400 and b"non-negative" in negative.content
