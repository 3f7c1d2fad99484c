"""A small Ray cluster on this machine: a head and worker nodes as ``ray start`` processes.

For tests and benchmarks (``RayCluster(log_dir, nodes=2)``). The head node has no CPUs (work goes
to the workers, and a worker can be killed without ending the cluster). Each node gets ports of
its own (with Ray's defaults a second node on the same host joins but its resources never reach
the cluster), its own memory, CPUs and folder (``$SHIPYARD_RAY_DIR``), a custom resource
``node-<i>`` and a node name ``shipyard-node-<i>`` (the head: ``shipyard-head``). Nodes are
stopped by ending their ``ray start --block`` process group: never with ``ray stop``, which ends
every Ray process on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

_PORTS_PER_NODE = 8


def _free_ports(count: int, avoid: int = 0) -> list[int]:
    """``count`` ports free now, none of them ``avoid`` (the head's port, free while it restarts)."""
    sockets: list[socket.socket] = []
    try:
        while len(sockets) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] == avoid:
                s.close()
                continue
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


class RayCluster:
    """A head and ``nodes`` worker nodes on this machine, each worker with ``cpus`` CPUs and
    ``memory_gib`` GiB; with ``token``, the cluster requires Ray's token authentication; with
    ``dashboard``, the head serves Ray's dashboard (and its job API) on ``dashboard_port``. Without
    it (Shipyard needs none) the head starts ten Python processes fewer, and a loaded machine no
    longer holds it a minute on a dashboard module that times out starting."""

    def __init__(
        self,
        log_dir: Path,
        *,
        nodes: int = 2,
        cpus: float = 1,
        memory_gib: float = 2.0,
        token: str | None = None,
        dashboard: bool = False,
    ) -> None:
        self.log_dir = Path(log_dir)
        self.count = nodes
        self.cpus = cpus
        self.memory_gib = memory_gib
        self.port = _free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"
        self.dashboard = dashboard
        self.dashboard_port = 0
        self._nodes: dict[str, subprocess.Popen[bytes]] = {}
        # A loaded machine (a test suite on every core) can take Ray's raylet longer than its
        # default 10 s to register: the node then exits "GCS cannot find the node".
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_raylet_start_wait_time_s": "60"}
        self.token = token
        if token:  # Ray's token authentication: every node and client needs it
            self.env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)

    def __enter__(self) -> RayCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> RayCluster:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for index in range(self.count + 1):  # one at a time: two starting at once time out on 2 cores
                self.add_node(index)
        except BaseException:
            self.stop()
            raise
        return self

    def add_node(self, index: int) -> None:
        """Start node ``index`` (0 is the head) and wait until the cluster has it."""
        name = f"shipyard-node-{index}" if index else "shipyard-head"
        ports = _free_ports(_PORTS_PER_NODE, avoid=self.port)
        command = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--block",
            f"--node-name={name}",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={self.cpus if index else 0:g}",
            "--num-gpus=0",
            f"--memory={int(self.memory_gib * 2**30) if index else 2**28}",
            f"--object-store-memory={100 * 2**20}",
            f"--resources={json.dumps({f'node-{index}': 1})}",
            f"--node-manager-port={ports[0]}",
            f"--object-manager-port={ports[1]}",
            f"--dashboard-agent-listen-port={ports[2]}",
            f"--dashboard-agent-grpc-port={ports[3]}",
            f"--metrics-export-port={ports[4]}",
            f"--runtime-env-agent-port={ports[5]}",
            f"--min-worker-port={20000 + 1000 * index}",
            f"--max-worker-port={20000 + 1000 * index + 999}",
        ]
        if index == 0:
            command += [f"--port={self.port}", "--head", f"--ray-client-server-port={ports[7]}"]
            if self.dashboard:
                self.dashboard_port = ports[6]
                command += ["--dashboard-host=127.0.0.1", f"--dashboard-port={ports[6]}"]
            else:
                command += ["--include-dashboard=false"]
        else:
            command += [f"--address={self.address}"]
        env = {**self.env, "SHIPYARD_RAY_DIR": str(self.log_dir / name)}  # nothing shared between nodes
        # `ray start` gives its raylet a fixed 30 s to register (RAY_raylet_start_wait_time_s
        # does not reach that wait): on a loaded machine a node may miss it, and is started again.
        for attempt in range(3):
            log = self.log_dir / f"{name}.log"
            with log.open("ab") as out:
                offset = out.tell()
                self._nodes[name] = subprocess.Popen(
                    command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
                )
            try:
                # `ray start` says so once its node has registered; only then is the cluster asked
                # (each look starts a Ray driver: a second of CPU, too much to spend twice a second)
                self._wait_started(name, log, offset, 120)
                self.wait_for(lambda nodes: any(n.get("NodeName") == name for n in nodes), 120, name)
                return
            except RuntimeError as exc:
                if attempt == 2 or "timed out during startup" not in str(exc):
                    raise

    def _wait_started(self, name: str, log: Path, offset: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        process = self._nodes[name]
        while time.monotonic() < deadline:
            with log.open("rb") as f:
                f.seek(offset)
                written = f.read().decode(errors="replace")
            if "Ray runtime started" in written:
                return
            if process.poll() is not None:
                raise RuntimeError(f"Ray node {name} exited with {process.returncode}:\n{written[-2000:]}")
            time.sleep(0.2)
        raise TimeoutError(f"Ray node {name} did not start in {timeout:g} s")

    def nodes(self) -> list[dict[str, object]]:
        """The cluster's live nodes (none while it cannot tell: a driver connecting to a head
        that is still starting can wait a long time for its raylet)."""
        try:
            out = self._ask_nodes()
        except subprocess.TimeoutExpired:
            return []
        if out.returncode != 0:
            return []
        return json.loads(out.stdout.strip().splitlines()[-1])

    def _ask_nodes(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-c",
                f"import json, ray; ray.init(address={self.address!r}, logging_level='ERROR', "
                "log_to_driver=False); print(json.dumps([n for n in ray.nodes() if n['Alive']]))",
            ],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
        )

    def wait_for(self, ready, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self._nodes.items():
                if process.poll() is not None:
                    log = (self.log_dir / f"{name}.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"Ray node {name} exited with {process.returncode}:\n{log}")
            if ready(self.nodes()):
                return
            time.sleep(0.5)
        raise TimeoutError(f"the Ray cluster at {self.address} did not have {what} in {timeout:g} s")

    def kill_node(self, name: str) -> None:
        """Kill one node at once, as a machine failing would: its raylet first (SIGKILL)."""
        node_id = next(str(n["NodeID"]) for n in self.nodes() if n.get("NodeName") == name)
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                if cmdline and cmdline[0].endswith(b"raylet") and f"--node_id={node_id}".encode() in cmdline:
                    os.kill(int(proc.name), signal.SIGKILL)
        self._end(name)

    def _end(self, name: str) -> None:
        process = self._nodes.pop(name, None)
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)

    def stop(self) -> None:
        for name in reversed(list(self._nodes)):
            self._end(name)
