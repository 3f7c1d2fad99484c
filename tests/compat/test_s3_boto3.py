"""The S3 API as real boto3 uses it: transfer manager, paginators, checksums, S3's error codes."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client


@pytest.fixture(scope="module")
def s3(server: ServerProcess):  # type: ignore[no-untyped-def]
    return boto_client("s3", server.url)


@pytest.fixture
def bucket(s3) -> str:  # type: ignore[no-untyped-def]
    name = f"compat-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return name


def _error_code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return exc.value.response["Error"]["Code"]


def test_upload_file_100mb_multipart_and_download_identical(s3, bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    block = os.urandom(1024 * 1024)
    with source.open("wb") as f:
        for i in range(100):
            f.write(block[i:] + block[:i])
    s3.upload_file(str(source), bucket, "datasets/big.bin")
    head = s3.head_object(Bucket=bucket, Key="datasets/big.bin")
    assert head["ContentLength"] == 100 * 1024 * 1024
    assert head["ETag"].strip('"').endswith("-13")  # 8 MiB parts: boto3's transfer manager used multipart
    target = tmp_path / "back.bin"
    s3.download_file(bucket, "datasets/big.bin", str(target))
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(source.read_bytes()).digest()


def test_paginator_over_2500_keys(s3, bucket: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    keys = [f"many/{i // 100:02d}/obj-{i:05d}" for i in range(2500)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"x"), keys))
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="many/"))
    listed = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert listed == sorted(keys)
    assert len(pages) == 3
    prefixes = [
        p["Prefix"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="many/", Delimiter="/")
        for p in page.get("CommonPrefixes", [])
    ]
    assert prefixes == [f"many/{i:02d}/" for i in range(25)]
    v1 = [
        o["Key"]
        for page in s3.get_paginator("list_objects").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": 700}
        )
        for o in page.get("Contents", [])
    ]
    assert v1 == sorted(keys)


def test_s3_error_codes(s3, bucket: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=bucket, Key="missing")
    assert _error_code(exc) == "NoSuchKey"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="no-such-bucket-x", Key="k")
    assert _error_code(exc) == "NoSuchBucket"
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=bucket, Key="missing")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=bucket)
    assert _error_code(exc) == "BucketNotEmpty"
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket=bucket)
    assert _error_code(exc) == "BucketAlreadyOwnedByYou"
    with pytest.raises(ClientError) as exc:
        s3.create_bucket(Bucket="Bad_Name")
    assert _error_code(exc) == "InvalidBucketName"
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_policy(Bucket=bucket)
    assert _error_code(exc) == "NotImplemented"
    assert "Get/Put/DeleteBucketPolicy" in exc.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    ("raw_key", "key"),
    [
        ("../escape.txt", "../escape.txt"),
        ("a/../../escape.txt", "a/../../escape.txt"),
        ("a/%2e%2e/%2e%2e/escape.txt", "a/../../escape.txt"),
        ("%2e%2e%2fescape.txt", "../escape.txt"),
        ("a/..%2F..%2Fescape.txt", "a/../../escape.txt"),
        ("%2Fescape.txt", "/escape.txt"),
        ("a/%00/escape.txt", "a/\x00/escape.txt"),
    ],
)
def test_path_traversal_keys_sent_raw_are_keys_inside_their_bucket(
    s3, bucket: str, server: ServerProcess, raw_key: str, key: str
) -> None:  # type: ignore[no-untyped-def]
    """A hostile client's bytes, unnormalised: stored under the key they spell (as S3 does), and
    nothing written outside the bucket's folder."""
    import socket

    request = (
        f"PUT /{bucket}/{raw_key} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\npwned"
    )
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"pwned"
    mine = list((server.data_dir / "objects/v2/buckets" / bucket).rglob("escape.txt"))
    assert [p.read_bytes() for p in mine] == [b"pwned"]
    assert all(_in_a_bucket(server, p) for p in server.data_dir.rglob("escape.txt"))


def _in_a_bucket(server: ServerProcess, path: Path) -> bool:
    """True when ``path`` is below some bucket's folder of the local object store."""
    buckets = server.data_dir / "objects/v2/buckets"
    return buckets in path.parents and len(path.relative_to(buckets).parts) >= 2


def test_traversal_keys_from_boto3_round_trip(s3, bucket: str, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    keys = ["../escape.txt", "a/../../escape.txt", "/escape.txt", "a/./escape.txt"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    for key in keys:
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == sorted(keys)
    assert len(list((server.data_dir / "objects/v2/buckets" / bucket).rglob("escape.txt"))) == 4
    assert all(_in_a_bucket(server, p) for p in server.data_dir.rglob("escape.txt"))
    assert "escape.txt" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_create_bucket_refuses_a_body_that_is_no_configuration(server: ServerProcess) -> None:
    import httpx

    response = httpx.put(f"{server.url}/not-a-config", content=b"some object bytes")
    assert response.status_code == 400 and b"<Code>MalformedXML</Code>" in response.content
    ok = httpx.put(
        f"{server.url}/with-config",
        content=b"<CreateBucketConfiguration><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>",
    )
    assert ok.status_code == 200


def test_range_copy_delete_objects_and_metadata(s3, bucket: str) -> None:
    body = bytes(range(256)) * 4
    s3.put_object(
        Bucket=bucket,
        Key="src.bin",
        Body=body,
        ContentType="application/x-thing",
        Metadata={"project": "titanic"},
    )
    part = s3.get_object(Bucket=bucket, Key="src.bin", Range="bytes=10-19")
    assert part["Body"].read() == body[10:20]
    assert part["ContentRange"] == f"bytes 10-19/{len(body)}"
    got = s3.get_object(Bucket=bucket, Key="src.bin")
    assert (got["ContentType"], got["Metadata"]) == ("application/x-thing", {"project": "titanic"})
    s3.copy_object(Bucket=bucket, Key="copy.bin", CopySource={"Bucket": bucket, "Key": "src.bin"})
    assert s3.get_object(Bucket=bucket, Key="copy.bin")["Body"].read() == body
    result = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "src.bin"}, {"Key": "copy.bin"}, {"Key": "never-was"}]}
    )
    assert sorted(d["Key"] for d in result["Deleted"]) == ["copy.bin", "never-was", "src.bin"]
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_content_md5_mismatch_is_bad_digest(s3, bucket: str) -> None:
    import base64

    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=bucket, Key="k", Body=b"data", ContentMD5=wrong)
    assert _error_code(exc) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="k")


def test_checksum_mismatch_is_refused(server: ServerProcess, bucket: str) -> None:
    import httpx

    response = httpx.put(
        f"{server.url}/{bucket}/k", content=b"data", headers={"x-amz-checksum-crc32": "AAAAAA=="}
    )
    assert response.status_code == 400 and b"BadDigest" in response.content


def test_multipart_abort_and_list_parts(s3, bucket: str) -> None:
    upload = s3.create_multipart_upload(Bucket=bucket, Key="mp")
    s3.upload_part(Bucket=bucket, Key="mp", UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 1024)
    parts = s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload["UploadId"])["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 1024)]
    s3.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload["UploadId"])
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=bucket, Key="mp", UploadId=upload["UploadId"])
    assert _error_code(exc) == "NoSuchUpload"


def test_folder_markers_and_unicode_keys(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="folder/", Body=b"")
    s3.put_object(Bucket=bucket, Key="folder/naïve file+plus.txt", Body=b"1")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["folder/", "folder/naïve file+plus.txt"]
    assert s3.get_object(Bucket=bucket, Key="folder/naïve file+plus.txt")["Body"].read() == b"1"
