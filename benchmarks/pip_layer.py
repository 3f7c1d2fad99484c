"""What a job's own pip layer (runtime/agent/_layer.py) costs each instance at its start.

    .venv/bin/python benchmarks/pip_layer.py [--runs 50]

Makes the layer over this interpreter's environment (the server's own, with its many console
scripts: the costly case) again and again in fresh folders. Baselines in the same process: the
interpreter's own start (``python -c pass``, which every job pays at least once) and
``python -m venv --without-pip``, the layer made by the standard library instead. Goal: well under
the interpreter's start, so the layer is made for every instance rather than lazily.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path, PurePosixPath

from shipyard.runtime.agent._layer import make_layer


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    python = Path(sys.executable)
    layer, start, venv = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            folder = Path(tmp) / f"layer-{i}"
            folder.mkdir()
            began = time.perf_counter()
            make_layer(folder, PurePosixPath(folder), python)
            layer.append(time.perf_counter() - began)
        for _ in range(max(5, args.runs // 5)):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            start.append(time.perf_counter() - began)
        for i in range(max(5, args.runs // 10)):
            began = time.perf_counter()
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", f"{tmp}/venv-{i}"], check=True)
            venv.append(time.perf_counter() - began)
    print(f"pip layer: median {_median_ms(layer):.2f} ms, max {max(layer) * 1000:.2f} ms")
    print(
        f"baseline python -c pass: median {_median_ms(start):.1f} ms; "
        f"layer/start {statistics.median(layer) / statistics.median(start):.2f}"
    )
    print(
        f"baseline python -m venv --without-pip: median {_median_ms(venv):.1f} ms; "
        f"layer/venv {statistics.median(layer) / statistics.median(venv):.2f}"
    )


if __name__ == "__main__":
    main()
