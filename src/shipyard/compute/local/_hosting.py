"""Model servers as local processes: one per endpoint instance, in the model's environment.

Each runs ``runtime/model_server.py`` with the environment's Python, in the bubblewrap sandbox
when it works here (the instance's ``ml/`` at /opt/ml, so the model is at /opt/ml/model as in
SageMaker's containers), on a loopback port of its own. Its output is read by a thread and kept as
``log.jsonl`` in the instance folder, the format the Logs API reads. Model servers end with the
Shipyard server (bubblewrap's --die-with-parent, or the end of their standard input): the server
starts them again when it starts.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from shipyard.runtime._sandbox import sandbox_available, sandbox_command

_SERVER = Path(__file__).resolve().parents[2] / "runtime" / "model_server.py"
_SAFE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ")


class ModelServerError(Exception):
    """A model server that did not come up; the message says why, with its log's tail."""


@dataclasses.dataclass(frozen=True)
class ServerLaunch:
    """What one model server needs. ``ml_dir`` holds ``model/`` (and ``code/`` when the code came
    separately); ``code_dir`` and the paths in ``environment`` are as the server sees them."""

    instance_dir: Path
    python: str
    framework: str
    program: str | None
    code_dir: str | None
    environment: Mapping[str, str]
    keep: Sequence[Path] = ()


@dataclasses.dataclass
class ModelServer:
    """A running model server."""

    launch: ServerLaunch
    port: int
    process: subprocess.Popen[bytes]
    in_flight: int = 0  # requests sent and not yet answered (kept by the runtime's event loop)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.launch.instance_dir / "log.jsonl"


class LocalModelServers:
    """Starts, checks and stops model-server processes.

    Args:
        sandbox: "bwrap" to run them in bubblewrap (when it works here), else "off".
        hide: Folders the model's code must not see (the Shipyard data dir).
    """

    def __init__(self, sandbox: str = "auto", hide: Sequence[Path] = ()) -> None:
        self.sandboxed = sandbox != "off" and sandbox_available()
        self._hide = list(hide)
        # bwrap's --die-with-parent follows the thread that started it: start every model server
        # from one thread that lives as long as this object, not from the short-lived thread that
        # brings an endpoint up.
        self._spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="shipyard-model-spawner")

    def start(self, launch: ServerLaunch) -> ModelServer:
        """Start a model server (not waiting for it to be healthy: see :meth:`wait_healthy`)."""
        ml = launch.instance_dir / "ml"
        for sub in ("model", "input/data", "output"):
            (ml / sub).mkdir(parents=True, exist_ok=True)
        server_script = launch.instance_dir / "model_server.py"
        shutil.copyfile(_SERVER, server_script)  # the model's Python has no Shipyard to import it from
        port = _free_port()
        root = "/opt/ml" if self.sandboxed else str(ml)

        def inside(path: str | None) -> str | None:
            return path.replace("/opt/ml", root, 1) if path and path.startswith("/opt/ml") else path

        command = [
            launch.python,
            "-u",
            str(server_script),
            "--model-dir",
            f"{root}/model",
            "--port",
            str(port),
        ]
        command += ["--framework", launch.framework, "--exit-with-stdin"]
        if launch.code_dir:
            command += ["--code-dir", inside(launch.code_dir) or ""]
        if launch.program:
            command += ["--program", launch.program]
        env = {k: v for k, v in os.environ.items() if k in _SAFE_ENV}
        env.update({k: inside(v) or "" for k, v in launch.environment.items()})
        env["PYTHONPATH"] = inside(launch.code_dir) or ""
        if self.sandboxed:
            hosts = launch.instance_dir / "hosts"
            hosts.write_text("127.0.0.1 localhost model\n")
            command = sandbox_command(
                command,
                ml_dir=ml,
                host="model",
                hosts_file=hosts,
                hide=self._hide,
                keep=[*launch.keep, server_script],
                cwd="/opt/ml/model",
            )
        process = self._spawner.submit(
            subprocess.Popen,
            command,
            stdin=subprocess.PIPE,  # closes when this process ends: the model server then exits
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=None if self.sandboxed else str(ml / "model"),
            env=env,
            start_new_session=True,
        ).result()
        server = ModelServer(launch, port, process)
        threading.Thread(target=_keep_log, args=(server,), name="shipyard-model-log", daemon=True).start()
        return server

    def wait_healthy(
        self, server: ModelServer, timeout: float, gone: Callable[[], bool] = lambda: False
    ) -> None:
        """Wait for ``GET /ping`` to answer 200; ModelServerError with the log's tail otherwise."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if not server.alive:
                    raise ModelServerError(
                        f"the model server exited with code {server.process.returncode}; its log ends:\n"
                        + "\n".join(log_tail(server.log_path))
                    )
                try:
                    answer = client.get(f"{server.url}/ping")
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

    def stop(self, server: ModelServer, grace: float = 5.0) -> None:
        if server.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server.process.pid, 15)
            try:
                server.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(server.process.pid, 9)
                server.process.wait()
        with contextlib.suppress(OSError):
            server.process.stdin.close()  # type: ignore[union-attr]


def _keep_log(server: ModelServer) -> None:
    assert server.process.stdout is not None
    with server.log_path.open("a", encoding="utf-8") as log:
        for raw in server.process.stdout:
            record = {"t": int(time.time() * 1000), "m": raw.decode("utf-8", "replace").rstrip("\n")}
            log.write(json.dumps(record, ensure_ascii=False) + "\n")
            log.flush()


def log_tail(path: Path, count: int = 20) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[-count:]
    except FileNotFoundError:
        return []
    return [json.loads(line)["m"] for line in lines if line.strip()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
