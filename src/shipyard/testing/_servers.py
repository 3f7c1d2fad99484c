"""Model servers that do what a test says, and an executor that runs work at once."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from shipyard.compute._serving import ModelRequest, ModelServer, ModelServerError, ModelServers

Respond = Callable[["FakeModelServer", bytes], bytes]


class FakeModelServer(ModelServer):
    """A model server that is healthy until the test calls :meth:`die`, and answers
    :meth:`invoke` with its pool's response."""

    def __init__(self, servers: FakeModelServers, request: ModelRequest, port: int) -> None:
        super().__init__(request, "fake", port)
        self._servers = servers
        self._alive = True
        self._ended = ""

    @property
    def alive(self) -> bool:
        return self._alive

    @property
    def ended(self) -> str:
        return self._ended or "running"

    def die(self, how: str = "exit code 137") -> None:
        """End it, as a killed process ends (its endpoint should replace it)."""
        self._alive = False
        self._ended = how

    def invoke(self, body: bytes) -> bytes:
        """What InvokeEndpoint would get from it."""
        if not self._alive:
            raise ConnectionError(f"the model server {self.instance_dir.name} has ended ({self._ended})")
        respond = self._servers.respond
        return respond(self, body) if callable(respond) else respond


class FakeModelServers(ModelServers):
    """Model servers without processes: each starts at once and is healthy, unless its model is
    one the test made fail (``failing``: model data URL → the error its ``model_fn`` raises).

    Args:
        respond: The answer to every invocation, or a function of the server and the request body.
    """

    def __init__(self, respond: bytes | Respond = b"[0]") -> None:
        self.respond = respond
        self.failing: dict[str, str] = {}
        self.started: list[FakeModelServer] = []  # every server started, replacements too
        self.stopped: list[FakeModelServer] = []
        self._ports = itertools.count(9000)
        self._lock = threading.Lock()

    @property
    def running(self) -> list[FakeModelServer]:
        """Servers started, alive and not stopped."""
        with self._lock:
            return [s for s in self.started if s.alive and s not in self.stopped]

    def start(self, request: ModelRequest) -> FakeModelServer:
        with self._lock:
            server = FakeModelServer(self, request, next(self._ports))
            self.started.append(server)
        return server

    def replace(self, dead: ModelServer) -> FakeModelServer:
        return self.start(dead.request)

    def stop(self, server: ModelServer) -> None:
        assert isinstance(server, FakeModelServer)
        with self._lock:
            if server not in self.stopped:
                self.stopped.append(server)
        if server.alive:
            server.die("stopped")

    def wait_healthy(
        self, server: ModelServer, timeout: float, gone: Callable[[], bool] = lambda: False
    ) -> None:
        if not server.alive:
            raise ModelServerError(f"the model server ended ({server.ended})")
        reason = self.failing.get(server.request.container.model_data_url or "")
        if reason is not None:
            self.stop(server)
            raise ModelServerError(f"loading the model failed: {reason}")
        if gone():
            self.stop(server)
            raise ModelServerError("the endpoint is being deleted")


class InlineExecutor(Executor):
    """Runs what is submitted at once, in the caller's thread: a service that hands slow work
    to an executor then moves pass by pass, deterministically."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future
