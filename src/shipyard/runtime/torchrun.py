"""``distribution={"torch_distributed": {"enabled": True}}``: the user's script started once per
GPU of the instance, with torchrun's environment, as SageMaker's PyTorch container starts it.

Self-contained on purpose (the standard library only): the agent copies this file into the
instance's /opt/ml and runs it with the job's Python, which has no Shipyard (and need not have
torch) installed::

    python shipyard-torchrun.py --nproc 4 --nnodes 2 --node-rank 1 \
        --master-addr algo-1 --master-port 29500 -- python /opt/ml/code/train.py --epochs 3

Each process gets what ``torchrun`` gives its workers (:func:`process_environment`): ``RANK``
(``node_rank * nproc + local_rank``), ``LOCAL_RANK``, ``WORLD_SIZE`` (``nnodes * nproc``),
``LOCAL_WORLD_SIZE``, ``GROUP_RANK``, ``MASTER_ADDR`` / ``MASTER_PORT`` (algo-1's, where rank 0's
store listens) and the ``TORCHELASTIC_*`` variables ``torch.distributed`` reads, so that
``init_process_group("nccl")`` (or ``"gloo"``) with the default ``env://`` joins them. All the
instance's GPUs stay visible to every process (``CUDA_VISIBLE_DEVICES`` unchanged), as with
torchrun: a process picks its own with ``torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))``.

As torchrun, it ends with its processes: when one fails, the others are stopped (SIGTERM, SIGKILL
after ``--grace`` seconds) and it exits with the failed one's code; a SIGTERM to it (a stopped job;
the agent signals every process of the job) waits for them to end.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence

NAME = "shipyard-torchrun.py"  # its name in the instance's /opt/ml
_OUTPUT = threading.Lock()  # one line at a time on the launcher's output


def process_environment(
    base: Mapping[str, str],
    *,
    local_rank: int,
    nproc: int,
    nnodes: int,
    node_rank: int,
    master_addr: str,
    master_port: int,
    run_id: str,
) -> dict[str, str]:
    """The environment of the process of ``local_rank`` on node ``node_rank`` (pure)."""
    env = dict(base)
    rank = node_rank * nproc + local_rank
    world = nnodes * nproc
    env.update(
        {
            "LOCAL_RANK": str(local_rank),
            "RANK": str(rank),
            "GROUP_RANK": str(node_rank),
            "ROLE_RANK": str(rank),
            "ROLE_NAME": "default",
            "LOCAL_WORLD_SIZE": str(nproc),
            "WORLD_SIZE": str(world),
            "GROUP_WORLD_SIZE": str(nnodes),
            "ROLE_WORLD_SIZE": str(world),
            "MASTER_ADDR": master_addr,
            "MASTER_PORT": str(master_port),
            "TORCHELASTIC_RESTART_COUNT": "0",
            "TORCHELASTIC_MAX_RESTARTS": "0",
            "TORCHELASTIC_RUN_ID": run_id,
            # rank 0 of init_process_group hosts the store itself (there is no elastic agent's)
            "TORCHELASTIC_USE_AGENT_STORE": "False",
        }
    )
    if "OMP_NUM_THREADS" not in base and nproc > 1:  # the instance's CPUs shared among them
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        env["OMP_NUM_THREADS"] = str(max(1, cpus // nproc))
    return env


def exit_status(returncode: int) -> int:
    """A process's return code as a shell reports it (killed by signal N: 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def launch(
    command: Sequence[str],
    *,
    nproc: int,
    nnodes: int,
    node_rank: int,
    master_addr: str,
    master_port: int,
    run_id: str,
    grace: float = 30.0,
) -> int:
    """Start ``nproc`` processes of ``command``; the first failure's exit status, else 0."""
    signal.signal(signal.SIGTERM, lambda *_: None)  # they get it too: wait for them to end
    processes = [
        subprocess.Popen(
            list(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=process_environment(
                os.environ,
                local_rank=local_rank,
                nproc=nproc,
                nnodes=nnodes,
                node_rank=node_rank,
                master_addr=master_addr,
                master_port=master_port,
                run_id=run_id,
            ),
        )
        for local_rank in range(nproc)
    ]
    relays = [threading.Thread(target=_relay, args=(p,), daemon=True) for p in processes]
    for relay in relays:
        relay.start()
    try:
        return _wait(processes, nproc=nproc, node_rank=node_rank, grace=grace)
    finally:
        for relay in relays:
            relay.join(timeout=5)


def _relay(process: subprocess.Popen[bytes]) -> None:
    """A process's output, whole lines at a time: the processes' lines never mix within one."""
    assert process.stdout is not None
    out = sys.stdout.buffer
    for line in process.stdout:
        with _OUTPUT:
            out.write(line if line.endswith(b"\n") else line + b"\n")
            out.flush()


def _wait(processes: Sequence[subprocess.Popen[bytes]], *, nproc: int, node_rank: int, grace: float) -> int:
    failed: tuple[int, int] | None = None  # (local rank, exit status)
    while True:
        running = [p for p in processes if p.poll() is None]
        if failed is None:
            for local_rank, p in enumerate(processes):
                if p.returncode not in (None, 0):
                    failed = (local_rank, exit_status(p.returncode))
                    break
            if failed is not None and running:
                local_rank, status = failed
                _say(
                    f"Shipyard: process of rank {node_rank * nproc + local_rank} (local rank {local_rank}) "
                    f"exited with status {status}; stopping the other {len(running)}"
                )
                _stop(running, grace)
                continue
        if not running:
            return failed[1] if failed is not None else 0
        time.sleep(0.05)


def _say(line: str) -> None:
    with _OUTPUT:
        sys.stdout.buffer.write(line.encode() + b"\n")
        sys.stdout.buffer.flush()


def _stop(processes: Sequence[subprocess.Popen[bytes]], grace: float) -> None:
    for p in processes:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in processes:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=NAME)
    parser.add_argument("--nproc", type=int, required=True)
    parser.add_argument("--nnodes", type=int, default=1)
    parser.add_argument("--node-rank", type=int, default=0)
    parser.add_argument("--master-addr", default="127.0.0.1")
    parser.add_argument("--master-port", type=int, default=29500)
    parser.add_argument("--run-id", default="none")
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to start")
    return launch(
        command,
        nproc=args.nproc,
        nnodes=args.nnodes,
        node_rank=args.node_rank,
        master_addr=args.master_addr,
        master_port=args.master_port,
        run_id=args.run_id,
        grace=args.grace,
    )


if __name__ == "__main__":
    sys.exit(main())
