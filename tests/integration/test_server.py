"""The server process as an operator meets it: start, health, signals, binding, auth, crashes."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess, free_port
from tests._support import boto_client


def _wait_for(condition, timeout: float = 20.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_starts_answers_health_and_stops_cleanly(data_dir: Path, sig: int) -> None:
    server = ServerProcess(data_dir).start()
    try:
        health = httpx.get(f"{server.url}/api/v1/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert httpx.get(f"{server.url}/api/v1/openapi.json").json()["info"]["title"] == "Shipyard"
    finally:
        assert server.stop(sig) == 0
    assert "ready in" in server.log_tail()
    assert (data_dir / "shipyard.db").exists()


def test_a_started_server_used_as_a_context_is_not_started_twice(data_dir: Path) -> None:
    server = ServerProcess(data_dir).start()
    first = server.process
    with server:  # the test fixtures' idiom: started (with settings), then stopped on the way out
        assert server.process is first
    assert first is not None and first.poll() is not None  # stopped: nothing left running


def test_refuses_public_bind_without_auth(data_dir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "shipyard", "server", "--host", "0.0.0.0", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Refusing to bind host '0.0.0.0' without authentication" in result.stderr


def test_one_server_per_data_dir(data_dir: Path) -> None:
    with ServerProcess(data_dir):
        second = ServerProcess(data_dir, log_path=data_dir / "second.log")
        with pytest.raises(Exception, match="Another Shipyard server"):
            second.start()


def test_instance_catalog_endpoint(server: ServerProcess) -> None:
    types = httpx.get(f"{server.url}/api/v1/instance-types").json()
    names = {t["name"] for t in types}
    assert {"ml.m5.large", "ml.g4dn.xlarge", "ml.p4d.24xlarge"} <= names
    training = httpx.get(f"{server.url}/api/v1/instance-types", params={"kind": "training"}).json()
    assert training and len(training) <= len(types)
    bad = httpx.get(f"{server.url}/api/v1/instance-types", params={"kind": "mining"})
    assert bad.status_code == 422


def test_auth_when_credentials_are_configured(data_dir: Path) -> None:
    env = {"SHIPYARD_ACCESS_KEY_ID": "AKIDSHIPYARD", "SHIPYARD_SECRET_ACCESS_KEY": "s3cr3t-value"}
    with ServerProcess(data_dir, env=env) as server:
        good = boto_client(
            "s3", server.url, aws_access_key_id="AKIDSHIPYARD", aws_secret_access_key="s3cr3t-value"
        )
        good.create_bucket(Bucket="secure")
        good.put_object(Bucket="secure", Key="k", Body=b"v")
        assert good.get_object(Bucket="secure", Key="k")["Body"].read() == b"v"
        sm = boto_client(
            "sagemaker", server.url, aws_access_key_id="AKIDSHIPYARD", aws_secret_access_key="s3cr3t-value"
        )
        assert sm.list_tags(ResourceArn="arn:aws:sagemaker:us-east-1:000000000000:model/m")["Tags"] == []
        bad = boto_client("s3", server.url, aws_access_key_id="AKIDSHIPYARD", aws_secret_access_key="wrong")
        with pytest.raises(ClientError) as exc:
            bad.list_buckets()
        assert exc.value.response["Error"]["Code"] == "AccessDenied"
        bad_sm = boto_client(
            "sagemaker", server.url, aws_access_key_id="AKIDSHIPYARD", aws_secret_access_key="x"
        )
        with pytest.raises(ClientError) as exc:
            bad_sm.list_tags(ResourceArn="arn:aws:sagemaker:us-east-1:000000000000:model/m")
        assert exc.value.response["Error"]["Code"] == "InvalidSignatureException"
        assert httpx.get(f"{server.url}/secure/k").status_code == 403
        assert httpx.get(f"{server.url}/api/v1/health").status_code == 200
        assert httpx.get(f"{server.url}/api/v1/info").status_code == 401
        ok = httpx.get(f"{server.url}/api/v1/info", headers={"Authorization": "Bearer s3cr3t-value"})
        assert ok.status_code == 200 and ok.json()["auth"] is True


def test_sigkill_mid_upload_leaves_no_partial_object(data_dir: Path) -> None:
    server = ServerProcess(data_dir).start()
    try:
        s3 = boto_client("s3", server.url)
        s3.create_bucket(Bucket="crash")
        complete = os.urandom(3 * 1024 * 1024)
        s3.put_object(Bucket="crash", Key="complete.bin", Body=complete)
        upload = s3.create_multipart_upload(Bucket="crash", Key="assembling.bin")
        s3.upload_part(
            Bucket="crash", Key="assembling.bin", UploadId=upload["UploadId"], PartNumber=1, Body=b"p" * 1024
        )
        # A raw PUT that promises 64 MiB and sends 8 MiB, then the server dies.
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(
            b"PUT /crash/partial.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 67108864\r\n\r\n"
        )
        sock.sendall(b"x" * (8 * 1024 * 1024))
        tmp_dir = data_dir / "objects" / "tmp"
        _wait_for(
            lambda: any(p.stat().st_size > 0 for p in tmp_dir.iterdir()), what="the upload to reach disk"
        )
    finally:
        server.kill()  # the crash under test, and no stray server should the test fail before it
    sock.close()

    restarted = ServerProcess(data_dir, port=free_port()).start()
    try:
        s3 = boto_client("s3", restarted.url)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="crash").get("Contents", [])]
        assert keys == ["complete.bin"]
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket="crash", Key="partial.bin")
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
        body = s3.get_object(Bucket="crash", Key="complete.bin")["Body"].read()
        assert hashlib.sha256(body).digest() == hashlib.sha256(complete).digest()
        parts = s3.list_parts(Bucket="crash", Key="assembling.bin", UploadId=upload["UploadId"])["Parts"]
        assert [p["Size"] for p in parts] == [1024]  # an unfinished multipart upload survives, unassembled
        assert not list(tmp_dir.iterdir())  # leftovers of the torn write are cleaned at start
    finally:
        restarted.stop()


def test_runs_on_postgres(data_dir: Path, postgres_url: str) -> None:
    with ServerProcess(data_dir, extra_args=["--database-url", postgres_url]) as server:
        assert httpx.get(f"{server.url}/api/v1/info").json()["database"] == "postgresql"
        sm = boto_client("sagemaker", server.url)
        arn = "arn:aws:sagemaker:us-east-1:000000000000:endpoint/pg"
        sm.add_tags(ResourceArn=arn, Tags=[{"Key": "Project", "Value": "titanic"}])
        assert sm.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "Project", "Value": "titanic"}]


def test_large_object_streams_without_holding_it_in_memory(tmp_path: Path) -> None:
    """512 MiB up and down; the server's peak memory stays far below the object's size (about
    150 MiB, all it holds otherwise: a server of its own, whose peak is this test's alone)."""
    source = tmp_path / "huge.bin"
    block = os.urandom(1024 * 1024)
    with source.open("wb") as f:
        for _ in range(512):
            f.write(block)
    with ServerProcess(tmp_path / "data") as server:
        s3 = boto_client("s3", server.url)
        s3.create_bucket(Bucket="huge")
        s3.upload_file(str(source), "huge", "huge.bin")
        with httpx.stream("GET", f"{server.url}/huge/huge.bin") as response:
            digest = hashlib.md5()
            for chunk in response.iter_bytes():
                digest.update(chunk)
        assert server.process is not None
        status = Path(f"/proc/{server.process.pid}/status").read_text()
    expected = hashlib.md5()
    with source.open("rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            expected.update(chunk)
    assert digest.digest() == expected.digest()
    peak_kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
    assert peak_kib < 300 * 1024, f"server peak RSS {peak_kib // 1024} MiB for a 512 MiB object"
