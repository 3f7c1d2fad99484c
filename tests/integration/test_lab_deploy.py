"""What docs/lab.md ships for running a lab's server: the systemd unit parses and its hardening
leaves the job sandbox working; the nginx snippet, serving TLS with a self-signed certificate in
front of a real server, carries boto3's signed S3 and SageMaker calls (a bucket, an object larger
than nginx's default body limit, a multipart upload, ListTrainingJobs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess, free_port

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KEY, SECRET = "AKIALABROOTKEY000000", "lab-root-secret-for-the-proxy-test"


def _unit_options(section: str) -> dict[str, str]:
    options: dict[str, str] = {}
    current = None
    for line in (DEPLOY / "shipyard.service").read_text().splitlines():
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and "=" in line and not line.startswith("#"):
            name, _, value = line.partition("=")
            options[name] = value
    return options


def test_the_systemd_unit_parses(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit file could not be checked")
    # The venv's shipyard in place of /opt/shipyard's, which verify wants to exist.
    shipyard = Path(sys.executable).with_name("shipyard")
    unit = tmp_path / "shipyard.service"
    unit.write_text(
        (DEPLOY / "shipyard.service").read_text().replace("/opt/shipyard/bin/shipyard", str(shipyard))
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "shipyard.service" not in result.stderr, result.stderr  # no warning about the unit either
    service = _unit_options("Service")
    assert service["Restart"] == "on-failure" and service["User"] == "shipyard"
    assert "--data-dir /var/lib/shipyard" in service["ExecStart"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("bwrap") is None, reason="needs root and bubblewrap")
def test_the_units_hardening_leaves_the_sandbox_working(tmp_path: Path) -> None:
    """The unit's options as the kernel sees them — a read-only root with the data dir writable
    (ProtectSystem=strict, ReadWritePaths), NoNewPrivileges, a user of its own — then a job's
    sandbox made as Shipyard makes it. And one left out on purpose (ProtectKernelTunables, a
    read-only mount over /proc/sys) does break it, as the unit's comment says."""
    service = _unit_options("Service")
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"
    for absent in (
        "ProtectKernelTunables",
        "ProtectProc",
        "RestrictNamespaces",
        "PrivateDevices",
        "SystemCallFilter",
    ):
        assert absent not in service
    import tempfile

    from shipyard.runtime._sandbox import sandbox_command

    data = Path(tempfile.mkdtemp(prefix="shipyard-unit-"))  # a path the service's user can reach
    ml = data / "jobs" / "job" / "ml"
    (ml / "input" / "data").mkdir(parents=True)
    (data / "hosts").write_text("127.0.0.1 algo-1\n")
    for path in (data, data / "jobs", ml.parent, ml, ml / "input", ml / "input" / "data"):
        shutil.chown(path, 65534, 65534)
    job = sandbox_command(
        ["sh", "-c", "echo $$ > /opt/ml/out"],
        ml_dir=ml,
        host="algo-1",
        hosts_file=data / "hosts",
        hide=[],
        keep=[],
        cwd="/opt/ml",
    )
    as_service = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs", *job]

    def run(extra_mounts: str) -> subprocess.CompletedProcess[str]:
        # In a mount namespace of its own, as systemd makes for the unit: / read-only in place
        # (ProtectSystem=strict), the data dir bound writable over itself (ReadWritePaths).
        script = (
            f"mount -o remount,bind,ro / && mount --bind {data} {data} && mount -o remount,bind,rw {data} && "
            f"{extra_mounts}exec {' '.join(_quote(a) for a in as_service)}"
        )
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
        )

    try:
        done = run("")
        assert done.returncode == 0, done.stderr
        assert (ml / "out").read_text() == "2\n"  # in the job's own pid namespace, writing its folder
        (ml / "out").unlink()
        broken = run("mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys && ")  # Tunables
        assert broken.returncode != 0 and "Can't mount proc" in broken.stderr
    finally:
        shutil.rmtree(data)


def _quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)


def _nginx() -> str:
    """nginx, installed from Debian when it is missing (as scripts/test installs chromium)."""
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nginx"],
            capture_output=True,
            timeout=600,
            env=env,
        )
        found = shutil.which("nginx") or (
            "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None
        )
    if found is None:
        pytest.skip(
            "nginx is not installed and could not be (apt-get as root): the proxy snippet was not tested"
        )
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the proxy test")
    return found


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server whose every request must be signed (a root key pair), as a lab's is."""
    data_dir = tmp_path_factory.mktemp("lab-server")
    env = {"SHIPYARD_ACCESS_KEY_ID": KEY, "SHIPYARD_SECRET_ACCESS_KEY": SECRET}
    with ServerProcess(data_dir, env=env) as server:
        yield server


