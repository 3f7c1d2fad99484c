"""Finding the server: ``SHIPYARD_URL`` (or the config file), else the embedded default, started
when it is not running.

The embedded default serves ``~/.shipyard`` (or ``$SHIPYARD_HOME``) from a server process of its
own, detached, so that jobs outlive the notebook that launched them; a running server announces
itself in ``<data dir>/server.json``, and the next connection reuses it.

Credentials are found by :func:`find_credentials` (in its docstring's order), and every call a
connection makes is signed in one of two places: boto3's clients (SigV4, by botocore) and
:class:`NativeAuth` for the native API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Generator, Sequence
from pathlib import Path
from typing import Any

import httpx

from shipyard.errors import ConfigurationError, ShipyardError

DEFAULT_BUCKET = "shipyard"
ROLE = "arn:aws:iam::000000000000:role/ShipyardExecutionRole"  # when the server cannot say which
EXECUTION_ROLE = "ShipyardExecutionRole"  # the role jobs act as unless a site makes others


@dataclasses.dataclass(frozen=True, repr=False)
class Credentials:
    """A key pair (with a job session's token) and where it was found, for messages."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    source: str = "arguments"

    def __repr__(self) -> str:  # never the secret in a log line or a traceback
        return f"Credentials({self.access_key_id}, from {self.source})"


ANONYMOUS = Credentials("shipyard", "shipyard", source="none (a server without auth accepts any key)")
ADMIN_CREDENTIALS = "admin-credentials"  # the local administrator's key, in the data dir (0600)


class NativeAuth(httpx.Auth):
    """How the SDK and CLI sign a native API call (``/api/v1/...``): SigV4 with the
    connection's key, as botocore signs an AWS call (service ``execute-api``), so the secret
    never travels. The one place to change when the native API's header form changes."""

    requires_request_body = True  # the body's hash is signed

    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials

        signed = botocore.awsrequest.AWSRequest(
            method=request.method,
            url=str(request.url),
            data=request.content,
            headers={k: v for k, v in request.headers.items() if k.lower() == "content-type"},
        )
        c = self.credentials
        botocore.auth.SigV4Auth(
            botocore.credentials.Credentials(c.access_key_id, c.secret_access_key, c.session_token),
            "execute-api",
            "us-east-1",
        ).add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]
        yield request


