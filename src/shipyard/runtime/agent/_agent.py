"""The life of an instance, the same for every kind of job; what differs is its :class:`Layout`.

An :class:`Agent` reads its :class:`~shipyard.runtime.contract.AgentConfig`, then: Downloading
(the layout lays out /opt/ml and fetches what it needs; the environment is resolved), Training
(the layout's work, usually the user's process in the sandbox), Uploading (the layout's outputs),
and writes the :class:`~shipyard.runtime.contract.AgentStatus` with its outcome. It enforces
MaxRuntimeInSeconds and, on SIGTERM, stops the user process: SIGTERM, then SIGKILL after the grace
period. The server may die and restart meanwhile; it re-reads the folder.
"""

from __future__ import annotations

import abc
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

from shipyard.core.devices import visible_environment
from shipyard.core.outcomes import without_host_paths
from shipyard.envs import (
    EnvironmentBuildError,
    EnvironmentCache,
    EnvironmentSpec,
    PackageSources,
    environment_roots,
)
from shipyard.errors import NotFoundError, ValidationError
from shipyard.runtime import container
from shipyard.runtime._sandbox import gpu_binds, hand_over, run_as_for, sandbox_command
from shipyard.runtime.agent._inputs import Inputs
from shipyard.runtime.agent._io import (
    FAILURE_LIMIT,
    JobInputError,
    LogWriter,
    StatusFile,
    now_iso,
    open_store,
)
from shipyard.runtime.agent._layer import PipLayer, make_layer
from shipyard.runtime.agent._processes import descendants, die_with_parent, is_bwrap, signal_group
from shipyard.runtime.agent._sync import FolderSync
from shipyard.runtime.contract import InstanceFolder, Outcome
from shipyard.runtime.utilization import Sampler, nvml_reader
from shipyard.storage._nofollow import read_inside

PIP_CONSTRAINTS = "shipyard-pip-constraints.txt"  # in ml/ (/opt/ml): the environment's pins


class Layout(abc.ABC):
    """What one kind of job does on its instance: lay it out, run its work, upload its outputs.

    A layout reads the agent's folder, configuration, log and store through the agent, and runs
    processes through :meth:`Agent.run_in_sandbox`.
    """

    kind: ClassVar[str]
    pip_layer: ClassVar[bool] = True  # the user's process gets its own pip layer (_layer.py)

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self.spec: Any = self.parse_spec(agent.config.request)

    @staticmethod
    @abc.abstractmethod
    def parse_spec(request: Any) -> Any:
        """The job's spec from its Create request."""

    @abc.abstractmethod
    def prepare(self) -> None:
        """Lay out /opt/ml and fetch what the work needs (then the environment is resolved)."""

    def requirements(self) -> str:
        """A requirements.txt to build the environment with ("" for none)."""
        return ""

    def syncs(self) -> list[FolderSync]:
        """Folders mirrored to the object store while the work runs."""
        return []

    @abc.abstractmethod
    def work(self) -> int:
        """Do the job's work; its exit code (0: completed)."""

    @abc.abstractmethod
    def upload(self, outcome: Outcome) -> dict[str, str]:
        """Upload the outputs; the artifacts' URIs by status field (``model_artifacts``, ...)."""

    def failure(self, exit_code: int | None) -> str | None:
        """Why the work failed, if the job said so (SageMaker's /opt/ml/output/failure), else None:
        the exit code and the log's tail say it."""
        text = read_inside(self.ml, "output/failure", 4 * FAILURE_LIMIT)  # never through a link
        return text.decode(errors="replace") if text else None

    # -- what every layout uses --------------------------------------------------------------------
    @property
    def ml(self) -> Path:
        return self.agent.folder.ml

    @property
    def log(self) -> LogWriter:
        return self.agent.log

    @property
    def inputs(self) -> Inputs:
        return self.agent.inputs

    def sync(
        self, folder: Path, uri: str, what: str, *, interval: float | None = None, **kw: Any
    ) -> FolderSync:
        every = self.agent.config.checkpoint_sync_seconds if interval is None else interval
        return FolderSync(self.agent.store, self.log.line, folder, uri, every, what, **kw)

    def under_ml(self, path: str) -> Path:
        """A path the job names under /opt/ml, on this instance."""
        return self.ml / PurePosixPath(path).relative_to("/opt/ml")


