"""A small Slurm cluster on this machine: munged, slurmctld, and one slurmd per node name.

For tests and benchmarks (``SlurmCluster(folder, nodes=2)``), from Debian's ``slurm-wlm`` and
``munge`` (``scripts/setup-slurm`` installs them). Every node is this machine
(``NodeHostname=localhost``, a port of its own, ``slurmd -N <name>``), so a job of two nodes is
really two allocations on two slurmds. Everything (config, munge key and socket, state, spool,
logs) lives in ``folder``; the daemons run in the foreground as this process's children and are
stopped by their pids, never by name. Clients find the cluster through ``SLURM_CONF``
(:attr:`env`).

Accounting: slurmdbd (and a MySQL under it) is too heavy for a test machine, so the cluster keeps
no accounting database (``AccountingStorageType=accounting_storage/none``) and writes finished
jobs to a text file (``JobCompType=jobcomp/filetxt``), which ``sacct --completion`` reads: State,
Start, End, Elapsed, NCPUS and NodeList, but no AllocTRES (a site's slurmdbd gives that too).

Scheduling: ``batch_sched_delay=0``, as a site tuned for short jobs sets it. Slurm's default holds
a batch job for up to 3 s before scheduling it, which every test job would wait out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


def slurm_missing() -> str | None:
    """Why a test Slurm cannot be started here (None: it can)."""
    missing = [
        name for name in (*DAEMONS, "sbatch", "squeue", "sacct", "sinfo") if shutil.which(name) is None
    ]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing: bash scripts/setup-slurm)"
    if os.geteuid() != 0:
        return "the test Slurm cluster needs root (slurmd runs jobs as their users)"
    return None


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


class SlurmCluster:
    """``nodes`` Slurm nodes named ``shipyard-node-<i>`` (each ``cpus`` CPUs, ``memory_gib`` GiB)
    on this machine, in the default partition ``debug`` and in ``urgent``, whose jobs preempt
    (cancel: PREEMPTED) the ``debug`` jobs on the nodes they need."""

    def __init__(self, folder: Path, *, nodes: int = 2, cpus: int = 1, memory_gib: float = 3.0) -> None:
        self.folder = Path(folder)
        self.names = [f"shipyard-node-{i}" for i in range(1, nodes + 1)]
        self.cpus = cpus
        self.memory_mib = int(memory_gib * 1024)
        self.conf = self.folder / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self._daemons: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> SlurmCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _write_config(self) -> None:
        f = self.folder
        ctld, *node_ports = _free_ports(1 + len(self.names))
        for sub in ("state", "log", *(f"spool/{n}" for n in self.names)):
            (f / sub).mkdir(parents=True, exist_ok=True)
        key = f / "munge.key"
        if not key.exists():
            key.write_bytes(os.urandom(1024))
            key.chmod(0o600)
        lines = [
            "ClusterName=shipyard",
            "SlurmctldHost=localhost",
            f"SlurmctldPort={ctld}",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={f / 'munge.sock'}",
            "SlurmUser=root",
            "SlurmdUser=root",
            f"StateSaveLocation={f / 'state'}",
            f"SlurmdSpoolDir={f / 'spool'}/%n",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}",
            f"SlurmdPidFile={f / 'spool'}/%n/slurmd.pid",
            f"SlurmctldLogFile={f / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={f / 'log'}/slurmd-%n.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "MpiDefault=none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=batch_sched_delay=0",
            "ReturnToService=2",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt",
            f"JobCompLoc={f / 'jobcomp.txt'}",
            "KillWait=5",
            "MinJobAge=600",
            "SlurmdTimeout=30",
            *(
                f"NodeName={name} NodeHostname=localhost NodeAddr=127.0.0.1 Port={port} "
                f"CPUs={self.cpus} RealMemory={self.memory_mib} State=UNKNOWN"
                for name, port in zip(self.names, node_ports, strict=True)
            ),
            # A job in 'urgent' preempts (cancels) the 'debug' jobs on the nodes it needs.
            "PreemptType=preempt/partition_prio",
            "PreemptMode=CANCEL",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP PriorityTier=1",
            "PartitionName=urgent Nodes=ALL Default=NO MaxTime=INFINITE State=UP PriorityTier=2",
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def _daemon(self, name: str, command: list[str]) -> None:
        with (self.folder / "log" / f"{name}.out").open("ab") as out:
            self._daemons[name] = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )

    def start(self) -> SlurmCluster:
        """Start munged, slurmctld and the slurmds, and wait until every node is idle."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_config()
        f = self.folder
        try:
            self._daemon(
                "munged",
                [
                    "munged",
                    "--foreground",
                    "--force",
                    f"--socket={f / 'munge.sock'}",
                    f"--key-file={f / 'munge.key'}",
                    f"--pid-file={f / 'munged.pid'}",
                    f"--log-file={f / 'log' / 'munged.log'}",
                    f"--seed-file={f / 'munged.seed'}",
                ],
            )
            self._wait(lambda: (f / "munge.sock").exists(), 30, "munged's socket")
            self._daemon("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
            for name in self.names:
                self._daemon(name, ["slurmd", "-D", "-N", name, "-f", str(self.conf)])
            self._wait(lambda: self.idle() == set(self.names), 60, "every node idle")
        except BaseException:
            self.stop()
            raise
        return self

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm command against this cluster (``run("sinfo")``)."""
        return subprocess.run(args, capture_output=True, text=True, env=self.env, check=check, timeout=30)

    def idle(self) -> set[str]:
        out = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False)
        return {line.split()[0] for line in out.stdout.splitlines() if line.split()[1:] == ["idle"]}

    def _wait(self, ready, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, process in self._daemons.items():
                if process.poll() is not None:
                    log = (self.folder / "log" / f"{name}.out").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"{name} exited with {process.returncode}:\n{log}")
            if ready():
                return
            time.sleep(0.2)
        raise TimeoutError(f"the test Slurm cluster in {self.folder} did not have {what} in {timeout:g} s")

    def stop(self) -> None:
        """Cancel every job of this cluster, then end the slurmds, slurmctld and munged."""
        if "slurmctld" in self._daemons:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                jobs = self.run("squeue", "-h", "-o", "%i", check=False).stdout.split()
                if jobs:
                    self.run("scancel", *jobs, check=False)
                    self._wait(lambda: not self.run("squeue", "-h", "-o", "%i").stdout.split(), 30, "no job")
        for name in reversed(list(self._daemons)):
            process = self._daemons.pop(name)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
