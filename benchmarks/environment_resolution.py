"""How long a job waits for its environment when it is already cached (the warm case), timed on
the path a job takes.

    .venv/bin/python benchmarks/environment_resolution.py [--runs 100]

Builds the scikit-learn 1.2 environment once (the cold case, reported too), then resolves it
again as every later job with the same image does: in an agent forked from a process that has
imported the agent and nothing else (the local backend's fork server), ``EnvironmentSpec`` read
from its agent.json form, an ``EnvironmentCache`` made with the server's sources, and
``resolve`` with the server's defaults: without a requirements.txt it first checks whether the
server's own interpreter has every pinned package (``satisfied_here``, a fresh process's
``importlib.metadata`` lookups), then the environment's key, its marker, its bytecode flag and
the jobs.log line. Each fork is timed from inside, start of the work to its end, as the job's log
line ("environment ...: cached environment ... (N ms)") times it (wall clock: on a loaded machine
mostly waiting for a core), and in CPU time; the package check alone too.
Timed the same way: a job with a requirements.txt (no package check), and in one process over and
over (what this benchmark timed before: every cache warm). Baseline in the same forks: one
``os.stat`` of the interpreter, the least any cache could cost. Goal: warm resolution < 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shipyard.envs import EnvironmentCache, ImageResolver, PackageSources
from shipyard.envs._cache import has_bytecode

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
REQUIREMENTS = "tabulate==0.9.0\n"

# Run by a fresh interpreter that imports what the fork server imports, then forks one agent-like
# child per run; each child times its own resolution and writes it to a pipe.
AS_JOBS = """
import json, os, sys, time
import shipyard.runtime.agent  # what the fork server has imported before it forks an agent

envs_dir, spec_json, sources_json, requirements, runs, mode = sys.argv[1:7]

def child(write_fd):
    from pathlib import Path
    from shipyard.envs import EnvironmentCache, EnvironmentSpec, PackageSources, satisfied_here
    started, cpu = time.perf_counter(), time.process_time()
    spec = EnvironmentSpec.from_json(json.loads(spec_json))
    if mode == "check":  # the package check alone, as the first thing the job asks
        satisfied_here(spec.requirements)
        how, seconds, python = "check", 0.0, sys.executable
    else:
        cache = EnvironmentCache(
            Path(envs_dir), PackageSources.from_json(json.loads(sources_json)), allow_server_python=True
        )
        env = cache.resolve(spec, requirements, log=lambda _: None, job="bench")
        how, seconds, python = env.how, env.seconds, env.python
    total, cpu = time.perf_counter() - started, time.process_time() - cpu
    stat = time.perf_counter()
    os.stat(python)
    stat = time.perf_counter() - stat
    os.write(write_fd, json.dumps([how, total, seconds, stat, cpu]).encode())

times = []
for _ in range(int(runs)):
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        code = 0
        try:
            child(write_fd)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_fd)
    data = b""
    while chunk := os.read(read_fd, 4096):
        data += chunk
    os.close(read_fd)
    os.waitpid(pid, 0)
    times.append(json.loads(data))
print(json.dumps(times))
"""


def as_jobs(
    envs_dir: Path, spec: dict[str, object], sources: PackageSources, requirements: str, runs: int, mode: str
) -> list[list]:
    """Each forked job's [how, total s, the job log's s, os.stat s, CPU s]."""
    sources_json = json.dumps(
        {
            "index_url": sources.index_url,
            "extra_index_urls": list(sources.extra_index_urls),
            "find_links": list(sources.find_links),
        }
    )
    command = [sys.executable, "-c", AS_JOBS, str(envs_dir), json.dumps(spec), sources_json, requirements]
    out = subprocess.run([*command, str(runs), mode], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def compiled(cache: EnvironmentCache, timeout: float = 900) -> None:
    """Wait until every environment of ``cache`` has its bytecode (compiled in the background
    after its build: until then each job would start that compile again)."""
    deadline = time.monotonic() + timeout
    while not all(has_bytecode(env.path) for env in cache.environments()):
        if time.monotonic() > deadline:
            raise SystemExit(f"the environments' bytecode was not compiled after {timeout:g} s")
        time.sleep(0.5)


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    return (
        f"median {statistics.median(values) * 1000:7.3f} ms, "
        f"p99 {ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000:7.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()
    spec = ImageResolver().resolve(IMAGE)
    sources = PackageSources(find_links=tuple(os.environ.get("PIP_FIND_LINKS", "").split()))
    with tempfile.TemporaryDirectory() as tmp:
        cache = EnvironmentCache(Path(tmp), sources)  # the server's default: its own Python if it can
        started = time.monotonic()
        cold = cache.resolve(spec, "", log=lambda _: None)
        cold_s = time.monotonic() - started
        cache.resolve(spec, REQUIREMENTS, log=lambda _: None)  # the requirements.txt case's own build
        compiled(cache)  # as jobs find them once the first job's environment is ready
        plain = as_jobs(Path(tmp), spec.to_json(), sources, "", args.runs, "resolve")
        check = as_jobs(Path(tmp), spec.to_json(), sources, "", args.runs, "check")
        with_requirements = as_jobs(Path(tmp), spec.to_json(), sources, REQUIREMENTS, args.runs, "resolve")
        in_process = []
        for _ in range(args.runs):
            started = time.perf_counter()
            cache.resolve(spec, REQUIREMENTS, log=lambda _: None)
            in_process.append(time.perf_counter() - started)
    assert cold.how == "built" and {run[0] for run in plain} == {"cached"}, (cold, plain[0])
    base = statistics.median(run[3] for run in plain)
    job = statistics.median(run[1] for run in plain)
    print(f"cold build (uv, warm uv cache): {cold_s * 1000:.0f} ms")
    print(
        f"as a job, no requirements.txt:   {_ms([run[1] for run in plain])}  (its log says {_ms([run[2] for run in plain])})"
    )
    print(f"  in CPU time:                   {_ms([run[4] for run in plain])}")
    print(
        f"  the package check alone:       {_ms([run[1] for run in check])}, CPU {_ms([run[4] for run in check])}"
    )
    print(
        f"as a job, with requirements.txt: {_ms([run[1] for run in with_requirements])}, "
        f"CPU {_ms([run[4] for run in with_requirements])}"
    )
    print(f"in one process, again and again: {_ms(in_process)}  (what this benchmark timed before)")
    print(
        f"baseline os.stat in the job:     median {base * 1000:.4f} ms; job / baseline {job / base:.0f}x; "
        f"job / in one process {job / statistics.median(in_process):.0f}x (goal: a job's warm resolution < 50 ms)"
    )


if __name__ == "__main__":
    main()
