"""Notebook instances' Jupyter servers as local processes, each in its own sandbox.

A notebook's folder ``<data dir>/notebooks/<name>/`` holds its volume, ``volume/`` (at /opt/ml in
the sandbox: ``home/`` is the notebook's home, kept across stops and starts as SageMaker keeps
/home/ec2-user/SageMaker on the instance's volume, with Jupyter's root at ``home/SageMaker``;
``metadata/resource-metadata.json`` where SageMaker puts it, which the sagemaker SDK's
``get_execution_role()`` reads), and ``run/`` (the Jupyter configuration of the current run, bound
read-only; the server's log). JupyterLab runs with this server's Python (where the
``notebooks`` extra installs it), on a loopback port of its own; its kernels inherit its
environment, which :class:`NotebookLaunch` gives (the Shipyard connection, no key of the
server's). Like model servers, Jupyter servers are started from one long-lived thread (bwrap's
``--die-with-parent`` follows the starting thread) and end with the Shipyard server.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from shipyard.compute.local._hosting import _free_port
from shipyard.compute.local._jupyter_config import jupyter_config
from shipyard.envs import environment_roots
from shipyard.runtime._sandbox import MODEL_SERVERS, hand_over, run_as_for, sandbox_available, sandbox_command

_SAFE_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
HOME = "/opt/ml/home"
STARTUP = """\
# Written by Shipyard at each start: the sagemaker SDK's STS calls follow AWS_ENDPOINT_URL.
try:
    import shipyard.connector  # noqa: F401
except ImportError:
    pass
"""

# The sagemaker SDK's user config (its default place in the home): no telemetry call to AWS.
SDK_CONFIG = """\
SchemaVersion: '1.0'
SageMaker:
  PythonSDK:
    Modules:
      TelemetryOptOut: true
