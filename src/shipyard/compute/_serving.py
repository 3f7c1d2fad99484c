"""The model-server interface: where endpoint instances run, beside :class:`~shipyard.compute.Backend`.

A backend that can serve models has a :class:`ModelServers` (the local backend: processes on this
machine; Ray: actors on the cluster); :class:`~shipyard.compute.Backends` says which one serves an
instance type, as it does for jobs. The endpoint service decides what should run; a
``ModelServers`` only starts, checks and stops what it is told to.

Contract: every method may be called from several threads at once. ``start``, ``replace`` and
``wait_healthy`` block (fetching the model, building its environment, waiting for ``GET /ping``):
the endpoint service calls them from worker threads, never from its loop. ``stop`` may be called
more than once for the same server.
"""

from __future__ import annotations

import abc
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from shipyard.core.hosting import ContainerSpec
from shipyard.envs import EnvironmentSpec
from shipyard.runtime.contract import TOKEN_HEADER


class ModelServerError(Exception):
    """A model server that did not come up; the message says why, with its log's tail."""


@dataclasses.dataclass(frozen=True)
class ModelRequest:
    """One instance of a production variant to bring up. ``instance_dir`` is its folder on the
    Shipyard server (its log is kept there); ``environment`` was resolved from the image there.
    ``memory_limit_mb``: the memory the model server may use (a serverless variant's
    MemorySizeInMB), where the model servers can limit it; None: the machine's."""

    instance_dir: Path
    endpoint: str
    variant: str
    instance_type: str
    container: ContainerSpec
    environment: EnvironmentSpec
    memory_limit_mb: int | None = None


class ModelServer:
    """A running model server (one endpoint instance), wherever it runs."""

    def __init__(self, request: ModelRequest, host: str, port: int, token: str = "") -> None:
        self.request = request
        self.host = host
        self.port = port
        self.token = token  # what the model server wants in X-Shipyard-Token ("": nothing)
        self.in_flight = 0  # requests sent and not yet answered (kept by the runtime's event loop)

    @property
    def instance_dir(self) -> Path:
        return self.request.instance_dir

    @property
    def headers(self) -> dict[str, str]:
        """What every request to the model server carries (its token)."""
        return {TOKEN_HEADER: self.token} if self.token else {}

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.instance_dir / "log.jsonl"

    @property
    def alive(self) -> bool:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """The model server's process, when it runs on this machine (for utilization samples)."""
        return None

    @property
    def ended(self) -> str:
        """How it ended, for logs (its exit code, or why it was lost)."""
        return "unknown"


class ModelServers(abc.ABC):
    """Starts, checks and stops model servers (one kind per backend; see the module docstring)."""

    @abc.abstractmethod
    def start(self, request: ModelRequest) -> ModelServer:
        """Prepare and start a model server (not waiting for it to be healthy).

        Raises:
            ModelServerError: it could not be started (the reason, for the endpoint's FailureReason).
        """

    @abc.abstractmethod
    def replace(self, dead: ModelServer) -> ModelServer:
        """Start a model server like ``dead``, which ended (the same instance folder)."""

    @abc.abstractmethod
    def stop(self, server: ModelServer) -> None:
        """End a model server (it may have ended already)."""

    def close(self) -> None:
        """Release what this holds for itself (model servers are stopped by their endpoints)."""
        return

    def wait_healthy(
        self, server: ModelServer, timeout: float, gone: Callable[[], bool] = lambda: False
    ) -> None:
        """Wait for ``GET /ping`` to answer 200; stop the server and raise ModelServerError (with
        its log's tail) when it ends, fails to load its model, takes longer than ``timeout``
        seconds, or ``gone()`` says it is no longer wanted."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if not server.alive:
                    raise ModelServerError(
                        f"the model server ended ({server.ended}); its log ends:\n"
                        + "\n".join(log_tail(server.log_path))
                    )
                try:
                    answer = client.get(f"{server.url}/ping", headers=server.headers)
                except httpx.TransportError:
                    answer = None
                if answer is not None and answer.status_code == 200:
                    return
                if answer is not None and answer.text.startswith("loading the model failed"):
                    self.stop(server)
                    raise ModelServerError(
                        f"{answer.text}; the model server's log ends:\n"
                        + "\n".join(log_tail(server.log_path))
                    )
                if gone() or time.monotonic() > deadline:
                    self.stop(server)
                    if gone():
                        raise ModelServerError("the endpoint is being deleted")
                    raise ModelServerError(
                        f"the model server did not become healthy in {timeout:g} s; its log ends:\n"
                        + "\n".join(log_tail(server.log_path))
                    )
                time.sleep(0.05)


def log_tail(path: Path, count: int = 20) -> list[str]:
    """The last ``count`` lines of a model server's ``log.jsonl``."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[-count:]
    except FileNotFoundError:
        return []
    return [json.loads(line)["m"] for line in lines if line.strip()]
