"""The examples run as a user runs them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from shipyard.server import ServerProcess

EXAMPLES = Path(__file__).parents[2] / "examples"


def test_the_notebook_style_quickstart_needs_only_import_shipyard(server: ServerProcess) -> None:
    ran = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        env={**os.environ, "SHIPYARD_URL": server.url},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    accuracy = re.search(r"accuracy ([0-9.]+) on 179 passengers", ran.stdout)
    assert accuracy and float(accuracy.group(1)) > 0.75
    assert re.search(r"training \$0\.\d+, tuning \$0\.\d+, endpoint \$0\.\d+", ran.stdout)
