"""Slurm's side of the Slurm backend, as pure decisions: what ``sbatch`` is asked for an
instance type (the site's table, defaults from what the instance was granted), what ``squeue``
and ``sacct`` say of a job (running, waiting and why, ended and why), and what ``sinfo`` says
the cluster offers (capacity, which instance types could run).

Nothing here runs a command: ``compute/slurm`` runs them and hands their output to these
functions.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shipyard.core.placement import Resources
from shipyard.errors import ValidationError

# The table's keys, and what each becomes on sbatch's command line.
_TYPE_KEYS = ("partition", "cpus_per_task", "memory_mib", "gres", "qos", "account")
_NAME = re.compile(r"^[A-Za-z0-9_.+-]{1,64}$")  # partitions, QOS, accounts
_GRES = re.compile(r"^[A-Za-z0-9_]+(:[A-Za-z0-9_.-]+)?:[0-9]+$")  # gpu:4, gpu:a100:4


@dataclasses.dataclass(frozen=True)
class SlurmType:
    """What the site asks Slurm for one instance type (a row of its table); None: the default."""

    partition: str | None = None
    cpus_per_task: int | None = None
    memory_mib: int | None = None
    gres: str | None = None
    qos: str | None = None
    account: str | None = None

    @classmethod
    def from_config(cls, where: str, raw: Mapping[str, Any]) -> SlurmType:
        """A table row from the config file (``where`` names it in errors).

        Raises:
            ValidationError: an unknown key, or a value Slurm would not take, naming both.
        """
        values: dict[str, Any] = {}
        for key, value in raw.items():
            name = key.replace("-", "_")
            if name not in _TYPE_KEYS:
                raise ValidationError(f"{where}: unknown key {key!r}; known keys: {', '.join(_TYPE_KEYS)}")
            if name in ("cpus_per_task", "memory_mib"):
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValidationError(
                        f"{where}.{key} must be a whole number of at least 1, got {value!r}"
                    )
            elif name == "gres":
                if not isinstance(value, str) or not _GRES.match(value):
                    raise ValidationError(
                        f"{where}.gres must be Slurm's form name[:type]:count (gpu:a100:1), got {value!r}"
                    )
            elif not isinstance(value, str) or not _NAME.match(value):
                raise ValidationError(
                    f"{where}.{key} must be a Slurm name (letters, digits, _ . + -), got {value!r}"
                )
            values[name] = value
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class SlurmSite:
    """The site's settings for sbatch: default partition, account and QOS, and a table of instance
    types (shell patterns, ``ml.g5.*``, tried in order) with what to ask for each instead.

    ``time_margin_seconds`` is added to MaxRuntimeInSeconds for ``--time``: the agent enforces the
    runtime itself (stopping the job gracefully); Slurm's limit is the backstop, and downloads,
    the environment build and uploads happen outside the runtime.
    """

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    types: tuple[tuple[str, SlurmType], ...] = ()
    time_margin_seconds: int = 900

    @classmethod
    def from_config(
        cls,
        *,
        partition: str = "",
        account: str = "",
        qos: str = "",
        types: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> SlurmSite:
        """The site from the settings (``slurm_partition``...) and the ``[slurm_types]`` table.

        Raises:
            ValidationError: a value Slurm would not take, naming the setting and the value.
        """
        defaults = SlurmType.from_config(
            "slurm", {k: v for k, v in (("partition", partition), ("account", account), ("qos", qos)) if v}
        )
        rows = []
        for pattern, raw in (types or {}).items():
            if not isinstance(raw, Mapping):
                raise ValidationError(f"slurm_types.{pattern!r} must be a table, got {raw!r}")
            rows.append((pattern, SlurmType.from_config(f"slurm_types.{pattern!r}", raw)))
        return cls(defaults.partition, defaults.account, defaults.qos, tuple(rows))

    @property
    def partitions(self) -> tuple[str, ...] | None:
        """The partitions its jobs go to: the default and the table's; None without a default
        (sbatch then uses the cluster's own, so any node may be asked)."""
        if self.partition is None:
            return None
        rows = (row.partition for _, row in self.types if row.partition)
        return tuple(dict.fromkeys((self.partition, *rows)))

    def row(self, instance_type: str) -> SlurmType:
        for pattern, row in self.types:
            if fnmatch.fnmatchcase(instance_type, pattern):
                return row
        return SlurmType()

    def request(
        self,
        instance_type: str,
        granted: Resources,
        count: int,
        max_runtime_seconds: int | None,
        gpu_model: str | None = None,
    ) -> SlurmRequest:
        """What one job of ``count`` instances asks sbatch for: one allocation of ``count`` nodes,
        one task each, each with what the instance was granted (the type's vCPUs, memory and
        GPUs, or less where the cluster's largest node is smaller), unless the table says
        otherwise."""
        row = self.row(instance_type)
        gres = row.gres
        if gres is None and granted.gpus:
            gres = f"gpu:{gpu_model}:{granted.gpus}" if gpu_model else f"gpu:{granted.gpus}"
        minutes = None
        if max_runtime_seconds:
            minutes = math.ceil((max_runtime_seconds + self.time_margin_seconds) / 60)
        return SlurmRequest(
            nodes=count,
            cpus_per_task=row.cpus_per_task or max(1, math.ceil(granted.cpus)),
            memory_mib=row.memory_mib or max(1, math.floor(granted.memory_gib * 1024)),
            gres=gres,
            partition=row.partition or self.partition,
            qos=row.qos or self.qos,
            account=row.account or self.account,
            time_minutes=minutes,
        )


@dataclasses.dataclass(frozen=True)
class SlurmRequest:
    """One sbatch request: ``nodes`` nodes, one task on each."""

    nodes: int
    cpus_per_task: int
    memory_mib: int
    gres: str | None = None
    partition: str | None = None
    qos: str | None = None
    account: str | None = None
    time_minutes: int | None = None

    def sbatch_args(self) -> list[str]:
        args = [
            f"--nodes={self.nodes}",
            f"--ntasks={self.nodes}",
            "--ntasks-per-node=1",
            f"--cpus-per-task={self.cpus_per_task}",
            f"--mem={self.memory_mib}M",
        ]
        if self.gres:
            args.append(f"--gres={self.gres}")
        if self.partition:
            args.append(f"--partition={self.partition}")
        if self.qos:
            args.append(f"--qos={self.qos}")
        if self.account:
            args.append(f"--account={self.account}")
        if self.time_minutes:
            args.append(f"--time={self.time_minutes}")
        return args


# -- squeue / sacct: a job's state ------------------------------------------------------------

SQUEUE_FORMAT = "%i|%j|%T|%r|%N"  # job id, name, state, reason, nodes
TERMINAL = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "TIMEOUT",
        "REVOKED",
        "SPECIAL_EXIT",
    }
)
# squeue's pending reasons, in a user's words (the rest are shown as Slurm says them).
_REASONS = {
    "Priority": "other jobs in the queue have higher priority",
    "Resources": "the nodes it needs are busy",
    "Dependency": "it waits for another job",
    "QOSMaxJobsPerUserLimit": "the QOS's limit on running jobs per user is reached",
    "QOSMaxCpuPerUserLimit": "the QOS's limit on CPUs per user is reached",
    "QOSMaxGRESPerUser": "the QOS's limit on GPUs per user is reached",
    "QOSGrpCpuLimit": "the QOS's CPU limit is reached",
    "AssocMaxJobsLimit": "the account's limit on running jobs is reached",
    "AssocGrpCpuLimit": "the account's CPU limit is reached",
    "ReqNodeNotAvail": "the nodes it needs are not available (down, drained or reserved)",
    "PartitionDown": "its partition is down",
    "PartitionInactive": "its partition is inactive",
    "PartitionTimeLimit": "its time limit is longer than the partition allows",
    "PartitionNodeLimit": "it needs more nodes than the partition allows",
    "JobHeldUser": "it is held (scontrol release)",
    "JobHeldAdmin": "an administrator holds it",
    "BeginTime": "its start time has not come",
    "Reservation": "it waits for its reservation",
    "NodeDown": "a node it needs is down",
    "BadConstraints": "no node satisfies its constraints",
}


