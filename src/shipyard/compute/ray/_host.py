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


def node_envs() -> Path:
    """Where this node builds and caches job environments: ``$SHIPYARD_ENVS_DIR`` where the site
    sets it on its nodes (a folder they share: each environment is built once for all of them,
    as servers on one machine share theirs), else ``<node root>/envs``, the node's own."""
    return Path(os.environ.get("SHIPYARD_ENVS_DIR") or node_root() / "envs")


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
            envs_dir=str(node_envs()),
            sandbox="bwrap" if sandbox != "off" and sandbox_available() else "off",
            hide=(*config.hide, str(self._root / "instances")),
            die_with_parent=True,
        )
        if config.gpus:
            config = _with_rays_gpus(config)
        InstanceFolder(self._dir).write_config(config)
        node = _node(self._dir)
        self._agent = self._spawner.submit(self._spawn).result()
        return node

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = agent_env()
        for name in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"):  # Ray's assignment, when it set one
            if name in os.environ:
                env[name] = os.environ[name]
        with (self._dir / "agent.log").open("ab") as output:
            return subprocess.Popen(
                [sys.executable, "-m", "shipyard.runtime.agent", str(self._dir)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=env,
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
                node_envs(),
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


def _with_rays_gpus(config: AgentConfig) -> AgentConfig:
    """The GPUs Ray assigned this actor (``num_gpus``), as this node's NVML (or fake device list)
    knows them: bound into the sandbox and named to the job like the local backend's grants. A
    node without NVML passes Ray's ``CUDA_VISIBLE_DEVICES`` on, unbound, and the job's log says so."""
    import ray

    from shipyard.compute.local._gpus import discover
    from shipyard.core.devices import visible

    fake = os.environ.get("SHIPYARD_FAKE_GPUS")
    inventory = discover(Path(fake) if fake else None, environ={})
    ids = ",".join(str(i) for i in ray.get_gpu_ids())
    granted, unknown = visible(inventory.gpus, ids)
    if not granted or unknown:
        return config.replace(
            notes=(
                *config.notes,
                f"Shipyard: Ray assigned GPU(s) {ids}, which this node's device list does not name "
                f"({inventory.describe()}): passed on as CUDA_VISIBLE_DEVICES, not bound into the sandbox",
            )
        )
    return config.replace(
        gpus=len(granted),
        gpu_devices=granted,
        gpu_control=inventory.control,
        notes=(
            *config.notes,
            "Shipyard: Ray assigned GPU"
            + ("s " if len(granted) > 1 else " ")
            + ", ".join(f"{g.index} ({g.name}, {g.uuid})" for g in granted),
        ),
    )
