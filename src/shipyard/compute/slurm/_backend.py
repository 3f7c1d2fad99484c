"""The Slurm backend as the server sees it: job instances as Slurm jobs, through Slurm's own
commands (``sbatch``, ``squeue``, ``scancel``, ``srun``, ``sinfo``), as the server's Slurm user.

A job's instances are one Slurm job: one allocation of N nodes, one task per node, so they start
together; each task runs ``_task.py`` (the instance agent in a folder of its node's own). The
batch script carries the instances' ``agent.json`` (with the job's own session credentials,
never the server's key) and exports only what the agent needs: Slurm's commands run with none
of the server's environment but the locale, PATH and Slurm's own settings (:func:`_slurm_env`),
and the script exports the rest (not ``--export=NONE``, with which Slurm 22.05 started the batch
script a second later about half the time). Agents reach the object store over the server's S3
API as on Ray, and what they write on the nodes reaches the server through a relay step of the
job's own allocation (``_relay.py``, ``srun --overlap``):
no shared filesystem is assumed, and the files land in the instance's usual folder under
``<data dir>/jobs/``, where the scheduler reads them as it does for local agents.

A thread asks ``squeue`` about the jobs followed (every 0.2 s while there are any) and
``sinfo`` about the nodes (every 5 s): a job waiting in Slurm's queue shows why (its pending
reason) in its SecondaryStatus message; one that ended in Slurm without its agents' report
(NODE_FAIL, cancelled outside Shipyard, time limit) is lost, with Slurm's reason. A restarted
server finds its jobs again by the Slurm job id and name kept in each instance's handle and
starts a new relay from the sizes of its copies.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from shipyard.compute._base import (
    Backend,
    ClusterBill,
    Feature,
    InstanceLaunch,
    agent_env,
    write_agent_config,
)
from shipyard.compute.slurm._layout import LAUNCH_VARIABLE, STREAMS
from shipyard.core import slurm
from shipyard.core.placement import Resources
from shipyard.errors import ConfigurationError, ValidationError
from shipyard.runtime.contract import StoreAccess

log = logging.getLogger(__name__)

_POLL = 0.2  # how often squeue is asked, while jobs are followed
_NODES_EVERY = 5.0  # how often sinfo is asked
_KILL_AFTER = 120.0  # past the agents' own grace period: the Slurm job is cancelled
_MISSING_PASSES = 5  # squeue has not known a job this many times: ask sacct, else it is gone
_COMMAND_SECONDS = 30
_SACCT_PAUSES = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # sacct asked for a job's usage after it ended
_INSTANCES_STEP = "instances"  # the name of the step that runs the instances (the relay's: "relay")


@dataclasses.dataclass
class _Job:
    """What the backend follows of one Slurm job (one Shipyard job's attempt)."""

    job_id: str
    name: str
    key: str
    dirs: dict[str, Path]  # host -> the instance's folder on the server
    view: slurm.SlurmJob | None = None
    missing: int = 0
    ended: set[str] = dataclasses.field(default_factory=set)  # hosts whose agent exited, all relayed
    lost: str | None = None
    relay: subprocess.Popen[str] | None = None
    relay_after: float = 0.0
    cancelled: bool = False
    kill_at: float | None = None
    signals: list[int] = dataclasses.field(default_factory=list)  # for the agents, not sent yet
    finished: bool = False  # nothing left to follow
    request: slurm.SlurmRequest | None = None  # what sbatch was asked (None: an old handle's)


class SlurmBackend(Backend):
    """Job instances as Slurm jobs on the cluster the server's Slurm commands reach
    (``$SLURM_CONF``, or the machine's own configuration).

    Args:
        site: What sbatch asks for each instance type (partition, account, QOS, the table).
        prefix: Names this server's Slurm jobs apart from another server's.
        object_store: How agents on the nodes reach the object store (S3: the server's own S3
            API, signed with each job's credentials, or real S3).
        node_dir: The folder on each node where instances run.
        envs_dir: Where the nodes build job environments (``<node_dir>/envs`` by default).
        sandbox: The server's sandbox setting, applied on each node.
        stop_grace_seconds: The agents' grace period after SIGTERM; Slurm's KILL comes later.

    Raises:
        ConfigurationError: Slurm's commands are missing, or ``sinfo`` cannot reach the cluster.
    """

    name = "slurm"

    def __init__(
        self,
        site: slurm.SlurmSite,
        *,
        prefix: str,
        object_store: Mapping[str, Any],
        node_dir: str = "/tmp/shipyard-slurm",
        envs_dir: str | None = None,
        sandbox: str = "auto",
        stop_grace_seconds: float = 30.0,
        python: str = sys.executable,
    ) -> None:
        self.site = site
        self.prefix = prefix
        self.sandbox = sandbox
        self._object_store = dict(object_store)
        self._root = node_dir
        self._envs = envs_dir or f"{node_dir}/envs"
        self._grace = stop_grace_seconds
        self._python = python
        self._lock = threading.Lock()
        self._jobs: dict[str, _Job] = {}
        self._callbacks: list[Callable[[], None]] = []
        self._billed: list[Callable[[ClusterBill], None]] = []
        self._closed = threading.Event()
        self._nodes: list[slurm.SlurmNode] = []
        try:
            self._read_nodes()
        except (OSError, subprocess.SubprocessError) as exc:
            raise ConfigurationError(f"backend is 'slurm' but Slurm cannot be reached here: {exc}") from None
        self._thread = threading.Thread(target=self._run, name="shipyard-slurm", daemon=True)
        self._thread.start()

    # -- Slurm's commands -------------------------------------------------------------------------
    def _command(self, *args: str, stdin: str | None = None) -> str:
        """Run a Slurm command; its output. Raises OSError (not installed) or
        CalledProcessError (it failed: its stderr says why)."""
        done = subprocess.run(
            args, input=stdin, capture_output=True, text=True, timeout=_COMMAND_SECONDS, env=_slurm_env()
        )
        if done.returncode != 0:
            raise subprocess.CalledProcessError(
                done.returncode,
                args,
                done.stdout,
                done.stderr.strip() or f"{args[0]} exited {done.returncode}",
            )
        return done.stdout

    def _read_nodes(self) -> None:
        try:
            out = self._command("sinfo", "-h", "-N", "-o", slurm.SINFO_FORMAT)
        except subprocess.CalledProcessError as exc:
            raise subprocess.SubprocessError(str(exc.stderr)) from None
        self._nodes = slurm.parse_sinfo(out)

    # -- the Backend interface --------------------------------------------------------------------
    @property
    def capacity(self) -> Resources:
        """The usable nodes of the partitions it submits to (every node without a default
        partition)."""
        return slurm.capacity(self._nodes, self.site.partitions)[0]

    @property
    def largest_node(self) -> Resources:
        return slurm.capacity(self._nodes, self.site.partitions)[1]

    @property
    def unsupported(self) -> Mapping[Feature, str]:
        if self.capacity.gpus == 0:
            return {Feature.GPU: "the Slurm cluster has no usable node with a GPU (sinfo shows no gres/gpu)"}
        return {}

    def unrunnable(self, instance_type: str, granted: Resources) -> str | None:
        """Why no usable node ``sinfo`` shows could take one instance of ``instance_type`` as the
        site asks for it (its table row's partition, CPUs, memory, GPUs); None: one could."""
        request = self.site.request(instance_type, granted, 1, None)
        why = slurm.unrunnable(request, self._nodes, self.site.partition)
        return None if why is None else f"the Slurm cluster cannot run it: {why}"

    def nodes(self) -> list[slurm.SlurmNode]:
        """The cluster's nodes, as ``sinfo`` said last."""
        return list(self._nodes)

    def launch(self, launches: Sequence[InstanceLaunch]) -> list[dict[str, Any]]:
        """Submit the job's instances as one Slurm job.

        Raises:
            ValidationError: sbatch refused it (an unknown partition, account or QOS...), saying why.
        """
        first = launches[0]
        kind = first.agent_config.kind
        attempt = first.instance_dir.parent.name  # attempt-N
        job = first.instance_dir.parent.parent.name
        key = f"{self.prefix}/{kind}/{job}/{attempt}"
        name = f"shipyard-{self.prefix}-{kind}-{job}-{attempt.removeprefix('attempt-')}"
        configs = []
        for launch in launches:
            # The server's copy; each node makes it its own. No shared filesystem: the agent
            # reaches the object store over S3, signed with the job's own credentials.
            access = StoreAccess.from_json(self._object_store).signed_as(launch.agent_config.api)
            config = write_agent_config(launch, object_store=access)
            configs.append(config.to_json())
        request = self.site.request(
            first.instance_type,
            first.resources,
            len(launches),
            _max_runtime(first.agent_config.request),
        )
        payload = base64.b64encode(
            json.dumps({"root": self._root, "envs": self._envs, "key": key, "instances": configs}).encode()
        ).decode()
        env = {**agent_env(), **{k: v for k, v in os.environ.items() if k.startswith("SLURM_CONF")}}
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))
        script = (
            "#!/bin/sh\n"
            # What srun and the tasks say before their agents start (node-local, for the admin)
            f"mkdir -p {shlex.quote(self._root)} && exec >>{shlex.quote(self._root)}/slurm-$SLURM_JOB_ID.out 2>&1\n"
            f"{exports}"
            f"export {LAUNCH_VARIABLE}={payload}\n"
            # One instance runs in the batch step itself (a step of its own would take Slurm
            # half a second more to start); several as one task per node of a step.
            + (
                "exec "
                if len(launches) == 1
                else f"exec srun --job-name={_INSTANCES_STEP} --export=ALL --ntasks={len(launches)} --ntasks-per-node=1 --kill-on-bad-exit=0 "
            )
            + f"{shlex.quote(self._python)} -m shipyard.compute.slurm._task\n"
        )
        try:
            out = self._command(
                "sbatch",
                "--parsable",
                f"--job-name={name}",
                "--export=ALL",  # of sbatch's environment: _slurm_env's alone
                "--no-requeue",
                "--output=/dev/null",
                "--chdir=/tmp",
                *request.sbatch_args(),
                stdin=script,
            )
        except subprocess.CalledProcessError as exc:
            raise ValidationError(
                f"Slurm refused the job ({' '.join(request.sbatch_args())}): {exc.stderr}. The "
                "site's slurm_partition, slurm_account, slurm_qos and [slurm_types] settings say "
                "what is asked for"
            ) from None
        job_id = out.strip().split(";")[0]
        log.info("Slurm: %s submitted as Slurm job %s (%s)", key, job_id, " ".join(request.sbatch_args()))
        dirs = {launch.agent_config.host: launch.instance_dir for launch in launches}
        with self._lock:
            self._jobs[job_id] = _Job(job_id, name, key, dirs, request=request)
        return [
            {
                "slurm_job": job_id,
                "name": name,
                "key": key,
                "host": host,
                "dirs": {h: str(d) for h, d in dirs.items()},
                "request": dataclasses.asdict(request),
            }
            for host in dirs
        ]

    def _job(self, handle: Mapping[str, Any]) -> _Job:
        job_id = str(handle["slurm_job"])
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:  # launched by an earlier server process: found again by id and name
                dirs = {h: Path(d) for h, d in dict(handle["dirs"]).items()}
                asked = handle.get("request")
                request = slurm.SlurmRequest(**asked) if isinstance(asked, dict) else None
                job = self._jobs[job_id] = _Job(
                    job_id, str(handle["name"]), str(handle["key"]), dirs, request=request
                )
        return job

    def is_alive(self, handle: Mapping[str, Any]) -> bool:
        job = self._job(handle)
        return handle["host"] not in job.ended and job.lost is None

    def placed(self, handle: Mapping[str, Any]) -> bool:
        view = self._job(handle).view
        return view is None or not view.pending

    def waiting_reason(self, handle: Mapping[str, Any]) -> str | None:
        view = self._job(handle).view
        return None if view is None else view.waiting_message()

    def lost(self, handle: Mapping[str, Any]) -> str | None:
        return self._job(handle).lost

    def preempted(self, handle: Mapping[str, Any]) -> bool:
        job = self._job(handle)
        return job.lost is not None and job.view is not None and job.view.state == "PREEMPTED"

    def signal(self, handle: Mapping[str, Any], signum: int) -> None:
        """Send ``signum`` to the instances' agents, through the relay (not ``scancel --signal``,
        which would reach every process of the step: the user's own would die of it before its
        agent recorded the stop). A SIGTERM is followed by Slurm's cancel (TERM to every
        process, then KILL) when the job has not ended a while after the grace period."""
        job = self._job(handle)
        if handle["host"] != "algo-1" or job.lost is not None:
            return  # the relay reaches every instance: signalled once
        with self._lock:
            job.signals.append(signum)
            self._send_signals(job)
        if signum == signal.SIGTERM and job.kill_at is None:
            job.kill_at = time.monotonic() + self._grace + _KILL_AFTER

    def _send_signals(self, job: _Job) -> None:
        """Hand the relay the signals that wait for it (with the lock held)."""
        relay = job.relay
        if relay is None or relay.stdin is None or relay.poll() is not None:
            return  # the next relay sends them
        try:
            for signum in job.signals:
                relay.stdin.write(json.dumps({"signal": int(signum)}) + "\n")
            relay.stdin.flush()
        except OSError:
            return
        job.signals.clear()

    def kill(self, handle: Mapping[str, Any], instance_dir: Path) -> None:
        job = self._job(handle)
        if not job.cancelled:
            job.cancelled = True
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._command("scancel", job.job_id)
        if handle["host"] not in job.ended and job.lost is None:
            job.lost = "killed"

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def on_billed(self, callback: Callable[[ClusterBill], None]) -> None:
        self._billed.append(callback)

    def _changed(self) -> None:
        for callback in self._callbacks:
            callback()

    def close(self) -> None:
        """Stop following; Slurm jobs run on (the next server finds them by id)."""
        self._closed.set()
        self._thread.join(timeout=5)
        with self._lock:
            relays = [j.relay for j in self._jobs.values() if j.relay is not None]
        for relay in relays:
            with contextlib.suppress(ProcessLookupError):
                relay.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                relay.wait(timeout=5)

    # -- following --------------------------------------------------------------------------------
    def _run(self) -> None:
        nodes_at = time.monotonic()
        while not self._closed.is_set():
            try:
                if time.monotonic() - nodes_at > _NODES_EVERY:
                    nodes_at = time.monotonic()
                    with contextlib.suppress(subprocess.SubprocessError, OSError):
                        self._read_nodes()
                if self._pass():
                    self._changed()
            except Exception:  # the thread must outlive anything one pass runs into
                log.exception("Slurm backend: pass failed")
                self._closed.wait(1)
            self._closed.wait(_POLL)

    def _pass(self) -> bool:
        """Ask squeue about every job followed, and act on what changed; whether anything did."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if not j.finished]
        if not jobs:
            return False
        try:
            out = self._command(
                "squeue", "-h", "-t", "all", "-j", ",".join(j.job_id for j in jobs), "-o", slurm.SQUEUE_FORMAT
            )
        except subprocess.CalledProcessError as exc:
            if "Invalid job id" not in str(exc.stderr):
                raise
            out = ""  # squeue knows none of them
        views = slurm.parse_squeue(out)
        changed = False
        for job in jobs:
            view = views.get(job.job_id)
            if view is None:
                job.missing += 1
                if job.missing < _MISSING_PASSES:
                    continue
                view = self._from_sacct(job)
            else:
                job.missing = 0
            if view is not None and view.name != job.name:
                job.lost = f"Slurm job {job.job_id} is no longer this job (it is {view.name!r})"
                view = None
            if view is None and job.lost is None:
                job.lost = f"Slurm no longer knows job {job.job_id} (the cluster's state was reset?)"
            if view != job.view:
                job.view = view
                changed = True
            if job.lost is not None:
                changed = self._finish(job) or changed
                continue
            assert view is not None
            if view.state == "RUNNING" and job.relay is None and time.monotonic() >= job.relay_after:
                self._start_relay(job)
            if job.kill_at is not None and time.monotonic() >= job.kill_at and not view.ended:
                job.kill_at = None
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    self._command("scancel", job.job_id)
            if view.ended and job.relay is None:
                if set(job.dirs) - job.ended:
                    job.lost = view.lost_reason()
                changed = self._finish(job) or changed
        return changed

    def _from_sacct(self, job: _Job) -> slurm.SlurmJob | None:
        """A job squeue no longer shows, as sacct (accounting, or the job completion log) does."""
        fields = "JobID,JobName,State,Reason,NodeList"
        for extra in ((), ("--completion",)):
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                out = self._command("sacct", *extra, "-n", "-P", "-X", "-j", job.job_id, "-o", fields)
                found = slurm.parse_squeue(out).get(job.job_id)
                if found is not None:
                    return found
        return None

    def _finish(self, job: _Job) -> bool:
        if job.finished:
            return False
        job.finished = True
        if job.view is not None and job.view.ended and self._billed:
            threading.Thread(target=self._bill, args=(job,), name="shipyard-slurm-sacct", daemon=True).start()
        return True

    def _bill(self, job: _Job) -> None:
        """What Slurm billed a job that ended (sacct's Start, Elapsed and AllocTRES: from
        accounting, else the job completion log), for the ledger. Accounting may lag the job's
        end: asked again a few times over half a minute."""
        request = job.request or slurm.SlurmRequest(nodes=len(job.dirs), cpus_per_task=1, memory_mib=0)
        usage = None
        for pause in _SACCT_PAUSES:
            if self._closed.wait(pause):
                return
            usage = self._usage(job.job_id, request)
            if usage is not None:
                break
        if usage is None:
            log.warning(
                "Slurm: sacct has no usage of Slurm job %s; its ledger keeps Shipyard's time", job.job_id
            )
            return
        _, kind, name, attempt = job.key.rsplit("/", 3)
        started = dt.datetime.fromisoformat(usage.start)
        started = started if started.tzinfo else started.astimezone()  # sacct: the caller's local time
        bill = ClusterBill(
            kind,
            name,
            int(attempt.removeprefix("attempt-")),
            started,
            started + dt.timedelta(seconds=usage.elapsed_seconds),
            usage.per_node,
            usage.source,
        )
        log.info(
            "Slurm: job %s billed %d s x %d node(s) of %s (%s)",
            job.job_id,
            usage.elapsed_seconds,
            usage.nodes,
            usage.per_node,
            usage.source,
        )
        for callback in self._billed:
            try:
                callback(bill)
            except Exception:
                log.exception("Slurm: recording the bill of Slurm job %s failed", job.job_id)

    def _usage(self, job_id: str, request: slurm.SlurmRequest) -> slurm.SlurmUsage | None:
        for extra in ((), ("--completion",)):
            with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError, ValidationError):
                out = self._command(
                    "sacct", *extra, "-n", "-P", "-X", "-j", job_id, "-o", slurm.SACCT_USAGE_FORMAT
                )
                usage = slurm.parse_usage(out, job_id, request)
                if usage is not None:
                    return usage
        return None

    def _start_relay(self, job: _Job) -> None:
        offsets = {
            host: {name: (folder / name).stat().st_size for name in STREAMS if (folder / name).exists()}
            for host, folder in job.dirs.items()
        }
        first = job.dirs["algo-1"]
        first.mkdir(parents=True, exist_ok=True)
        with (first / "slurm-relay.log").open("ab") as errors:
            job.relay = subprocess.Popen(
                [
                    "srun",
                    f"--jobid={job.job_id}",
                    "--overlap",
                    f"--nodes={len(job.dirs)}",
                    f"--ntasks={len(job.dirs)}",
                    "--ntasks-per-node=1",
                    "--mem=0",
                    "--cpus-per-task=1",
                    "--quiet",
                    "--export=ALL",
                    "--job-name=relay",
                    "--input=all",
                    self._python,
                    "-m",
                    "shipyard.compute.slurm._relay",
                    self._root,
                    job.key,
                    base64.b64encode(json.dumps(offsets).encode()).decode(),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                env=_slurm_env(),
                preexec_fn=_end_with_server,
            )
        threading.Thread(
            target=self._read_relay, args=(job, job.relay), name="shipyard-slurm-relay", daemon=True
        ).start()

    def _read_relay(self, job: _Job, relay: subprocess.Popen[str]) -> None:
        stdout: IO[str] | None = relay.stdout
        assert stdout is not None
        for line in stdout:
            try:
                message = json.loads(line)
                folder = job.dirs[message["host"]]
            except (ValueError, KeyError):
                continue
            folder.mkdir(parents=True, exist_ok=True)
            if "status" in message:
                tmp = folder / "status.json.tmp"
                tmp.write_bytes(base64.b64decode(message["status"]))
                os.replace(tmp, folder / "status.json")
            elif "stream" in message and message["stream"] in STREAMS:
                with (folder / message["stream"]).open("ab") as f:
                    f.write(base64.b64decode(message["data"]))
            elif message.get("ended"):
                job.ended.add(message["host"])
            elif message.get("gone") and job.lost is None:
                job.lost = "its folder on the Slurm node was removed before the server had read it"
            self._changed()
        relay.wait()
        job.relay_after = time.monotonic() + 1.0  # a relay that failed is started again, after a pause
        job.relay = None
        self._changed()


def _max_runtime(request: Mapping[str, Any]) -> int | None:
    value = (request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
    return int(value) if value else None


_ENV_KEEPS = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ")


def _slurm_env() -> dict[str, str]:
    """The environment Slurm's commands run in, all of which a job or a step they start
    inherits (sbatch's and the relay's ``--export=ALL``): Slurm's own settings (``SLURM_*``,
    ``SBATCH_*``, ``SRUN_*``: the cluster, the site's defaults), the locale and PATH; nothing else
    of the server's (its credentials, its database URL)."""
    return {
        k: v
        for k, v in os.environ.items()
        if k in _ENV_KEEPS or k.startswith(("SLURM_", "SBATCH_", "SRUN_", "LC_"))
    }


def _end_with_server() -> None:
    """In a relay's srun, before it starts: end (SIGTERM, which srun passes to its step) when
    the server does, so that a crashed server's relay does not outlive it."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