@dataclasses.dataclass(frozen=True)
class SlurmJob:
    """A job as ``squeue`` (or ``sacct``) shows it."""

    job_id: str
    name: str
    state: str
    reason: str = ""
    nodes: str = ""

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL

    @property
    def pending(self) -> bool:
        return self.state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING")

    def waiting_message(self) -> str | None:
        """Why the job waits in Slurm's queue, for its SecondaryStatus message (None: it does not)."""
        if not self.pending:
            return None
        reason = self.reason if self.reason not in ("", "None", "(null)") else ""
        why = _REASONS.get(reason, "")
        detail = f"{why} ({reason})" if why else (reason or "waiting for Slurm's scheduler")
        return f"Queued in Slurm as job {self.job_id}: {detail}"

    def lost_reason(self) -> str | None:
        """Why the instances of a job that ended in Slurm without their agents' report are gone
        (None while it has not ended)."""
        if not self.ended:
            return None
        nodes = f" ({self.nodes})" if self.nodes else ""
        return {
            "NODE_FAIL": f"its Slurm node failed{nodes} (Slurm job {self.job_id}: NODE_FAIL)",
            "BOOT_FAIL": f"its Slurm node could not boot{nodes} (Slurm job {self.job_id}: BOOT_FAIL)",
            "CANCELLED": f"Slurm job {self.job_id} was cancelled outside Shipyard (scancel)",
            "TIMEOUT": f"Slurm job {self.job_id} reached its time limit (--time)",
            "PREEMPTED": f"Slurm job {self.job_id} was preempted",
            "OUT_OF_MEMORY": f"Slurm job {self.job_id} ran out of memory (OUT_OF_MEMORY)",
            "DEADLINE": f"Slurm job {self.job_id} passed its deadline",
        }.get(self.state, f"Slurm job {self.job_id} ended {self.state}{nodes} before its agent reported")