class Connection:
    """A Shipyard server, and the clients that talk to it.

    Args:
        url: The server's address, e.g. ``http://127.0.0.1:8300``.
        access_key_id / secret_access_key: The key to sign with; when not given,
            :func:`find_credentials` finds one.
    """

    def __init__(
        self,
        url: str,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        *,
        credentials: Credentials | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        if credentials is None:
            credentials = find_credentials(self.url, access_key_id, secret_access_key)
        self.credentials = credentials
        self._bucket_ready = False

    @property
    def access_key_id(self) -> str:
        """The key id requests are signed with (``credentials.source`` says where it came from)."""
        return self.credentials.access_key_id

    @property
    def secret_access_key(self) -> str:
        """Its secret."""
        return self.credentials.secret_access_key

    def __repr__(self) -> str:
        return f"Connection({self.url!r})"

    @functools.cache  # noqa: B019 - one client per service for the connection's life
    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` ("sagemaker", "s3", "logs", ...) aimed at this server."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name="us-east-1",
            aws_access_key_id=self.credentials.access_key_id,
            aws_secret_access_key=self.credentials.secret_access_key,
            aws_session_token=self.credentials.session_token,
            config=Config(retries={"mode": "standard"}),
        )

    @functools.cached_property
    def caller(self) -> tuple[str, str]:
        """Who this key acts as: ``(account, ARN)`` from STS GetCallerIdentity (asked once)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            me = self.client("sts").get_caller_identity()
        except (BotoCoreError, ClientError):
            return ROLE.split(":")[4], ""
        return str(me["Account"]), str(me["Arn"])

    @functools.cached_property
    def role(self) -> str:
        """The role the SDK's jobs, models and pipelines act as (their ``RoleArn``), found as
        ``sagemaker.get_execution_role()`` finds it: a job session's own role; for a user, the
        execution role the server answers to GetRole of the user's own name; else
        ``ShipyardExecutionRole``, in the caller's account."""
        from botocore.exceptions import BotoCoreError, ClientError

        account, arn = self.caller
        resource = arn.split(":", 5)[-1]
        if resource.startswith("assumed-role/"):
            return f"arn:aws:iam::{account}:role/{resource.split('/')[1]}"
        if resource.startswith("user/"):
            try:
                return str(self.client("iam").get_role(RoleName=resource.rsplit("/", 1)[-1])["Role"]["Arn"])
            except (BotoCoreError, ClientError):
                pass
        return f"arn:aws:iam::{account}:role/{EXECUTION_ROLE}"

    @functools.cached_property
    def bucket_name(self) -> str:
        """The bucket the SDK keeps code and uploads in: ``shipyard``, or for a user of a lab's
        server ``shipyard-<user>`` (a bucket is its creator's: one shared by everyone would be
        the first user's alone)."""
        resource = self.caller[1].split(":", 5)[-1]
        if not resource.startswith("user/"):
            return DEFAULT_BUCKET
        return user_bucket(resource.rsplit("/", 1)[-1])

    def request(self, method: str, path: str, *, timeout: float = 60, **kwargs: Any) -> httpx.Response:
        """A signed call to the native API (``path`` under ``/api/v1/``); the answer as it came
        (``kwargs``: httpx's ``params``, ``json``, ...)."""
        return httpx.request(
            method, f"{self.url}/api/v1/{path}", auth=NativeAuth(self.credentials), timeout=timeout, **kwargs
        )

    def native(self, path: str, body: Any = None) -> Any:
        """GET on the native API (``/api/v1/...``), or POST ``body`` as JSON."""
        answer = self.request("GET", path) if body is None else self.request("POST", path, json=body)
        answer.raise_for_status()
        return answer.json()

    @property
    def bucket(self) -> str:
        """The bucket the SDK keeps code and uploaded data in (:attr:`bucket_name`, made on
        first use)."""
        if not self._bucket_ready:
            s3 = self.client("s3")
            try:
                with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
                    s3.create_bucket(Bucket=self.bucket_name)
            except s3.exceptions.BucketAlreadyExists:
                # Someone else's (made before this user's first job, or a name two users map
                # to): code and data uploaded there would be theirs to read and to change.
                raise ShipyardError(
                    f"The bucket {self.bucket_name!r}, where the SDK keeps your code and uploads, "
                    "belongs to another user, so the SDK will not put your work in it: ask the "
                    "server's administrator to remove it (it may have been made to catch your uploads)"
                ) from None
            self._bucket_ready = True
        return self.bucket_name


def user_bucket(user: str) -> str:
    """``shipyard-<user>`` as S3 allows a bucket name (lower case; characters IAM allows in a
    name but S3 does not become ``-``; at most 63)."""
    import re

    name = re.sub(r"[^a-z0-9.-]", "-", user.lower())
    return f"{DEFAULT_BUCKET}-{name}"[:63].rstrip("-.")


# The sagemaker SDK's config for a session pointed at Shipyard (`shipyard sagemaker-env` writes it):
# no telemetry calls to AWS, and the SDK's default bucket is Shipyard's (the user's own on a lab's
# server: Connection.bucket_name).
SAGEMAKER_SDK_CONFIG = """\
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
      Session:
        DefaultS3Bucket: {bucket}
"""

_default: Connection | None = None


def connect(
    url: str | None = None,
    *,
    data_dir: str | Path | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
) -> Connection:
    """The server to use: ``url``; else, unless ``data_dir`` is given, ``$SHIPYARD_URL`` or ``url``
    in the ``[client]`` table of the config file; else the embedded default on ``data_dir``
    (``$SHIPYARD_HOME``, else ``~/.shipyard``), started in the background if it is not running.
    The key it signs with: ``access_key_id``/``secret_access_key``, else what
    :func:`find_credentials` finds. Without arguments the connection is made once and shared.

    The config file is ``$SHIPYARD_CONFIG``, else ``<data dir>/config.toml``::

        [client]
        url = "http://gpu-box.lab:8300"
        access_key_id = "..."
        secret_access_key = "..."
    """
    global _default
    shared = url is None and data_dir is None and access_key_id is None and secret_access_key is None
    if shared and _default is not None:
        return _default
    found = url or (None if data_dir is not None else configured_url())
    server = (found or _embedded(data_dir)).rstrip("/")
    connection = Connection(
        server, credentials=find_credentials(server, access_key_id, secret_access_key, data_dir=data_dir)
    )
    if shared:
        _default = connection
    return connection


def configured_url(data_dir: str | Path | None = None) -> str | None:
    """The server named by ``$SHIPYARD_URL``, else by the config file's ``[client]`` table."""
    return os.environ.get("SHIPYARD_URL") or _client_config(data_dir).get("url")


def find_credentials(
    url: str,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    *,
    data_dir: str | Path | None = None,
) -> Credentials:
    """The key to sign requests to the server at ``url`` with, the first found of:

    1. ``access_key_id``/``secret_access_key`` (arguments), else ``$SHIPYARD_ACCESS_KEY_ID``/
       ``$SHIPYARD_SECRET_ACCESS_KEY``, else the config file's ``[client]`` pair;
    2. ``$AWS_ACCESS_KEY_ID``/``$AWS_SECRET_ACCESS_KEY`` (and ``$AWS_SESSION_TOKEN``) when
       ``$AWS_ENDPOINT_URL`` is this server (as ``shipyard sagemaker-env`` sets them, and as a
       job's environment has them);
    3. ``<data dir>/admin-credentials`` when this user may read it: the local administrator's
       key, written by the first start with ``auth = "on"`` (or ``shipyard users add --admin``);
    4. none: a placeholder, which a server without auth accepts.

    Raises:
        ConfigurationError: one of a pair given without the other.
    """
    client = _client_config(data_dir)
    for key, secret, source in (
        (access_key_id, secret_access_key, "arguments"),
        (
            os.environ.get("SHIPYARD_ACCESS_KEY_ID"),
            os.environ.get("SHIPYARD_SECRET_ACCESS_KEY"),
            "$SHIPYARD_ACCESS_KEY_ID",
        ),
        (client.get("access_key_id"), client.get("secret_access_key"), "the config file's [client] table"),
    ):
        if key and secret:
            return Credentials(key, secret, source=source)
        if key or secret:
            given, missing = ("key id", "secret access key") if key else ("secret access key", "key id")
            raise ConfigurationError(
                f"The access {given} is given by {source} but the access {missing} is not: give both"
            )
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret and endpoint and same_server(endpoint, url):
        token = os.environ.get("AWS_SESSION_TOKEN") or None
        return Credentials(key, secret, token, source="$AWS_ACCESS_KEY_ID ($AWS_ENDPOINT_URL is this server)")
    path = _data_dir(data_dir) / ADMIN_CREDENTIALS
    found = read_credentials_file(path)
    if found is not None:
        return Credentials(*found, source=str(path))
    return ANONYMOUS


def read_credentials_file(path: Path, profile: str = "default") -> tuple[str, str] | None:
    """The key pair of ``profile`` in an AWS shared-credentials file; None when it cannot be
    read (not there, or not this user's) or has none."""
    import configparser

    parser = configparser.ConfigParser(interpolation=None)
    try:
        with path.open() as text:
            parser.read_file(text)
    except (OSError, UnicodeDecodeError, configparser.Error):
        return None
    key = parser.get(profile, "aws_access_key_id", fallback=None)
    secret = parser.get(profile, "aws_secret_access_key", fallback=None)
    return (key, secret) if key and secret else None


def same_server(a: str, b: str) -> bool:
    """Whether two URLs name the same server (scheme, host and port; a default port may be left
    out, the host's case and a trailing slash do not count)."""
    from urllib.parse import urlsplit

    def key(url: str) -> tuple[str, str, int | None]:
        parts = urlsplit(url.strip())
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError:
            port = None
        return scheme, (parts.hostname or "").lower(), port or {"http": 80, "https": 443}.get(scheme)

    return key(a) == key(b)


_CLIENT_KEYS = ("url", "access_key_id", "secret_access_key")


def _client_config(data_dir: str | Path | None) -> dict[str, str]:
    """The ``[client]`` table of the config file (empty when there is none)."""
    import tomllib

    named = os.environ.get("SHIPYARD_CONFIG")
    path = Path(named).expanduser() if named else _data_dir(data_dir) / "config.toml"
    try:
        table = tomllib.loads(path.read_text()).get("client", {})
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError(f"Config file {str(path)!r} cannot be read: {exc}") from None
    for key, value in table.items():
        if key not in _CLIENT_KEYS or not isinstance(value, str):
            raise ConfigurationError(
                f"Config file {str(path)!r}: [client] {key} = {value!r} is not a known client setting "
                f"(known: {', '.join(_CLIENT_KEYS)}, as strings)"
            )
    return dict(table)


def _data_dir(data_dir: str | Path | None) -> Path:
    return Path(data_dir or os.environ.get("SHIPYARD_HOME") or Path.home() / ".shipyard").expanduser()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def running_server(data_dir: str | Path | None = None) -> str | None:
    """The URL of the server running on the data dir (``$SHIPYARD_HOME``, else ``~/.shipyard``),
    as its ``server.json`` announces it, if it answers; else None."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        url = str(json.loads((_data_dir(data_dir) / "server.json").read_text())["url"])
        if _healthy(url):
            return url
    return None


def _embedded(data_dir: str | Path | None) -> str:
    folder = _data_dir(data_dir)
    announce = folder / "server.json"
    running = running_server(data_dir)
    if running is not None:
        return running
    port = embedded_port(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        announce.unlink()  # a server that did not stop cleanly
    with (folder / "server.log").open("ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "shipyard", "server", "--data-dir", str(folder), "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # it outlives this process: jobs outlive the notebook
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):
            url = str(json.loads(announce.read_text())["url"])
            if _healthy(url):
                print(
                    f"Started a Shipyard server at {url} (data in {folder}; `shipyard stop` stops it)",
                    file=sys.stderr,
                )
                return url
        time.sleep(0.1)
    tail = (folder / "server.log").read_text(errors="replace").splitlines()[-15:]
    raise ConfigurationError(
        f"The embedded Shipyard server on {folder} did not start; its log ends:\n" + "\n".join(tail)
    )


def embedded_port(folder: Path) -> int:
    """The port the embedded server on ``folder`` is started on: the one ``$SHIPYARD_PORT`` or
    the config file names, as ``shipyard server`` reads them (an error if another program holds
    it); else 8300 when free, else any free port."""
    from shipyard.config import DEFAULT_PORT, Settings

    port = Settings.load({"data_dir": folder}).port
    if port != DEFAULT_PORT or os.environ.get("SHIPYARD_PORT"):
        if not _port_free(port):
            raise ConfigurationError(
                f"Port {port} (SHIPYARD_PORT or the config file's port) is in use by another program: "
                f"free it, or name another port"
            )
        return port
    return DEFAULT_PORT if _port_free(DEFAULT_PORT) else _free_port()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def instance_types(kind: str | None = None, connection: Connection | None = None) -> list[dict[str, Any]]:
    """The server's instance catalog: each type's vCPUs, memory, GPUs and hourly prices (``kind``:
    only types offered for "training", "processing", "transform" or "hosting")."""
    found = (connection or connect()).native("instance-types" + (f"?kind={kind}" if kind else ""))
    return list(found)


def stop_embedded(data_dir: str | Path | None = None, *, timeout: float = 60) -> str | None:
    """Stop the embedded server on ``data_dir`` (``$SHIPYARD_HOME``, else ``~/.shipyard``) and wait
    until it has exited. Running jobs go on; the next server on the data dir follows them again.
    Its URL, or None if none was running."""
    import signal

    folder = _data_dir(data_dir)
    announce = folder / "server.json"
    try:
        found = json.loads(announce.read_text())
        url, pid = str(found["url"]), int(found["pid"])
    except (OSError, ValueError, KeyError):
        return None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:  # gone without cleaning up
        announce.unlink(missing_ok=True)
        return None
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            raise ConfigurationError(
                f"The server on {folder} (pid {pid}) did not stop within {timeout:.0f} s"
            )
        time.sleep(0.05)
    return url


def _alive(pid: int) -> bool:
    try:  # a server this process started is its child: reap it
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def costs(
    by: Sequence[str] = ("kind",),
    *,
    since: str | dt.datetime | None = None,
    until: str | dt.datetime | None = None,
    connection: Connection | None = None,
) -> Any:
    """Spend from the server's ledger, grouped ``by`` any of kind, instance_type, resource, parent,
    user, day, month and tag:<key>: each row's ``unit_seconds`` (instance-seconds),
    ``gpu_seconds`` (of their GPUs), ``cost_usd`` (the site's prices) and ``sagemaker_cost_usd``. From ``since`` (default: the first of this month) to ``until``
    (default: now). A pandas DataFrame when pandas is installed, else a list of dicts."""
    params: list[tuple[str, str | int | float | bool | None]] = [("group_by", g) for g in by]
    for key, value in (("start", since), ("end", until)):
        if value is not None:
            params.append((key, value.isoformat() if isinstance(value, dt.datetime) else value))
    answer = (connection or connect()).request("GET", "costs", params=params)
    answer.raise_for_status()
    rows = [
        {**r, "cost_usd": float(r["cost_usd"]), "sagemaker_cost_usd": float(r["sagemaker_cost_usd"])}
        for r in answer.json()["rows"]
    ]
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows, columns=[*by, "unit_seconds", "gpu_seconds", "cost_usd", "sagemaker_cost_usd"])
