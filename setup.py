"""A wheel or sdist always carries the console's assets (uPlot, from scripts/build-ui): a build
from a checkout without them makes them (npm), or refuses to make a wheel whose console cannot
draw. Editable installs (scripts/setup-env) are left alone: they read the checkout's folder."""

import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

ROOT = Path(__file__).resolve().parent
ASSET = ROOT / "src" / "shipyard" / "ui" / "static" / "vendor" / "uPlot.iife.min.js"


def _ensure_assets() -> None:
    if ASSET.exists():
        return
    script = ROOT / "scripts" / "build-ui"
    if script.exists():
        subprocess.run(["bash", str(script)], check=True)
    if not ASSET.exists():
        raise SystemExit(
            f"The console's assets are not built ({ASSET.relative_to(ROOT)} is missing): run "
            "scripts/build-ui (it needs npm) before building a wheel or an sdist"
        )


class BuildPyWithAssets(build_py):
    def run(self) -> None:
        if not getattr(self, "editable_mode", False):
            _ensure_assets()
        super().run()


class SdistWithAssets(sdist):
    def run(self) -> None:
        _ensure_assets()
        super().run()


setup(cmdclass={"build_py": BuildPyWithAssets, "sdist": SdistWithAssets})