def parse_squeue(output: str) -> dict[str, SlurmJob]:
    """``squeue -h -o SQUEUE_FORMAT`` output, by job id."""
    jobs = {}
    for line in output.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 5 or not parts[0]:
            continue
        job_id, name, state, reason, nodes = parts
        state = state.split()[0] if state else ""  # "CANCELLED by 0" in sacct
        jobs[job_id] = SlurmJob(job_id, name, state, reason, nodes)
    return jobs


# -- sinfo: what the cluster offers -----------------------------------------------------------

SINFO_FORMAT = "%N|%c|%m|%G|%t|%P"  # node, CPUs, memory MiB, GRES, state, partition
_USABLE = ("idle", "mix", "alloc", "comp", "resv", "plnd")  # states a node takes work in
_GPUS = re.compile(r"gpu(?::[^:(,]+)?:(\d+)")


@dataclasses.dataclass(frozen=True)
class SlurmNode:
    name: str
    resources: Resources
    state: str
    partitions: tuple[str, ...]

    @property
    def usable(self) -> bool:
        return self.state.rstrip("*~#!%$@^-").startswith(_USABLE)


def parse_sinfo(output: str) -> list[SlurmNode]:
    """``sinfo -h -N -o SINFO_FORMAT`` output: one node per name (sinfo lists a node once per
    partition it is in)."""
    nodes: dict[str, SlurmNode] = {}
    for line in output.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 6:
            continue
        name, cpus, memory, gres, state, partition = parts
        try:
            resources = Resources(float(cpus), int(memory.rstrip("+")) / 1024, _gpu_count(gres))
        except ValueError:
            continue
        partition = partition.rstrip("*")
        known = nodes.get(name)
        partitions = (*(known.partitions if known else ()), partition)
        nodes[name] = SlurmNode(name, resources, state, partitions)
    return list(nodes.values())


def _gpu_count(gres: str) -> int:
    return sum(int(m.group(1)) for m in _GPUS.finditer(gres))


def capacity(
    nodes: Sequence[SlurmNode], partitions: str | Sequence[str] | None = None
) -> tuple[Resources, Resources]:
    """The usable nodes' total resources and the largest node's (in ``partitions`` when given:
    one name, or several)."""
    wanted = (partitions,) if isinstance(partitions, str) else partitions
    usable = [
        n.resources for n in nodes if n.usable and (wanted is None or any(p in n.partitions for p in wanted))
    ]
    total = Resources(
        sum(r.cpus for r in usable), sum(r.memory_gib for r in usable), sum(r.gpus for r in usable)
    )
    largest = max(usable, key=lambda r: (r.cpus, r.memory_gib, r.gpus), default=Resources(0, 0, 0))
    return total, largest


