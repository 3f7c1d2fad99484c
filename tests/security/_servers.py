"""A real HTTP server on a loopback port, in this process: uvicorn serving a ShipyardApp."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import uvicorn

from shipyard.api.app import ShipyardApp
from shipyard.config import Settings
from shipyard.server import free_port


@contextlib.contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """Serve ``settings``' app (no background work) until the block ends; yields its URL."""
    port = free_port()
    config = uvicorn.Config(
        ShipyardApp(settings, background=False), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # set once the lifespan started and the socket listens
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the in-process server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
