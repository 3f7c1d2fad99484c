"""The security tier: bad input answers 4xx, bodies are read within their limits, credentials are
checked before bodies, and fuzzing of every protocol finds no 5xx.

Its tests carry the ``security`` marker (``pytest -m security`` runs the tier alone; a plain
``pytest`` runs it with the rest). The fuzz tests count their requests; the run ends with one line,
``fuzz: N requests (per protocol), K x 5xx``, in the terminal summary; S3's 501 NotImplemented
(a feature S3 has and Shipyard does not, AWS's own answer for those) is counted apart.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from shipyard.api.app import ShipyardApp
from shipyard.config import Settings
from tests.security import _fuzz

SECRET = "fuzz-secret-access-key"
ACCESS_KEY = "AKIDSHIPYARDFUZZ"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "security: the security tier (tests/security)")
    # One folder for the whole run, made by the first process (xdist workers inherit it).
    if _fuzz.COUNTS_DIR_ENV not in os.environ:
        os.environ[_fuzz.COUNTS_DIR_ENV] = tempfile.mkdtemp(prefix="shipyard-fuzz-")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/security/" in str(item.path):
            item.add_marker(pytest.mark.security)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    folder = Path(os.environ.get(_fuzz.COUNTS_DIR_ENV, ""))
    if not folder.is_dir():
        return
    totals: dict[str, dict[str, int]] = {}
    for path in sorted(folder.glob("*.json")):
        for protocol, counts in json.loads(path.read_text()).items():
            mine = totals.setdefault(protocol, {"requests": 0, "5xx": 0, "501": 0})
            for name in mine:
                mine[name] += counts.get(name, 0)
    if not totals:
        return
    requests = sum(c["requests"] for c in totals.values())
    errors = sum(c["5xx"] for c in totals.values())
    not_implemented = sum(c["501"] for c in totals.values())
    parts = ", ".join(f"{p} {c['requests']}" for p, c in sorted(totals.items()))
    terminalreporter.write_line(
        f"fuzz: {requests} requests ({parts}), {errors} x 5xx"
        + (f" (and {not_implemented} x S3's 501 NotImplemented, not counted)" if not_implemented else "")
    )


@pytest.fixture(scope="session")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The whole server in process (every protocol), auth off, its platform open with no
    background work. An exception the app lets out comes back as a 500, as a client sees it."""
    data_dir = tmp_path_factory.mktemp("security-data")
    app = ShipyardApp(Settings(data_dir=data_dir), background=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="session")
def signed_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """As :func:`client`, with credentials configured: every request must be signed."""
    data_dir = tmp_path_factory.mktemp("security-signed-data")
    settings = Settings(data_dir=data_dir, access_key_id=ACCESS_KEY, secret_access_key=SECRET)
    app = ShipyardApp(settings, background=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