def unrunnable(
    request: SlurmRequest, nodes: Iterable[SlurmNode], default_partition: str | None = None
) -> str | None:
    """Why no usable node of the cluster could take one task of ``request`` (None: one could):
    for ``shipyard instance-types`` and before a job is submitted."""
    partition = request.partition or default_partition
    gpus = _gpu_count(request.gres or "")
    candidates = [n for n in nodes if n.usable and (partition is None or partition in n.partitions)]
    where = f"partition {partition!r}" if partition else "the cluster"
    if not candidates:
        return f"{where} has no usable node"
    fits = [
        n
        for n in candidates
        if n.resources.cpus >= request.cpus_per_task
        and n.resources.memory_gib * 1024 >= request.memory_mib
        and n.resources.gpus >= gpus
    ]
    if len(fits) >= request.nodes:
        return None
    largest = max(candidates, key=lambda n: (n.resources.cpus, n.resources.memory_gib, n.resources.gpus))
    r = largest.resources
    return (
        f"{where} has {len(fits)} node(s) with {request.cpus_per_task} CPUs, {request.memory_mib} MiB"
        + (f" and {gpus} GPUs" if gpus else "")
        + f" (its largest: {r.cpus:g} CPUs, {r.memory_gib * 1024:.0f} MiB, {r.gpus} GPUs); "
        + f"{request.nodes} needed"
    )


# -- sacct: what a job used ----------------------------------------------------------------------


def elapsed_seconds(text: str) -> int:
    """sacct's Elapsed (``[D-]HH:MM:SS``, ``MM:SS``) in seconds.

    Raises:
        ValidationError: not that form.
    """
    days, _, clock = text.strip().rpartition("-")
    parts = clock.split(":")
    try:
        numbers = [int(p) for p in parts]
        if not 2 <= len(numbers) <= 3:
            raise ValueError
        seconds = 0
        for n in numbers:
            seconds = seconds * 60 + n
        return seconds + (int(days) * 86_400 if days else 0)
    except ValueError:
        raise ValidationError(f"sacct's Elapsed must be [D-]HH:MM:SS, got {text!r}") from None


def alloc_tres(text: str) -> dict[str, str]:
    """sacct's AllocTRES (``cpu=2,mem=1000M,node=2,gres/gpu=1``) as a mapping."""
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)


SACCT_USAGE_FORMAT = "JobID,Start,Elapsed,AllocTRES,NCPUS,NNodes"
_MEMORY = re.compile(r"^(\d+(?:\.\d+)?)([KMGTP]?)$")
_MIB_PER = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024**2, "P": 1024**3}


@dataclasses.dataclass(frozen=True)
class SlurmUsage:
    """What a finished Slurm job was billed by the cluster: its allocation's start and Elapsed,
    and what each of its nodes was allocated (one instance a node). ``source`` says where the
    per-node resources came from: ``AllocTRES`` (accounting), else ``NCPUS`` (the job completion
    log has no AllocTRES: memory and GPUs are then those sbatch was asked for)."""

    job_id: str
    start: str  # sacct's Start, the server's local time (sacct prints in its caller's zone)
    elapsed_seconds: int
    nodes: int
    per_node: Resources
    source: str


def memory_mib(text: str) -> float:
    """A TRES memory amount (``1000M``, ``1.5G``, ``512K``; no unit: MiB) in MiB.

    Raises:
        ValidationError: not that form.
    """
    match = _MEMORY.match(text.strip())
    if match is None:
        raise ValidationError(f"AllocTRES's mem must be a number with K, M, G or T, got {text!r}")
    return float(match.group(1)) * _MIB_PER[match.group(2)]


def parse_usage(output: str, job_id: str, request: SlurmRequest) -> SlurmUsage | None:
    """``sacct -n -P -X -o SACCT_USAGE_FORMAT`` output for ``job_id`` (None: not there yet, or
    it never started). Without AllocTRES (the job completion log) each node's CPUs are NCPUS
    over NNodes, its memory and GPUs those of ``request``, what sbatch was asked for."""
    for line in output.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 6 or parts[0] != job_id:
            continue
        _, start, elapsed, tres, ncpus, nnodes = parts
        if not start or start in ("Unknown", "None"):
            return None
        nodes = max(1, int(nnodes)) if nnodes.isdigit() else request.nodes
        allocated = alloc_tres(tres)
        if "cpu" in allocated:
            gpus = int(allocated.get("gres/gpu", "0") or 0)
            per_node = Resources(
                int(allocated["cpu"]) / nodes,
                memory_mib(allocated.get("mem", "0M")) / 1024 / nodes,
                gpus // nodes,
            )
            source = "AllocTRES"
        else:
            cpus = int(ncpus) if ncpus.isdigit() else request.cpus_per_task * nodes
            per_node = Resources(cpus / nodes, request.memory_mib / 1024, _gpu_count(request.gres or ""))
            source = "NCPUS"
        return SlurmUsage(job_id, start, elapsed_seconds(elapsed), nodes, per_node, source)
    return None