def _proxy(
    tmp: Path, upstream_port: int, *, host_header: str = "$http_host"
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """deploy/nginx.conf with this test's ports and certificate, run by nginx in the foreground;
    its https URL and the certificate to trust."""
    nginx = _nginx()
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    tls_port, http_port = free_port(), free_port()
    site = (DEPLOY / "nginx.conf").read_text()
    for old, new in (
        ("server 127.0.0.1:8300;", f"server 127.0.0.1:{upstream_port};"),
        ("listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;"),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("/etc/ssl/certs/shipyard.lab.example.pem", str(cert)),
        ("/etc/ssl/private/shipyard.lab.example.key", str(key)),
        ("proxy_set_header Host              $http_host;", f"proxy_set_header Host {host_header};"),
    ):
        assert old in site, old
        site = site.replace(old, new)
    site = "\n".join(line for line in site.splitlines() if "listen [::]" not in line)
    (tmp / "shipyard.conf").write_text(site)
    (tmp / "nginx.conf").write_text(
        f"worker_processes 1;\nerror_log {tmp}/error.log;\npid {tmp}/nginx.pid;\nevents {{}}\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {tmp}/body;\n  proxy_temp_path {tmp}/proxy;\n"
        f"  fastcgi_temp_path {tmp}/fastcgi;\n  uwsgi_temp_path {tmp}/uwsgi;\n  scgi_temp_path {tmp}/scgi;\n"
        f"  include {tmp}/shipyard.conf;\n}}\n"
    )
    process = subprocess.Popen(
        [nginx, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"https://127.0.0.1:{tls_port}"
    import ssl

    import httpx

    trust = ssl.create_default_context(cafile=str(cert))
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/api/v1/health", verify=trust, timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            errors = process.stderr.read().decode() if process.stderr else ""
            pytest.fail(
                f"nginx did not serve {url}: {errors}{(tmp / 'error.log').read_text(errors='replace')}"
            )
        time.sleep(0.05)
    return process, url, cert


def _client(service: str, url: str, cert: Path) -> object:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        verify=str(cert),
        config=Config(retries={"mode": "standard", "max_attempts": 2}),
    )


def test_boto3_through_the_nginx_snippet_with_tls(signed_server: ServerProcess, tmp_path: Path) -> None:
    process, url, cert = _proxy(tmp_path, signed_server.port)
    try:
        s3: object = _client("s3", url, cert)
        s3.create_bucket(Bucket="lab-data")  # type: ignore[attr-defined]
        body = os.urandom(3 * 2**20)  # past nginx's default 1 MiB body limit
        s3.put_object(Bucket="lab-data", Key="raw/train.bin", Body=body)  # type: ignore[attr-defined]
        got = s3.get_object(Bucket="lab-data", Key="raw/train.bin")["Body"].read()  # type: ignore[attr-defined]
        assert got == body
        from boto3.s3.transfer import TransferConfig

        large = tmp_path / "large.bin"
        large.write_bytes(os.urandom(12 * 2**20))
        s3.upload_file(  # type: ignore[attr-defined]
            str(large),
            "lab-data",
            "big/large.bin",
            Config=TransferConfig(multipart_threshold=5 * 2**20, multipart_chunksize=5 * 2**20),
        )
        head = s3.head_object(Bucket="lab-data", Key="big/large.bin")  # type: ignore[attr-defined]
        assert head["ContentLength"] == 12 * 2**20 and head["ETag"].endswith('-3"')  # three parts
        listed = s3.list_objects_v2(Bucket="lab-data")["Contents"]  # type: ignore[attr-defined]
        assert [o["Key"] for o in listed] == ["big/large.bin", "raw/train.bin"]
        sagemaker = _client("sagemaker", url, cert)
        assert sagemaker.list_training_jobs()["TrainingJobSummaries"] == []  # type: ignore[attr-defined]
        # Shipyard's CLI too: STS through boto3, /api/v1/users signed by the SDK's NativeAuth.
        env = {
            **os.environ,
            "AWS_CA_BUNDLE": str(cert),
            "SSL_CERT_FILE": str(cert),
            "SHIPYARD_ACCESS_KEY_ID": KEY,
            "SHIPYARD_SECRET_ACCESS_KEY": SECRET,
        }
        for args, expected in (
            (["whoami"], "arn:aws:iam::000000000000:root\n"),
            (["users", "list", "--json"], "[]\n"),
        ):
            done = subprocess.run(
                [sys.executable, "-m", "shipyard", *args, "--url", url],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            assert done.returncode == 0 and done.stdout.startswith(expected), done.stdout + done.stderr
    finally:
        process.terminate()
        process.wait(30)


def test_a_proxy_that_drops_the_port_from_host_breaks_every_signature(
    signed_server: ServerProcess, tmp_path: Path
) -> None:
    """Why the snippet passes $http_host: with $host the port is gone from what the server
    checks the signature against."""
    process, url, cert = _proxy(tmp_path, signed_server.port, host_header="$host")
    try:
        with pytest.raises(ClientError) as refused:
            _client("s3", url, cert).list_buckets()  # type: ignore[attr-defined]
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        assert "signature does not match" in refused.value.response["Error"]["Message"]
    finally:
        process.terminate()
        process.wait(30)