class Agent:
    """Runs one instance of a job from its folder (see the module docstring)."""

    def __init__(self, folder: Path, layouts: dict[str, type[Layout]]) -> None:
        self.folder = InstanceFolder(folder)
        self.config = self.folder.read_config()
        if self.config.die_with_parent:  # started by a Ray actor: end with it
            die_with_parent()
        self.log = LogWriter(self.folder.log)
        self.status = StatusFile(self.folder)
        self.store = open_store(self.config.object_store)
        self.sandboxed = self.config.sandbox == "bwrap"
        # As root, the user's processes run as this instance's own uid (runtime/_sandbox.py).
        self.run_as = run_as_for(os.getpid()) if self.sandboxed else None
        self.python: str = self.config.python or sys.executable
        self.environment: tuple[EnvironmentCache, str | None] | None = None
        self.layer: PipLayer | None = None
        self.command_display: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None
        self.stop_reason: Outcome | None = None
        self._sampling = threading.Event()  # set when the work is over: utilization sampling ends
        self._stop_lock = threading.Lock()
        self._process_stopped = False
        self.layout = layouts[self.config.kind](self)
        self.spec = self.layout.spec
        self.inputs = Inputs(self.store, self.log.line, self.config.host_index, self.spec.instance_count)

    @property
    def root(self) -> PurePosixPath:
        """Where /opt/ml appears to the job: /opt/ml in the sandbox, the folder itself outside."""
        return container.ML_ROOT if self.sandboxed else PurePosixPath(self.folder.ml)

    # -- the life of an instance ---------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop(Outcome.STOPPED))
        started = time.monotonic()
        self.status.phase("Downloading", started=now_iso())
        for note in self.config.notes:
            self.log.line(f"Shipyard: {note}")
        deadline = threading.Timer(
            self.spec.max_runtime_seconds, self.request_stop, args=(Outcome.MAX_RUNTIME,)
        )
        deadline.daemon = True
        deadline.start()
        outcome, exit_code, failure = Outcome.FAILED, None, None
        syncs: list[FolderSync] = []
        sampler: threading.Thread | None = None
        try:
            self.layout.prepare()
            self._resolve_environment(self.layout.requirements())
            if self.layout.pip_layer:
                self._make_layer()
            syncs = self.layout.syncs()
            for sync in syncs:
                sync.start()
            sampler = threading.Thread(target=self._sample_utilization, name="utilization", daemon=True)
            sampler.start()
            if self.stop_reason is None:
                self.status.phase("Training", training_start=now_iso())
                exit_code = self.layout.work()
            outcome, failure = self._judge(exit_code)
        except Exception as exc:  # the agent's own failure: report it as the job's
            # The job's own references (code, inputs, a model) missing or unusable: its ClientError.
            mistake = isinstance(exc, JobInputError | ValidationError | NotFoundError)
            failure = f"ClientError: {exc}" if mistake else f"InternalServerError: {exc}"
            self.log.line(f"Shipyard: {failure}")
            sys.stderr.write(traceback.format_exc())
            outcome = self.stop_reason or Outcome.FAILED
            if outcome != Outcome.FAILED:
                failure = None
        finally:
            deadline.cancel()
            self._sampling.set()
            if sampler is not None:
                sampler.join(timeout=5)  # its last sample written before the job is reported
        for sync in syncs:
            try:
                sync.stop()
            except Exception as exc:  # the outcome must still be reported
                sys.stderr.write(traceback.format_exc())
                self.log.line(f"Shipyard: saving {sync.what}s failed: {exc}")
                if outcome == Outcome.COMPLETED:
                    outcome, failure = (
                        Outcome.FAILED,
                        f"InternalServerError: saving {sync.what}s failed: {exc}",
                    )
        artifacts: dict[str, str] = {}
        try:
            self.status.phase("Uploading")
            artifacts = self.layout.upload(outcome)
        except Exception as exc:
            sys.stderr.write(traceback.format_exc())
            self.log.line(f"Shipyard: uploading outputs failed: {exc}")
            if outcome == Outcome.COMPLETED:
                outcome, failure = Outcome.FAILED, f"InternalServerError: uploading outputs failed: {exc}"
        self.status.update(
            outcome=outcome,
            exit_code=exit_code,
            failure_reason=self._without_host_paths(failure),
            training_end=now_iso(),
            elapsed=time.monotonic() - started,
            **artifacts,
        )
        self.log.close()
        return 0

    def _judge(self, exit_code: int | None) -> tuple[Outcome, str | None]:
        if self.stop_reason == Outcome.MAX_RUNTIME:
            return Outcome.MAX_RUNTIME, (
                f"MaxRuntimeExceeded: Training job runtime exceeded MaxRuntimeInSeconds provided "
                f"({self.spec.max_runtime_seconds} s)"
            )
        if self.stop_reason == Outcome.STOPPED:
            return Outcome.STOPPED, None
        if exit_code == 0:
            return Outcome.COMPLETED, None
        known = self.layout.failure(exit_code)
        if known:
            return Outcome.FAILED, known[:FAILURE_LIMIT]
        tail = "\n".join(self._last_lines(5))
        return Outcome.FAILED, (
            f'AlgorithmError: ExecuteUserScriptError:\nExitCode {exit_code}\nErrorMessage "{tail}"\n'
            f'Command "{" ".join(self.command_display)}", exit code: {exit_code}'
        )[:FAILURE_LIMIT]

    def _without_host_paths(self, reason: str | None) -> str | None:
        """A failure reason with the paths a job sees (/opt/ml) instead of this host's."""
        if reason is None:
            return None
        folders = {str(self.folder.ml): "/opt/ml", str(Path.home()): "~"}
        folders.update((path, "<data dir>") for path in self.config.hide)
        return without_host_paths(reason, folders)[:FAILURE_LIMIT]

    def _last_lines(self, count: int) -> list[str]:
        try:
            lines = self.folder.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        messages = [json.loads(line)["m"] for line in lines[-(count + 20) :] if line.strip()]
        return [m for m in messages if not m.startswith("Shipyard: ")][-count:]

    # -- stopping ----------------------------------------------------------------------------------
    def request_stop(self, reason: Outcome) -> None:
        """Stop the user process: SIGTERM now, SIGKILL after the grace period."""
        with self._stop_lock:
            if self.stop_reason is not None:
                return
            self.stop_reason = reason
        self.log.line(
            "Shipyard: stopping the training job"
            if reason == Outcome.STOPPED
            else f"Shipyard: MaxRuntimeInSeconds ({self.spec.max_runtime_seconds} s) exceeded, stopping"
        )
        self._stop_process()

    def _stop_process(self) -> None:
        """SIGTERM to the user's process, SIGKILL after the grace period: once, from whichever of
        the stop request and the process start comes second."""
        process = self.process
        with self._stop_lock:
            if process is None or process.poll() is not None or self._process_stopped:
                return
            self._process_stopped = True
        self._terminate(process.pid)
        killer = threading.Timer(
            self.config.stop_grace_seconds, signal_group, args=(process.pid, signal.SIGKILL)
        )
        killer.daemon = True
        killer.start()

    def _terminate(self, group: int) -> None:
        """SIGTERM to the user's processes. In the sandbox, not to bwrap itself: bwrap dies of it,
        and --die-with-parent would then SIGKILL the job before its handler could save anything."""
        if not self.sandboxed:
            signal_group(group, signal.SIGTERM)
            return
        threading.Thread(target=self._terminate_sandboxed, args=(group,), daemon=True).start()

    def _terminate_sandboxed(self, group: int) -> None:
        # A stop may come while bwrap is still starting the job: wait until there is a process to
        # tell (or none will come); the SIGKILL after the grace period covers the rest.
        deadline = time.monotonic() + self.config.stop_grace_seconds
        while time.monotonic() < deadline:
            members = [pid for pid in descendants(group) if not is_bwrap(pid)]
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
            if members or self.process is None or self.process.poll() is not None:
                return
            time.sleep(0.02)

    # -- the environment -----------------------------------------------------------------------------
    def _resolve_environment(self, requirements: str) -> None:
        """The Python the job runs with: built or found in the environment cache (envs/)."""
        raw = self.config.environment
        if not raw:
            return
        spec = EnvironmentSpec.from_json(raw)
        if spec.note:
            self.log.line(f"Shipyard: {spec.note}")
        if not self.config.envs_dir:
            raise RuntimeError("agent.json names an environment but no envs_dir to build it in")
        cache = EnvironmentCache(
            Path(self.config.envs_dir),
            PackageSources.from_json(dict(self.config.sources)),
            allow_server_python=self.config.allow_server_python,
        )
        try:
            env = cache.resolve(spec, requirements, log=self.log.line, job=self.spec.name)
        except EnvironmentBuildError as exc:
            raise JobInputError(exc.message) from None
        self.python = str(env.python)
        self.environment = (cache, env.key)
        if spec.requirements:
            # pip in the job (a remote function's bootstrap runs `pip install -U 'sagemaker<3'`) keeps
            # what the environment pins instead of upgrading it: the environment is read-only in the
            # sandbox, and shared by other jobs outside it.
            (self.folder.ml / PIP_CONSTRAINTS).write_text("\n".join(spec.requirements) + "\n")
        where = {
            "server": "the server's own Python (it has every package)",
            "site": f"the site's Python {env.python}",
            "cached": f"cached environment {env.key}",
            "built": f"new environment {env.key}",
        }[env.how]
        extra = " with requirements.txt" if requirements.strip() else ""
        self.log.line(f"Shipyard: environment {spec.name}{extra}: {where} ({env.seconds * 1000:.0f} ms)")

    def _make_layer(self) -> None:
        started = time.monotonic()
        self.layer = make_layer(self.folder.ml, self.root, Path(self.python))
        self.log.line(
            f"Shipyard: pip in the job installs into its own layer ({self.layer.prefix}) over the shared "
            f"environment ({(time.monotonic() - started) * 1000:.0f} ms)"
        )

    @property
    def job_python(self) -> str:
        """The interpreter the job's command runs with, as the job sees it: its layer's."""
        return self.layer.python if self.layer else self.python

    def python_environment(self, path: str) -> dict[str, str]:
        """``PATH`` with the job's ``python`` and ``pip`` first (the layer's, then the shared
        environment's scripts) and ``VIRTUAL_ENV`` naming the layer."""
        entries = [str(Path(self.python).parent), path]
        env: dict[str, str] = {}
        if self.layer is not None:
            entries.insert(0, str(self.layer.bin))
            env["VIRTUAL_ENV"] = str(self.layer.prefix)
        env["PATH"] = ":".join(entries)
        return env

    def environment_in_use(self) -> contextlib.AbstractContextManager[Any]:
        """Holds the job's environment against pruning while it runs."""
        return (
            self.environment[0].in_use(self.environment[1]) if self.environment else contextlib.nullcontext()
        )

    def pip_environment(self) -> dict[str, str]:
        path = self.folder.ml / PIP_CONSTRAINTS
        return {"PIP_CONSTRAINT": str(self.root / PIP_CONSTRAINTS)} if path.is_file() else {}

    def aws_environment(self) -> dict[str, str]:
        """What AWS clients in the job need to reach this Shipyard (its S3 and SageMaker APIs), as
        a SageMaker job reaches AWS with its role's temporary credentials: the job's own session
        credentials, never the server's key. The job's own Environment comes first."""
        api = self.config.api
        if api is None:
            return {}
        env = {
            "AWS_ENDPOINT_URL": api.endpoint_url,
            "AWS_ACCESS_KEY_ID": api.access_key_id,
            "AWS_SECRET_ACCESS_KEY": api.secret_access_key,
            "AWS_DEFAULT_REGION": self.config.region,
        }
        if api.session_token:
            env["AWS_SESSION_TOKEN"] = api.session_token
        return env

    # -- the user's process ----------------------------------------------------------------------
    def sandboxed_command(
        self, command: Sequence[str], *, workdir: PurePosixPath | str, keep: Sequence[Path] = ()
    ) -> tuple[list[str], str | None]:
        """``command`` as it is started: in the sandbox (cwd set inside it), or as it is in ``workdir``."""
        if not self.sandboxed:
            return list(command), str(workdir)
        if self.run_as is not None:
            ml = self.folder.ml
            hand_over(ml, self.run_as)
        full = sandbox_command(
            list(command),
            ml_dir=self.folder.ml,
            host=self.config.host,
            hosts_file=self.folder.hosts,
            hide=[Path(p) for p in self.config.hide],
            keep=[*environment_roots(Path(self.python)), *keep],
            cwd=str(workdir),
            run_as=self.run_as,
            devices=gpu_binds(self.config.gpu_devices, self.config.gpu_control),
        )
        return full, None

    def gpu_environment(self) -> dict[str, str]:
        """Which GPUs the job's process is told it has: those granted, by UUID (none: none), on a
        backend that grants specific devices; else what the backend set (Ray's assignment)."""
        if not self.config.gpu_devices and self.config.gpus:
            return {
                k: v for k, v in os.environ.items() if k in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
            }
        return visible_environment(self.config.gpu_devices)

    def run_user_process(self, full: list[str], cwd: str | None, env: dict[str, str]) -> int:
        """Run the user's process (its own session) with its output into the log; its exit code."""
        if self.run_as is not None:
            env = {**env, "HOME": "/tmp"}  # the job's uid has no home of its own
        self.process = subprocess.Popen(
            full,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.status.update(user_pgid=self.process.pid)
        if self.stop_reason is not None:  # a stop arrived while starting
            self._stop_process()
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.log.line(raw.decode("utf-8", "replace"))
        return self.process.wait()

    def _sample_utilization(self) -> None:
        """Every ``utilization_seconds``, what the instance (this agent and all under it: the
        user's process, model servers) uses, as a line of ``utilization.jsonl``."""
        every = self.config.utilization_seconds
        if every <= 0:
            return
        sampler = Sampler(
            os.getpid(),
            memory_bytes=self.config.memory_bytes or 2**30,
            disk_bytes=self.config.disk_bytes or 30 * 10**9,
            folder=self.folder.ml,
            gpus=nvml_reader([g.uuid for g in self.config.gpu_devices]),
        )
        sampler.sample()  # the baseline: each sample is the use since the one before
        sampled = False
        with self.folder.utilization.open("a") as out:
            while not self._sampling.wait(every):
                point = sampler.sample()
                if point is not None:
                    out.write(json.dumps(point) + "\n")
                    out.flush()
                    sampled = True
            if not sampled:  # work shorter than one interval: one sample of all of it, at its peak
                point = sampler.sample(peak=True)
                if point is not None:
                    out.write(json.dumps(point) + "\n")
