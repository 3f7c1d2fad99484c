"""How long a job waits for its environment when it is already cached (the warm case).

    .venv/bin/python benchmarks/environment_resolution.py [--runs 200]

Builds the scikit-learn 1.2 environment with a requirements.txt once (the cold case, reported
too), then resolves it again and again, as every later job with the same image and requirements
does. Baseline in the same process: one ``os.stat`` of the interpreter, the least any cache could
cost. Goal: warm resolution < 50 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from shipyard.envs import EnvironmentCache, ImageResolver, PackageSources

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    spec = ImageResolver().resolve(IMAGE)
    sources = PackageSources(find_links=tuple(os.environ.get("PIP_FIND_LINKS", "").split()))
    with tempfile.TemporaryDirectory() as tmp:
        cache = EnvironmentCache(Path(tmp), sources, allow_server_python=False)
        started = time.monotonic()
        cold = cache.resolve(spec, "tabulate==0.9.0\n", log=lambda _: None)
        cold_s = time.monotonic() - started
        warm = []
        for _ in range(args.runs):
            started = time.perf_counter()
            cache.resolve(spec, "tabulate==0.9.0\n", log=lambda _: None)
            warm.append(time.perf_counter() - started)
        base = []
        for _ in range(args.runs):
            started = time.perf_counter()
            os.stat(cold.python)
            base.append(time.perf_counter() - started)
    print(f"cold build (uv, warm uv cache): {cold_s * 1000:.0f} ms")
    print(
        f"warm resolution: median {statistics.median(warm) * 1000:.3f} ms, "
        f"p99 {sorted(warm)[int(len(warm) * 0.99) - 1] * 1000:.3f} ms"
    )
    print(
        f"baseline os.stat: median {statistics.median(base) * 1000:.4f} ms; "
        f"ratio {statistics.median(warm) / statistics.median(base):.0f}x"
    )


if __name__ == "__main__":
    main()
