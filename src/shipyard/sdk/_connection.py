"""Finding the server: ``SHIPYARD_URL`` (or the config file), else the embedded default, started
when it is not running.

The embedded default serves ``~/.shipyard`` (or ``$SHIPYARD_HOME``) from a server process of its
own, detached, so that jobs outlive the notebook that launched them; a running server announces
itself in ``<data dir>/server.json``, and the next connection reuses it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from shipyard.errors import ConfigurationError

DEFAULT_BUCKET = "shipyard"
ROLE = "arn:aws:iam::000000000000:role/Shipyard"  # the API wants one; Shipyard has no IAM to check it


class Connection:
    """A Shipyard server, and the clients that talk to it.

    Args:
        url: The server's address, e.g. ``http://127.0.0.1:8300``.
        access_key_id / secret_access_key: The server's credentials, when it requires them.
    """

    def __init__(
        self, url: str, access_key_id: str | None = None, secret_access_key: str | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.access_key_id = access_key_id or "shipyard"
        self.secret_access_key = secret_access_key or "shipyard"
        self._bucket_ready = False

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
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(retries={"mode": "standard"}),
        )

    def native(self, path: str, body: Any = None) -> Any:
        """GET on the native API (``/api/v1/...``), or POST ``body`` as JSON."""
        headers = {"Authorization": f"Bearer {self.secret_access_key}"}
        url = f"{self.url}/api/v1/{path}"
        answer = (
            httpx.get(url, headers=headers) if body is None else httpx.post(url, json=body, headers=headers)
        )
        answer.raise_for_status()
        return answer.json()

    @property
    def bucket(self) -> str:
        """The bucket the SDK keeps code and uploaded data in (made on first use)."""
        if not self._bucket_ready:
            s3 = self.client("s3")
            with contextlib.suppress(
                s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists
            ):
                s3.create_bucket(Bucket=DEFAULT_BUCKET)
            self._bucket_ready = True
        return DEFAULT_BUCKET


# The sagemaker SDK's config for a session pointed at Shipyard (`shipyard sagemaker-env` writes it):
# no telemetry calls to AWS, and the SDK's default bucket is Shipyard's.
SAGEMAKER_SDK_CONFIG = """\
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
      Session:
        DefaultS3Bucket: shipyard
"""

_default: Connection | None = None


def connect(url: str | None = None, *, data_dir: str | Path | None = None) -> Connection:
    """The server to use: ``url``; else, unless ``data_dir`` is given, ``$SHIPYARD_URL`` or ``url``
    in the ``[client]`` table of the config file; else the embedded default on ``data_dir``
    (``$SHIPYARD_HOME``, else ``~/.shipyard``), started in the background if it is not running.
    Credentials come from ``$SHIPYARD_ACCESS_KEY_ID``/``$SHIPYARD_SECRET_ACCESS_KEY`` or the same
    table. Without arguments the connection is made once and shared.

    The config file is ``$SHIPYARD_CONFIG``, else ``<data dir>/config.toml``::

        [client]
        url = "http://gpu-box.lab:8300"
        access_key_id = "..."
        secret_access_key = "..."
    """
    global _default
    if url is None and data_dir is None and _default is not None:
        return _default
    client = _client_config(data_dir)
    key = os.environ.get("SHIPYARD_ACCESS_KEY_ID") or client.get("access_key_id")
    secret = os.environ.get("SHIPYARD_SECRET_ACCESS_KEY") or client.get("secret_access_key")
    found = url or (None if data_dir is not None else os.environ.get("SHIPYARD_URL") or client.get("url"))
    connection = Connection(found or _embedded(data_dir), key, secret)
    if url is None and data_dir is None:
        _default = connection
    return connection


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


def _embedded(data_dir: str | Path | None) -> str:
    folder = _data_dir(data_dir)
    announce = folder / "server.json"
    with contextlib.suppress(OSError, ValueError):
        url = str(json.loads(announce.read_text())["url"])
        if _healthy(url):
            return url
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        announce.unlink()  # a server that did not stop cleanly
    port = 8300 if _port_free(8300) else _free_port()
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
                return url
        time.sleep(0.1)
    tail = (folder / "server.log").read_text(errors="replace").splitlines()[-15:]
    raise ConfigurationError(
        f"The embedded Shipyard server on {folder} did not start; its log ends:\n" + "\n".join(tail)
    )


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
    user, day, month and tag:<key>: each row's ``unit_seconds``, ``cost_usd`` (the site's prices)
    and ``sagemaker_cost_usd``. From ``since`` (default: the first of this month) to ``until``
    (default: now). A pandas DataFrame when pandas is installed, else a list of dicts."""
    params: list[tuple[str, str | int | float | bool | None]] = [("group_by", g) for g in by]
    for key, value in (("start", since), ("end", until)):
        if value is not None:
            params.append((key, value.isoformat() if isinstance(value, dt.datetime) else value))
    found = connection or connect()
    answer = httpx.get(
        f"{found.url}/api/v1/costs",
        params=params,
        headers={"Authorization": f"Bearer {found.secret_access_key}"},
        timeout=60,
    )
    answer.raise_for_status()
    rows = [
        {**r, "cost_usd": float(r["cost_usd"]), "sagemaker_cost_usd": float(r["sagemaker_cost_usd"])}
        for r in answer.json()["rows"]
    ]
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows, columns=[*by, "unit_seconds", "cost_usd", "sagemaker_cost_usd"])
