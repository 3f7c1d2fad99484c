"""The wheel works on its own: built from the checkout, installed in a fresh virtual environment
(no checkout, no npm), its `shipyard server` serves the console with the assets its charts need;
and a build from a tree without those assets refuses, saying how to make them."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from shipyard.server import free_port

ROOT = Path(__file__).resolve().parents[2]
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
pytestmark = pytest.mark.skipif(UV is None, reason="uv (a Shipyard dependency) is not installed")
ASSETS = ("uPlot.iife.min.js", "uPlot.min.css")


def _uv(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert UV is not None
    return subprocess.run([UV, *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_the_wheel_installed_alone_serves_the_console_with_its_assets(tmp_path: Path) -> None:
    if not (ROOT / "src/shipyard/ui/static/vendor" / ASSETS[0]).exists():
        pytest.skip("the checkout's console assets are not built (scripts/build-ui needs npm)")
    built = _uv("build", "--out-dir", str(tmp_path / "dist"), str(ROOT))
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("shipyard-*.whl")
    [sdist] = (tmp_path / "dist").glob("shipyard-*.tar.gz")  # the wheel is built from it
    names = zipfile.ZipFile(wheel).namelist()
    assert all(f"shipyard/ui/static/vendor/{asset}" in names for asset in ASSETS), names

    venv = tmp_path / "venv"
    assert _uv("venv", "--python", sys.executable, str(venv)).returncode == 0
    installed = _uv("pip", "install", "--python", str(venv / "bin" / "python"), str(wheel))
    assert installed.returncode == 0, installed.stderr[-3000:]

    port = free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SHIPYARD_", "PYTHON"))}
    server = subprocess.Popen(
        [str(venv / "bin" / "shipyard"), "server", "--port", str(port), "--data-dir", str(data)],
        cwd=tmp_path,  # not the checkout: nothing of it is on the path
        env={**env, "HOME": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, "the installed server exited"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the installed server did not answer"
            time.sleep(0.1)
        page = httpx.get(f"{url}/ui/", timeout=10, follow_redirects=True)
        assert page.status_code == 200 and "vendor/uPlot.iife.min.js" in page.text
        for asset in ASSETS:
            served = httpx.get(f"{url}/ui/static/vendor/{asset}", timeout=10)
            assert served.status_code == 200 and len(served.content) > 1000, asset
        info = subprocess.run(
            [str(venv / "bin" / "python"), "-c", "import shipyard; print(shipyard.__file__)"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
        )
        assert str(venv) in info.stdout and str(ROOT) not in info.stdout  # the wheel's, not the checkout's
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(60)
    assert sdist.stat().st_size > 0


def test_a_build_without_the_console_assets_says_how_to_make_them(tmp_path: Path) -> None:
    tree = tmp_path / "tree"  # the checkout as a fresh clone has it: what git ignores is not there
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        capture_output=True,
        check=True,
    )
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (ROOT / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tree / name)
    assert not (tree / "src/shipyard/ui/static/vendor").exists()
    (tree / "scripts" / "build-ui").unlink()  # as where npm cannot run: the assets cannot be made
    built = _uv("build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(tree))
    assert built.returncode != 0
    assert "console's assets are not built" in built.stderr and "scripts/build-ui" in built.stderr
    assert not list((tmp_path / "dist").glob("*.whl"))
