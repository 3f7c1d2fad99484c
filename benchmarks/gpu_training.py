"""GPU training throughput: the same PyTorch loop run directly and as a Shipyard job on the same GPU.

    .venv/bin/python benchmarks/gpu_training.py [--steps 600] [--warmup 100] [--batch 512]

The loop (a small CNN on generated data, all on the GPU) reports samples/s over the steps after
``--warmup``. Baseline: ``python loop.py`` on GPU 0 of this machine. Shipyard: a training job on
``ml.g5.xlarge`` (one GPU, granted by the server; its sandbox shows it only that one), with the
server's Python (install a CUDA build of torch in the venv). Goal: the job's samples/s at least
0.98 times the direct run's. Without a GPU it says so and exits 0.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

LOOP = r"""
import os, sys, time, torch
steps, warmup, batch = (int(os.environ.get(k, d)) for k, d in (("STEPS", "600"), ("WARMUP", "100"), ("BATCH", "512")))
for arg, value in zip(sys.argv[1::2], sys.argv[2::2]):  # as a job: --steps N --warmup N --batch N
    if arg == "--steps": steps = int(value)
    if arg == "--warmup": warmup = int(value)
    if arg == "--batch": batch = int(value)
torch.manual_seed(0)
model = torch.nn.Sequential(
    torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(64, 64, 3, padding=1), torch.nn.ReLU(),
    torch.nn.MaxPool2d(2), torch.nn.Conv2d(64, 128, 3, padding=1), torch.nn.ReLU(),
    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(128, 10),
).cuda()
x = torch.randn(batch, 3, 32, 32, device="cuda")
y = torch.randint(0, 10, (batch,), device="cuda")
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(steps):
    if step == warmup:
        torch.cuda.synchronize()
        start = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
torch.cuda.synchronize()
print(f"samples_per_second: {(steps - warmup) * batch / (time.perf_counter() - start):.1f}", flush=True)
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args()
    gpu_check = _load_gpu_check()
    count, what = gpu_check.gpu_count()
    if count == 0:
        print(f"gpu_training: no GPU on this machine: {what}; nothing measured")
        return 0
    from shipyard.server import ServerProcess

    with tempfile.TemporaryDirectory() as tmp:
        loop = Path(tmp) / "loop.py"
        loop.write_text(LOOP)
        env = {
            **os.environ,
            "CUDA_VISIBLE_DEVICES": "0",
            "STEPS": str(args.steps),
            "WARMUP": str(args.warmup),
            "BATCH": str(args.batch),
        }
        direct = subprocess.run(
            [sys.executable, str(loop)], capture_output=True, text=True, env=env, check=True
        ).stdout
        baseline = float(re.search(r"samples_per_second: ([0-9.]+)", direct).group(1))  # type: ignore[union-attr]
        with ServerProcess(Path(tmp) / "data") as server:
            check = gpu_check.Check(server.url)
            name = check.train(
                {"train.py": LOOP},
                "ml.g5.xlarge",
                steps=str(args.steps),
                warmup=str(args.warmup),
                batch=str(args.batch),
            )
            line = next(line for line in check.lines(name) if line.startswith("samples_per_second:"))
            job = float(line.split()[1])
    ratio = job / baseline
    print(f"direct: {baseline:.1f} samples/s   job: {job:.1f} samples/s   ratio {ratio:.3f} (goal >= 0.98)")
    return 0 if ratio >= 0.98 else 1


def _load_gpu_check():  # type: ignore[no-untyped-def]
    import importlib.machinery
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "scripts" / "gpu-check"
    loader = importlib.machinery.SourceFileLoader("gpu_check", str(path))
    spec = importlib.util.spec_from_loader("gpu_check", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


if __name__ == "__main__":
    sys.exit(main())
