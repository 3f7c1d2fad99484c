"""The sagemaker SDK v3 as its users run it, against a running server.

v3 and v2 are both the ``sagemaker`` distribution and cannot share a virtual environment, so the
v3 clients run as subprocesses in their own (``.venv-sdk-v3``, built by ``scripts/setup-sdk-v3``
from ``tests/compat_v3/requirements.txt`` and kept until that file changes). Each client script is
code as a v3 user writes it, pointed at the server by the environment alone (``AWS_ENDPOINT_URL``,
credentials, region), with an explicit role and default bucket.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from shipyard.server import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-sdk-v3"
ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"

V3Runner = Callable[..., str]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/compat_v3/" in str(item.path):
            item.add_marker(pytest.mark.compat)


@pytest.fixture(scope="session")
def v3_python() -> Path:
    """The v3 venv's interpreter, built (once; a no-op when up to date) by the project's script."""
    built = subprocess.run(
        ["bash", str(ROOT / "scripts" / "setup-sdk-v3")], cwd=ROOT, capture_output=True, text=True
    )
    if built.returncode != 0:
        why = (built.stdout + built.stderr).strip()[-1500:]
        pytest.skip(
            f"the sagemaker SDK v3's venv (.venv-sdk-v3) could not be built by scripts/setup-sdk-v3: {why}"
        )
    return VENV / "bin" / "python"


@pytest.fixture
def run_v3(v3_python: Path, server: ServerProcess, tmp_path: Path) -> V3Runner:
    """Run a v3 client script (dedented) in ``tmp_path``; its stdout, after asserting it succeeded."""

    def run(script: str, *, timeout: float = 280, name: str = "client.py") -> str:
        path = tmp_path / name
        path.write_text(textwrap.dedent(script))
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "LANG": "C.UTF-8",
            "AWS_ENDPOINT_URL": server.url,
            "AWS_ACCESS_KEY_ID": "k",
            "AWS_SECRET_ACCESS_KEY": "s",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
            "PYTHONUNBUFFERED": "1",
            # src for `import shipyard.connector` (it needs nothing else); client_site: the SDK's
            # waits look every 0.1 s (its sitecustomize.py)
            "PYTHONPATH": f"{ROOT / 'src'}:{Path(__file__).parent / 'client_site'}",
        }
        done = subprocess.run(
            [str(v3_python), str(path)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"{name} failed:\n{done.stdout[-4000:]}\n{done.stderr[-6000:]}"
        return done.stdout

    return run
