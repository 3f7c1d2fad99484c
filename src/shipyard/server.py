"""Running the server: in this process (``shipyard server``), or as a child process to wait on.

:class:`ServerProcess` is what the demo, the tests and (later) the SDK's embedded default use to
start a server, wait until it answers its health check, and stop it cleanly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import httpx
import uvicorn

from shipyard.config import Settings
from shipyard.errors import ConfigurationError, ShipyardError

log = logging.getLogger("shipyard")


def run(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, then shut down cleanly (in-flight requests finish)."""
    from shipyard.api import create_app

    settings.check_bind_allowed()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per proxied invocation otherwise
    notice = sandbox_notice(settings)
    if notice:
        log.warning(notice)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="on",
        log_level=settings.log_level,
        access_log=settings.log_level == "debug",
        timeout_graceful_shutdown=10,
        server_header=False,
    )
    server = _Server(config, settings, time.monotonic())
    server.run()
    if not server.started:
        raise ShipyardError("The server did not start; see the log above for why")


def sandbox_notice(settings: Settings) -> str | None:
    """The one line ``shipyard server`` says at start when jobs will run unsandboxed (None when
    they are sandboxed, or when ``sandbox = "bwrap"`` makes the start fail instead)."""
    if settings.sandbox == "bwrap":
        return None
    problem = settings.sandbox_problem()
    if problem is None:
        return None
    line = f"Jobs run unsandboxed ({problem}): each can read and change what the server's user can"
    if settings.sandbox == "off":
        return line + "."
    return line + '; only loopback addresses may be served so (sandbox = "off" allows others).'


class _Server(uvicorn.Server):
    """uvicorn's server, announcing readiness, and exiting 0 after a requested clean shutdown.

    (uvicorn re-raises SIGINT/SIGTERM once it has shut down, so the process would die of the
    signal; stopping cleanly on request is a success for ``shipyard server``.)
    """

    def __init__(self, config: uvicorn.Config, settings: Settings, started: float) -> None:
        super().__init__(config)
        self._settings = settings
        self._started = started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            # Where the SDK finds a running server on this data dir (removed at a clean stop).
            announce = self._settings.data_dir / "server.json"
            announce.write_text(json.dumps({"url": self._settings.url, "pid": os.getpid()}))
            log.info(
                "Shipyard serving at %s (data dir %s, database %s) — ready in %.2f s",
                self._settings.url,
                self._settings.data_dir,
                self._settings.database_url.split("://")[0],
                time.monotonic() - self._started,
            )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self._settings.data_dir / "server.json").unlink()
        await super().shutdown(sockets)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """A ``shipyard server`` child process.

    Args:
        data_dir: The server's data dir.
        port: TCP port; a free one when None.
        extra_args: More ``shipyard server`` flags.
        env: Extra environment variables for the child.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        extra_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._args = [
            sys.executable,
            "-m",
            "shipyard",
            "server",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *(extra_args or []),
        ]
        self._env = {**os.environ, **(env or {})}
        self.log_path = log_path or self.data_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> ServerProcess:
        """Start the server and wait until its health check answers 200."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self._args, stdout=log_file, stderr=subprocess.STDOUT, env=self._env, start_new_session=True
            )
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.process is not None and self.process.poll() is not None:
                    raise ConfigurationError(
                        f"The Shipyard server exited with code {self.process.returncode} before it was ready:\n"
                        + self.log_tail()
                    )
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"{self.url}/api/v1/health").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise ShipyardError(
                        f"The Shipyard server at {self.url} was not ready after {timeout:.0f} s:\n"
                        + self.log_tail()
                    )
                time.sleep(0.02)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no server log)"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the server and wait for it to exit; returns its exit code."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> ServerProcess:
        """Start the server, unless it was started already (``with ServerProcess(...).start()``
        must not start a second one, whose exit would leave the first running)."""
        if self.process is not None and self.process.poll() is None:
            return self
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