"""


def jupyter_problem() -> str | None:
    """Why a Jupyter server cannot be started here, or None when it can."""
    if importlib.util.find_spec("jupyterlab") is None:
        return (
            "JupyterLab is not installed in the Shipyard server's Python environment "
            f"({sys.prefix}): install it with pip install 'shipyard[notebooks]' (or "
            "pip install 'jupyterlab>=4'), restart the server, and start the notebook instance again"
        )
    return None


@dataclasses.dataclass(frozen=True)
class NotebookLaunch:
    """What one run of a notebook's Jupyter server needs.

    Attributes:
        environment: Its (and its kernels') environment: the Shipyard connection.
        metadata: The content of /opt/ml/metadata/resource-metadata.json.
    """

    name: str
    folder: Path
    environment: Mapping[str, str]
    metadata: Mapping[str, str]


class JupyterServer:
    """A running notebook's Jupyter server."""

    def __init__(self, launch: NotebookLaunch, port: int, key: bytes, process: subprocess.Popen[bytes]):
        self.launch = launch
        self.port = port
        self.key = key
        self.process = process

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.launch.folder / "run" / "jupyter.log"

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def status(self, token: str, timeout: float = 2.0) -> Mapping[str, object] | None:
        """Jupyter's ``/api/status`` (None: it does not answer yet)."""
        request = urllib.request.Request(
            f"{self.url}/api/status", headers={"Authorization": f"Shipyard {token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                body = json.loads(response.read())
        except (OSError, urllib.error.URLError, ValueError):
            return None
        return body if isinstance(body, dict) else None


def last_activity(status: Mapping[str, object]) -> dt.datetime | None:
    """The ``last_activity`` of a Jupyter ``/api/status`` answer."""
    value = status.get("last_activity")
    if not isinstance(value, str):
        return None
    try:
        found = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=dt.UTC)


class JupyterServers:
    """Starts and stops notebooks' Jupyter servers on this machine.

    Args:
        sandbox: "off" to run them as they are; else in bubblewrap when it works here.
        hide: Folders the notebook must not see (the Shipyard data dir).
    """

    def __init__(self, sandbox: str = "auto", hide: Sequence[Path] = ()) -> None:
        self.sandboxed = sandbox != "off" and sandbox_available()
        self._hide = list(hide)
        self._spawner = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="shipyard-notebook-spawner"
        )

    def start(self, launch: NotebookLaunch) -> JupyterServer:
        """Start a Jupyter server for ``launch`` (RuntimeError: JupyterLab is not installed)."""
        problem = jupyter_problem()
        if problem is not None:
            raise RuntimeError(problem)
        volume = launch.folder / "volume"
        run = launch.folder / "run"
        run.mkdir(parents=True, exist_ok=True)
        home = volume / "home"
        (home / "SageMaker").mkdir(parents=True, exist_ok=True)
        startup = home / ".ipython" / "profile_default" / "startup"
        startup.mkdir(parents=True, exist_ok=True)
        (startup / "00-shipyard.py").write_text(STARTUP)
        sdk_config = home / ".config" / "sagemaker" / "config.yaml"
        if not sdk_config.exists():  # the user's own edits are kept
            sdk_config.parent.mkdir(parents=True, exist_ok=True)
            sdk_config.write_text(SDK_CONFIG)
        metadata = volume / "metadata"
        metadata.mkdir(parents=True, exist_ok=True)
        (metadata / "resource-metadata.json").write_text(json.dumps(dict(launch.metadata)))
        port = _free_port()
        key = secrets.token_bytes(32)
        root = "/opt/ml" if self.sandboxed else str(volume)
        config = run / "jupyter_server_config.py"
        config.write_text(
            jupyter_config(name=launch.name, key=key.hex(), port=port, root_dir=f"{root}/home/SageMaker")
        )
        config.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if k in _SAFE_ENV}
        env.update(launch.environment)
        env.update(
            {
                "HOME": f"{root}/home",
                "USER": "ec2-user",
                "SHELL": "/bin/bash",
                "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime" if self.sandboxed else str(run / "runtime"),
                "JUPYTER_CONFIG_DIR": f"{root}/home/.jupyter",
                "JUPYTER_DATA_DIR": f"{root}/home/.local/share/jupyter",
                "PYTHONUNBUFFERED": "1",
            }
        )
        command = [sys.executable, "-m", "jupyterlab", f"--config={config}", "--no-browser"]
        if self.sandboxed:
            run_as = run_as_for(MODEL_SERVERS + port)
            if run_as is not None:
                hand_over(volume, run_as)
                os.chown(config, run_as, run_as)
            hosts = run / "hosts"
            hosts.write_text("127.0.0.1 localhost notebook\n")
            command = sandbox_command(
                command,
                ml_dir=volume,
                host=launch.name[:63],
                hosts_file=hosts,
                hide=self._hide,
                keep=[*environment_roots(Path(sys.executable)), config],
                cwd=f"{HOME}/SageMaker",
                run_as=run_as,
            )
        log = (run / "jupyter.log").open("ab")
        try:
            process = self._spawner.submit(
                subprocess.Popen,
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=None if self.sandboxed else str(home / "SageMaker"),
                env=env,
                start_new_session=True,
            ).result()
        finally:
            log.close()
        return JupyterServer(launch, port, key, process)

    def stop(self, server: JupyterServer, grace: float = 10.0) -> None:
        """End the server and every process of its (the kernels, the terminals): once this
        returns, none of them runs."""
        inside = _descendants(server.process.pid)
        if server.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server.process.pid, 15)
            try:
                server.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(server.process.pid, 9)
                server.process.wait()
        else:
            server.process.poll()
        # The sandbox's processes end with its init (bwrap's --die-with-parent), just after it.
        deadline = time.monotonic() + grace
        while any(_running(pid) for pid in inside) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in inside:
            if _running(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, 9)

    def close(self) -> None:
        self._spawner.shutdown(wait=False)


def _children() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            found.setdefault(parent, []).append(int(entry.name))
    return found


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` now."""
    children = _children()
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


__all__ = ["JupyterServer", "JupyterServers", "NotebookLaunch", "jupyter_problem", "last_activity"]
