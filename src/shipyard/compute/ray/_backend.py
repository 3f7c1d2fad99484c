"""The Ray backend as the server sees it: a Backend (and model servers) whose work is done by the
Ray bridge, a child process (``_bridge.py``) that alone is connected to the cluster.

The bridge tells what changes (the cluster's resources, each instance's state) as it happens, so
the scheduler's questions (``is_alive``, ``capacity``) are answered from memory. When the bridge
ends (the cluster went away, or came back as a new one), jobs on Ray wait (``available`` is
false), model servers on Ray count as lost (they were the bridge's actors; the endpoint monitor
replaces them), and a new bridge is started, with growing pauses, until the cluster answers
again; it finds running job instances by name, or says they are gone.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from shipyard.compute._base import Backend, Feature, InstanceLaunch
from shipyard.compute._serving import ModelRequest, ModelServer, ModelServerError, ModelServers
from shipyard.compute.ray._bridge import launch_to_json, request_to_json
from shipyard.compute.ray._engine import _bundle
from shipyard.core.catalog import InstanceCatalog
from shipyard.core.credentials import SessionCredentials
from shipyard.core.placement import Resources, plan
from shipyard.envs import PackageSources
from shipyard.errors import ConfigurationError

log = logging.getLogger(__name__)

_FIRST_ANSWER_SECONDS = 120  # connecting to a cluster (a wrong token takes Ray ~20 s to say)
_CALL_SECONDS = 60
_MOST_PAUSE = 30.0


class BridgeDown(Exception):
    """No bridge is connected to the cluster at the moment."""


class RayBackend(Backend):
    """Job instances (and endpoint instances) on the Ray cluster at ``address``.

    Args:
        address: The cluster (``host:port`` of its GCS, or ``ray://host:10001``).
        token: Its token, when it uses token authentication.
        prefix: Names this server's actors and placement groups apart from another server's on
            the same cluster.
        object_store: How agents on the nodes reach the object store (S3: real S3, or the
            server's own S3 API at an address the nodes can reach).
        sandbox: The server's sandbox setting, applied on each node ("auto", "bwrap" or "off").

    Raises:
        ConfigurationError: the first bridge could not connect (the reason from Ray).
    """

    name = "ray"

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        prefix: str,
        object_store: Mapping[str, Any],
        sandbox: str = "auto",
    ) -> None:
        self.address = address
        self.sandbox = sandbox
        self._settings = {
            "address": address,
            "token": token,
            "prefix": prefix,
            "object_store": dict(object_store),
            "sandbox": sandbox,
        }
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, concurrent.futures.Future[Any]] = {}
        self._states: dict[str, dict[str, Any]] = {}  # actor name -> its last state
        self._handles: dict[str, Mapping[str, Any]] = {}  # job instances, to find again
        self._models: set[str] = set()  # model servers' actor names
        self._callbacks: list[Callable[[], None]] = []
        self._capacity = self._largest = Resources(0, 0, 0)
        self._demand: list[dict[str, float]] | None = None
        self._up = threading.Event()
        self._closed = False
        self._closing = threading.Event()
        self._process: subprocess.Popen[str] | None = None
        self._input: IO[str] | None = None
        first = self._start_bridge()  # the first failure is the server's to report
        if first is not None:
            raise ConfigurationError(first)
        threading.Thread(target=self._keep_bridge, name="shipyard-ray-bridge", daemon=True).start()

    # -- the bridge -------------------------------------------------------------------------------
    def _start_bridge(self) -> str | None:
        """Start a bridge and wait for its first word: None when it is connected, else why not."""
        read_fd, write_fd = os.pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "shipyard.compute.ray._bridge", str(write_fd)],
                stdin=subprocess.PIPE,
                pass_fds=(write_fd,),
                env=os.environ.copy(),
                text=True,
                bufsize=1,
            )
        finally:
            os.close(write_fd)
        stdin = process.stdin
        assert stdin is not None
        stdin.write(json.dumps(self._settings) + "\n")
        stdin.flush()
        answers = os.fdopen(read_fd, "r")
        first: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        reader = threading.Thread(
            target=self._read,
            args=(answers, first, process),
            name="shipyard-ray-bridge-reader",
            daemon=True,
        )
        reader.start()
        try:
            hello = first.result(timeout=_FIRST_ANSWER_SECONDS)
        except concurrent.futures.TimeoutError:
            hello = {"event": "failed", "reason": f"no answer in {_FIRST_ANSWER_SECONDS} s"}
        if hello.get("event") != "ready":
            process.kill()
            process.wait()
            reason = hello.get("reason") or "the Ray bridge exited before it connected"
            return str(reason)
        with self._lock:
            self._process, self._input = process, stdin
            self._capacity = Resources(**hello["total"])
            self._largest = Resources(**hello["largest"])
        self._up.set()
        return None

    def _read(
        self,
        answers: IO[str],
        first: concurrent.futures.Future[dict[str, Any]],
        process: subprocess.Popen[str],
    ) -> None:
        for line in answers:
            message = json.loads(line)
            if not first.done():
                first.set_result(message)
                continue
            if "id" in message:
                with self._lock:
                    future = self._pending.pop(message["id"], None)
                if future is None:
                    continue
                if "error" in message:
                    future.set_exception(RuntimeError(message["error"]))
                else:
                    future.set_result(message.get("result"))
            elif message["event"] == "instance":
                self._states[message["name"]] = message
                if not message["alive"]:
                    with self._lock:
                        self._handles.pop(message["name"], None)  # nothing left to find again
                    self._changed()
            elif message["event"] == "cluster":
                self._capacity = Resources(**message["total"])
                self._largest = Resources(**message["largest"])
            elif message["event"] == "changed":
                self._changed()
        if not first.done():
            first.set_result({"event": "failed"})
        self._bridge_ended(process)

    def _bridge_ended(self, process: subprocess.Popen[str]) -> None:
        """``process`` (a bridge) ended: what waited on it fails, and its model servers are lost."""
        with self._lock:
            if not self._up.is_set() or self._process is not process:
                return
            self._up.clear()
            pending, self._pending = self._pending, {}
            models = [name for name in self._models if self._states.get(name, {}).get("alive", True)]
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        for future in pending.values():
            future.set_exception(BridgeDown(f"the connection to the Ray cluster at {self.address} ended"))
        for name in models:  # they were the bridge's actors, and ended with it
            self._states[name] = {
                "name": name,
                "alive": False,
                "placed": True,
                "lost": "the Ray bridge ended",
            }
        if not self._closed:
            log.warning("Ray: the connection to the cluster at %s ended; connecting again", self.address)
        self._changed()

    def _keep_bridge(self) -> None:
        """Start a new bridge whenever the last one ended, pausing longer after each failure."""
        pause = 1.0
        while not self._closed:
            process = self._process
            if process is not None:
                process.wait()
            if self._closed:
                return
            if process is not None:
                self._bridge_ended(process)  # its reader may not have noticed yet
            self._closing.wait(pause)
            if self._closed:
                return
            reason = self._start_bridge()
            if reason is not None:
                log.warning(
                    "Ray: cannot connect to %s yet (%s); trying again in %g s", self.address, reason, pause
                )
                pause = min(pause * 2, _MOST_PAUSE)
                continue
            pause = 1.0
            log.info("Ray: connected to %s again", self.address)
            with self._lock:
                handles = list(self._handles.values())
            for handle in handles:  # found again by name, or known to be gone
                with contextlib.suppress(Exception):
                    self._states[str(handle["actor"])] = self._call("track", handle=handle)
            self._changed()

    def _call(self, op: str, wait: float = _CALL_SECONDS, **args: Any) -> Any:
        if not self._up.is_set():
            raise BridgeDown(f"the Ray cluster at {self.address} is not reachable at the moment")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            request_id = next(self._ids)
            self._pending[request_id] = future
            stdin = self._input
            assert stdin is not None
            try:
                stdin.write(json.dumps({"id": request_id, "op": op, "args": args}) + "\n")
                stdin.flush()
            except OSError:
                self._pending.pop(request_id, None)
                raise BridgeDown(f"the connection to the Ray cluster at {self.address} ended") from None
        return future.result(timeout=wait)

    def _changed(self) -> None:
        for callback in self._callbacks:
            callback()

    # -- the Backend interface ---------------------------------------------------------------------
    @property
    def capacity(self) -> Resources:
        return self._capacity

    @property
    def largest_node(self) -> Resources:
        return self._largest

    @property
    def available(self) -> bool:
        return self._up.is_set()

    @property
    def unsupported(self) -> Mapping[Feature, str]:
        if self._capacity.gpus == 0:
            return {Feature.GPU: f"the Ray cluster at {self.address} has no GPU"}
        return {}

    def launch(self, launches: Sequence[InstanceLaunch]) -> list[dict[str, Any]]:
        handles: list[dict[str, Any]] = self._call("launch", launches=[launch_to_json(x) for x in launches])
        with self._lock:
            for handle in handles:
                self._handles[handle["actor"]] = handle
        return handles

    def _state(self, handle: Mapping[str, Any]) -> dict[str, Any] | None:
        """An instance's state; None while no bridge can tell."""
        name = str(handle["actor"])
        state = self._states.get(name)
        if state is None:
            try:
                state = self._call("track", handle=dict(handle))
            except (BridgeDown, concurrent.futures.TimeoutError):
                return None
            with self._lock:
                self._handles[name] = handle
            self._states.setdefault(name, state)
        return self._states[name]

    def is_alive(self, handle: Mapping[str, Any]) -> bool:
        state = self._state(handle)
        return True if state is None else bool(state["alive"])  # unknown: wait for the cluster

    def placed(self, handle: Mapping[str, Any]) -> bool:
        state = self._state(handle)
        return True if state is None else bool(state["placed"])

    def lost(self, handle: Mapping[str, Any]) -> str | None:
        state = self._state(handle)
        return None if state is None else state.get("lost")

    def signal(self, handle: Mapping[str, Any], signum: int) -> None:
        with contextlib.suppress(BridgeDown):
            self._call("signal", handle=dict(handle), signum=signum)

    def kill(self, handle: Mapping[str, Any], instance_dir: Path) -> None:
        with contextlib.suppress(BridgeDown):
            self._call("kill", handle=dict(handle), dir=str(instance_dir))

    def demand(self, waiting: Sequence[Resources]) -> None:
        bundles = [_bundle(r) for r in waiting]
        if bundles == self._demand or not self._up.is_set():
            return
        self._demand = bundles
        with contextlib.suppress(BridgeDown, RuntimeError):
            self._call("demand", waiting=[dataclasses.asdict(r) for r in waiting])

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def close(self) -> None:
        """End the bridge; job instances run on (the next server finds them by name)."""
        self._closed = True
        self._closing.set()
        with self._lock:
            stdin, process = self._input, self._process
        if stdin is not None:
            with contextlib.suppress(OSError):
                stdin.close()
        if process is not None:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()

    # -- model servers ------------------------------------------------------------------------------
    def model_alive(self, name: str) -> bool:
        state = self._states.get(name)
        return True if state is None else bool(state["alive"])

    def model_lost(self, name: str) -> str:
        return str(self._states.get(name, {}).get("lost") or "its model server exited")

    def start_model(
        self, request: ModelRequest, bundle: Mapping[str, float], hosting: Mapping[str, Any], timeout: float
    ) -> dict[str, Any]:
        answer: dict[str, Any] = self._call(
            "start_model",
            wait=timeout + _CALL_SECONDS,
            request=request_to_json(request),
            bundle=dict(bundle),
            hosting=dict(hosting),
            timeout=timeout,
        )
        with self._lock:
            self._models.add(answer["name"])
        return answer

    def stop_model(self, name: str) -> None:
        with contextlib.suppress(BridgeDown):
            self._call("stop_model", name=name)
        with self._lock:
            self._models.discard(name)


class RayModelServer(ModelServer):
    """A model server in a Ray actor."""

    def __init__(
        self, request: ModelRequest, host: str, port: int, token: str, name: str, backend: RayBackend
    ) -> None:
        super().__init__(request, host, port, token)
        self.name = name
        self._backend = backend

    @property
    def alive(self) -> bool:
        return self._backend.model_alive(self.name)

    @property
    def ended(self) -> str:
        return self._backend.model_lost(self.name)


class RayModelServers(ModelServers):
    """Model servers as Ray actors, one per endpoint instance, spread over the nodes; the router
    sends requests straight to them."""

    def __init__(
        self,
        backend: RayBackend,
        catalog: InstanceCatalog,
        sources: PackageSources,
        allow_server_python: bool,
        startup_seconds: float = 600,
        *,
        credentials: Callable[[ModelRequest], SessionCredentials] | None = None,
        revoke: Callable[[str], object] = lambda owner: None,
    ) -> None:
        self._backend = backend
        self._catalog = catalog
        self._hosting = {"sources": dataclasses.asdict(sources), "allow_server_python": allow_server_python}
        self._startup = startup_seconds
        self._credentials = credentials
        self._revoke = revoke

    def start(self, request: ModelRequest) -> RayModelServer:
        backend = self._backend
        placement = plan(
            self._catalog.get(request.instance_type),
            1,
            backend.capacity,
            node=backend.largest_node,
            fit_to_machine=True,
        )
        hosting: dict[str, Any] = dict(self._hosting)
        session = self._credentials(request) if self._credentials is not None else None
        if session is not None:  # to fetch the model through the server's S3 API, then revoked
            hosting["credentials"] = {
                "access_key_id": session.access_key_id,
                "secret_access_key": session.secret_access_key,
                "session_token": session.session_token,
                "expiration": session.expiration.isoformat(),
            }
        try:
            answer = backend.start_model(request, _bundle(placement.per_instance), hosting, self._startup)
        except (BridgeDown, RuntimeError, concurrent.futures.TimeoutError) as exc:
            raise ModelServerError(str(exc) or "no answer from the Ray cluster") from None
        finally:
            if session is not None:
                self._revoke(session.owner)
        return RayModelServer(
            request, answer["host"], int(answer["port"]), answer["token"], answer["name"], backend
        )

    def replace(self, dead: ModelServer) -> RayModelServer:
        return self.start(dead.request)

    def stop(self, server: ModelServer) -> None:
        assert isinstance(server, RayModelServer)
        self._backend.stop_model(server.name)
