"""What runs on a Ray node for one job instance: an actor that starts the instance agent there.

The agent is the same as on the local backend; only its folder is the node's own (no filesystem is
shared with the server). The actor hands the server what the agent writes there (``status.json``
and the new bytes of ``log.jsonl``, ``utilization.jsonl`` and ``agent.log``), read by offset so
that nothing is sent twice. While the server is away those files are the buffer.

This module is imported on the nodes: it needs Shipyard installed there, and nothing from the
server (no store, no settings).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from shipyard.compute._base import agent_env
from shipyard.runtime._sandbox import sandbox_available
from shipyard.runtime.contract import AgentConfig, InstanceFolder

# Files the server keeps a copy of; status.json is sent whole, the others from an offset.
STREAMS = ("log.jsonl", "utilization.jsonl", "agent.log")
_CHUNK = 4 * 2**20  # the most of one file sent in one answer


def node_root() -> Path:
    """Where instances and environments live on this node (``$SHIPYARD_RAY_DIR``, else a folder
    in the system's temporary directory)."""
    return Path(os.environ.get("SHIPYARD_RAY_DIR") or Path(tempfile.gettempdir()) / "shipyard-ray")


class _NodeFolder:
    """An actor with a folder of its own on its node, whose files it hands to the server."""

    def __init__(self, folder: Path) -> None:
        self._root = node_root()
        self._dir = folder
        self._dir.mkdir(parents=True, exist_ok=True)

    def _exited(self) -> bool:
        """Whether the process this actor runs has ended."""
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def read(self, offsets: dict[str, int]) -> dict[str, Any]:
        """What was written since ``offsets``; ``ended`` once the process has exited and all it
        wrote is in this answer."""
        exited = self._exited()  # before reading: nothing written after is lost
        answer: dict[str, Any] = {"streams": {}}
        with contextlib.suppress(FileNotFoundError):
            answer["status"] = (self._dir / "status.json").read_bytes()
        complete = True
        for name in STREAMS:
            try:
                with (self._dir / name).open("rb") as f:
                    f.seek(offsets.get(name, 0))
                    data = f.read(_CHUNK + 1)
            except FileNotFoundError:
                continue
            if len(data) > _CHUNK:
                data, complete = data[:_CHUNK], False
            if data:
                answer["streams"][name] = data
        answer["ended"] = exited and complete
        return answer

    def cleanup(self) -> None:
        """End what runs and remove the folder from the node (the server has what it needs)."""
        self.kill()
        shutil.rmtree(self._dir, ignore_errors=True)


def _node(folder: Path) -> dict[str, str]:
    """Where this actor runs; also said in the log it is about to write in ``folder``."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    ip = ray.util.get_node_ip_address()
    name = next((n.get("NodeName") for n in ray.nodes() if n.get("NodeID") == node_id), None) or node_id
    with (folder / "log.jsonl").open("a") as log:
        line = {"t": int(time.time() * 1000), "m": f"Shipyard: on Ray node {name} ({ip})"}
        log.write(json.dumps(line) + "\n")
    return {"node_id": node_id, "ip": ip, "name": name}


class InstanceHost(_NodeFolder):
    """One job instance on a Ray node. ``key`` names its folder (unique per server, job, attempt
    and host)."""

    def __init__(self, key: str) -> None:
        super().__init__(node_root() / "instances" / key)
        self._agent: subprocess.Popen[bytes] | None = None
        # The agent dies with the thread that started it (PR_SET_PDEATHSIG): start it from one
        # that lives as long as this actor.
        self._spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="shipyard-agent-spawner")

    def rendezvous(self) -> tuple[str, int]:
        """This node's address and a port free on it: where algo-1 waits for the others."""
        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            port = int(s.getsockname()[1])
        return ray.util.get_node_ip_address(), port

    def start(self, server_config: dict[str, Any], master: tuple[str, int]) -> dict[str, str]:
        """Start the agent with the server's config (an AgentConfig's JSON), made this node's own."""
        config = AgentConfig.from_json(server_config)
        sandbox = config.sandbox
        if sandbox == "bwrap" and not sandbox_available():
            raise RuntimeError(
                "the server requires the bubblewrap sandbox (sandbox = 'bwrap'), which this Ray node "
                "lacks: install bubblewrap on it"
            )
        config = config.replace(
            master_addr=master[0],
            master_port=master[1],
            python=sys.executable,
            envs_dir=str(self._root / "envs"),
            sandbox="bwrap" if sandbox != "off" and sandbox_available() else "off",
            hide=(*config.hide, str(self._root / "instances")),
            die_with_parent=True,
        )
        InstanceFolder(self._dir).write_config(config)
        node = _node(self._dir)
        self._agent = self._spawner.submit(self._spawn).result()
        return node

    def _spawn(self) -> subprocess.Popen[bytes]:
        with (self._dir / "agent.log").open("ab") as output:
            return subprocess.Popen(
                [sys.executable, "-m", "shipyard.runtime.agent", str(self._dir)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=agent_env(),
                close_fds=True,
            )

    def _exited(self) -> bool:
        return self._agent is not None and self._agent.poll() is not None

    def signal(self, signum: int) -> None:
        if self._agent is not None and self._agent.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._agent.send_signal(signum)

    def kill(self) -> None:
        """End the agent and the user's processes (their own session) at once."""
        self.signal(signal.SIGKILL)
        pgid = InstanceFolder(self._dir).read_status().user_pgid or 0
        if pgid > 1:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)


class ModelHost(_NodeFolder):
    """One endpoint instance on a Ray node: its model server, prepared on the node (model data
    from the object store, environment from the node's cache) and listening on the node's
    address, where the Shipyard server sends requests straight to it."""

    def __init__(self, key: str) -> None:
        super().__init__(node_root() / "endpoints" / key)
        self._server: Any = None
        self._servers: Any = None

    def start(
        self,
        request: Any,
        object_store: dict[str, Any],
        sources: dict[str, Any],
        allow_server_python: bool,
        sandbox: str,
    ) -> dict[str, Any]:
        from shipyard.compute.local._hosting import LocalModelServers, prepare_model
        from shipyard.envs import EnvironmentCache, PackageSources
        from shipyard.runtime.agent import LogWriter, open_store

        node = _node(self._dir)
        log = LogWriter(self._dir / "log.jsonl")
        try:
            environments = EnvironmentCache(
                self._root / "envs",
                PackageSources.from_json(sources),
                allow_server_python=allow_server_python,
            )
            launch = prepare_model(request, self._dir, open_store(object_store), environments, log.line)
        finally:
            log.close()
        hide = [self._root / "instances", self._root / "endpoints"]
        self._servers = LocalModelServers(None, None, sandbox, hide=hide, host=node["ip"])
        self._server = self._servers.run(request, launch)
        return {**node, "port": self._server.port, "token": self._server.token}

    def _exited(self) -> bool:
        return self._server is not None and not self._server.alive

    def kill(self) -> None:
        if self._server is not None:
            self._servers.stop(self._server)
