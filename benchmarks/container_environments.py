"""What the container's packages cost a PyTorch environment's build, against torch alone.

    .venv/bin/python benchmarks/container_environments.py [--rounds 3] [--cold]

Builds the environment ``pytorch-training:2.1.0-cpu-py310`` resolves to (torch and what AWS's
container of that version carries: docs/environments.md), and as a baseline in the same run the
framework alone (torch and numpy, what it resolved to before), each in a fresh folder, rounds
alternating: build seconds (median), files' size and package count, and the ratios. torch is the
site's CPU build (the server's own version, its wheel in ``$PIP_FIND_LINKS``). With ``--cold``
each build gets an empty uv cache, so every package is downloaded and unpacked again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from importlib import metadata
from pathlib import Path

from shipyard.envs import EnvironmentCache, EnvironmentSpec, ImageResolver, PackageSources

IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1.0-cpu-py310"


def _build(spec: EnvironmentSpec, sources: PackageSources, cold: bool) -> tuple[float, int, int]:
    with tempfile.TemporaryDirectory() as tmp:
        if cold:
            os.environ["UV_CACHE_DIR"] = str(Path(tmp) / "uv-cache")
        cache = EnvironmentCache(Path(tmp) / "envs", sources, allow_server_python=False)
        started = time.monotonic()
        env = cache.resolve(spec, log=lambda _: None)
        seconds = time.monotonic() - started
        folder = Path(tmp) / "envs" / str(env.key)
        size = json.loads((folder / "shipyard-env.json").read_text())["size_bytes"]
        packages = len(list(folder.glob("lib/python*/site-packages/*.dist-info")))
    os.environ.pop("UV_CACHE_DIR", None)
    return seconds, size, packages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="an empty uv cache for every build")
    args = parser.parse_args()
    torch = metadata.version("torch")
    container = ImageResolver(torch_version=torch).resolve(IMAGE)
    framework = EnvironmentSpec("torch only", (f"torch=={torch}", "numpy"))
    sources = PackageSources(find_links=tuple(os.environ.get("PIP_FIND_LINKS", "").split()))
    results: dict[str, list[tuple[float, int, int]]] = {"framework": [], "container": []}
    for _ in range(args.rounds):
        results["framework"].append(_build(framework, sources, args.cold))
        results["container"].append(_build(container, sources, args.cold))
    summary = {}
    for label, runs in results.items():
        summary[label] = (statistics.median(r[0] for r in runs), runs[0][1], runs[0][2])
        seconds, size, packages = summary[label]
        print(f"{label:9} {packages:3} packages  {size / 1e6:6.0f} MB  build median {seconds:5.1f} s")
    (fs, fsize, _), (cs, csize, _) = summary["framework"], summary["container"]
    cache = "cold (empty uv cache)" if args.cold else "warm uv cache"
    print(f"container/framework ({cache}): build {cs / fs:.2f}x, size {csize / fsize:.2f}x")


if __name__ == "__main__":
    main()
