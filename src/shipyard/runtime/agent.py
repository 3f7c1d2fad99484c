"""The instance agent: runs one instance of a training job, detached from the server.

    python -m shipyard.runtime.agent <instance dir>
    python -m shipyard.runtime.agent --fork-server    (instance dirs on stdin; see _serve_forks)

The instance dir holds ``agent.json`` (what to run, written by the backend). The agent lays out
``ml/`` as SageMaker's /opt/ml, fetches inputs and code from the object store, runs the entry point
(in a bubblewrap sandbox with ``ml/`` at /opt/ml when bubblewrap works), and writes as it goes:

* ``log.jsonl`` — one ``{"t": <epoch ms>, "m": <line>}`` per output line, append-only;
* ``status.json`` — the phase (Downloading, Training, Uploading) and, at the end, the outcome,
  exit code, failure reason and artifact URIs; replaced atomically.

It uploads ``model/`` and ``output/data/`` (algo-1 only) and checkpoints, enforces
MaxRuntimeInSeconds, and on SIGTERM stops the user process: SIGTERM, then SIGKILL after the grace
period. The server may die and restart meanwhile; it re-reads these files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path, PurePosixPath
from typing import Any

from shipyard.core.training import TrainingJobSpec, parse_s3_uri, sharded, to_cmd_args
from shipyard.envs import (
    EnvironmentBuildError,
    EnvironmentCache,
    EnvironmentSpec,
    PackageSources,
    environment_root,
)
from shipyard.runtime import contract
from shipyard.runtime._sandbox import sandbox_command
from shipyard.runtime.utilization import Sampler
from shipyard.storage import LocalObjectStore, ObjectStore
from shipyard.storage._archives import ChunkReader, extract_tar, pack_directory

FAILURE_LIMIT = 1024
PIP_CONSTRAINTS = "shipyard-pip-constraints.txt"  # in ml/ (/opt/ml): the environment's pins
_SAFE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "VIRTUAL_ENV", "PYTHONHASHSEED")


class Outcome:
    COMPLETED = "Completed"
    FAILED = "Failed"
    STOPPED = "Stopped"
    MAX_RUNTIME = "MaxRuntimeExceeded"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class LogWriter:
    """Appends timestamped lines to log.jsonl; thread-safe."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        record = json.dumps({"t": int(time.time() * 1000), "m": text.rstrip("\n")}, ensure_ascii=False)
        with self._lock:
            self._file.write(record + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


class StatusFile:
    def __init__(self, path: Path) -> None:
        self._path = path
        self.data: dict[str, Any] = {"phases": [], "outcome": None, "agent_pid": os.getpid()}

    def update(self, **changes: Any) -> None:
        self.data.update(changes)
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data))
        os.replace(tmp, self._path)

    def phase(self, name: str) -> None:
        self.data["phases"].append({"phase": name, "time": _now().isoformat()})
        self.update(phase=name)


def relative_key(key: str, prefix: str) -> str:
    """Where an object under an S3Prefix lands in its input folder, as SageMaker places it: the
    prefix is a folder when the key goes on below it (``data/train`` + ``data/train/a.csv`` →
    ``a.csv``), an object named exactly is its file name (``data/train.csv`` → ``train.csv``), and
    otherwise the key is kept from the prefix's folder on (``data/tr`` + ``data/train.csv`` →
    ``train.csv``)."""
    if key == prefix:
        return key.rsplit("/", 1)[-1]
    rest = key[len(prefix) :]
    if prefix.endswith("/") or rest.startswith("/"):
        return rest.lstrip("/")
    return key[prefix.rfind("/") + 1 :]


class Agent:
    def __init__(self, instance_dir: Path) -> None:
        self.dir = instance_dir
        self.config = json.loads((instance_dir / "agent.json").read_text())
        if self.config.get("die_with_parent"):  # started by a Ray actor: end with it
            _die_with_parent()
        self.spec = self._parse_spec(self.config["request"])
        self.host: str = self.config["host"]
        self.host_index: int = self.config["host_index"]
        self.ml = instance_dir / "ml"
        self.log = LogWriter(instance_dir / "log.jsonl")
        self.status = StatusFile(instance_dir / "status.json")
        self.store = open_store(self.config["object_store"])
        self.sandboxed = self.config.get("sandbox") == "bwrap"
        self.python: str = self.config.get("python", sys.executable)
        self.environment: tuple[EnvironmentCache, str | None] | None = None
        self.command_display: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None
        self._sampling = threading.Event()  # set when the work is over: utilization sampling ends
        self.stop_reason: str | None = None
        self._stop_lock = threading.Lock()
        self._process_stopped = False

    @staticmethod
    def _parse_spec(request: dict[str, Any]) -> Any:
        return TrainingJobSpec.from_request(request)

    @property
    def _checkpoints(self) -> Path:
        """CheckpointConfig.LocalPath (under /opt/ml, checked at creation) on this instance."""
        return self.ml / PurePosixPath(self.spec.checkpoint_local_path).relative_to("/opt/ml")

    def _syncs(self) -> list[FolderSync]:
        """Folders mirrored to the object store while the user's process runs."""
        if not self.spec.checkpoint_s3_uri:
            return []
        interval = float(self.config.get("checkpoint_sync_seconds", 1.0))
        return [
            FolderSync(
                self,
                self._checkpoints,
                self.spec.checkpoint_s3_uri,
                interval,
                "checkpoint",
                skip_present=True,
            )
        ]

    # -- the life of an instance ---------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop(Outcome.STOPPED))
        started = time.monotonic()
        self.status.update(started=_now().isoformat())
        for note in self.config.get("notes", []):
            self.log.line(f"Shipyard: {note}")
        deadline = threading.Timer(
            self.spec.max_runtime_seconds, self.request_stop, args=(Outcome.MAX_RUNTIME,)
        )
        deadline.daemon = True
        deadline.start()
        outcome, exit_code, failure = Outcome.FAILED, None, None
        syncs: list[FolderSync] = []
        try:
            self.status.phase("Downloading")
            self.prepare()
            syncs = self._syncs()
            for sync in syncs:
                sync.start()
            threading.Thread(target=self._sample_utilization, name="utilization", daemon=True).start()
            if self.stop_reason is None:
                self.status.phase("Training")
                self.status.update(training_start=_now().isoformat())
                exit_code = self.train()
            outcome, failure = self._judge(exit_code)
        except Exception as exc:  # the agent's own failure: report it as the job's
            failure = (
                f"ClientError: {exc}" if isinstance(exc, _UserInputError) else f"InternalServerError: {exc}"
            )
            self.log.line(f"Shipyard: {failure}")
            sys.stderr.write(traceback.format_exc())
            outcome = self.stop_reason or Outcome.FAILED
            if outcome != Outcome.FAILED:
                failure = None
        finally:
            deadline.cancel()
            self._sampling.set()
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
            artifacts = self.upload(outcome)
        except Exception as exc:
            sys.stderr.write(traceback.format_exc())
            self.log.line(f"Shipyard: uploading outputs failed: {exc}")
            if outcome == Outcome.COMPLETED:
                outcome, failure = Outcome.FAILED, f"InternalServerError: uploading outputs failed: {exc}"
        self.status.update(
            outcome=outcome,
            exit_code=exit_code,
            failure_reason=failure,
            training_end=_now().isoformat(),
            elapsed=time.monotonic() - started,
            **artifacts,
        )
        self.log.close()
        return 0

    def _judge(self, exit_code: int | None) -> tuple[str, str | None]:
        if self.stop_reason == Outcome.MAX_RUNTIME:
            return Outcome.MAX_RUNTIME, (
                f"MaxRuntimeExceeded: Training job runtime exceeded MaxRuntimeInSeconds provided "
                f"({self.spec.max_runtime_seconds} s)"
            )
        if self.stop_reason == Outcome.STOPPED:
            return Outcome.STOPPED, None
        if exit_code == 0:
            return Outcome.COMPLETED, None
        failure_file = self.ml / "output" / "failure"
        if failure_file.is_file() and failure_file.stat().st_size:
            return Outcome.FAILED, failure_file.read_text(errors="replace")[:FAILURE_LIMIT]
        tail = "\n".join(self._last_lines(5))
        return Outcome.FAILED, (
            f'AlgorithmError: ExecuteUserScriptError:\nExitCode {exit_code}\nErrorMessage "{tail}"\n'
            f'Command "{" ".join(self.command_display)}", exit code: {exit_code}'
        )[:FAILURE_LIMIT]

    def _terminate(self, group: int) -> None:
        """SIGTERM to the user's processes. In the sandbox, not to bwrap itself: bwrap dies of it,
        and --die-with-parent would then SIGKILL the job before its handler could save anything."""
        if not self.sandboxed:
            _signal_group(group, signal.SIGTERM)
            return
        threading.Thread(target=self._terminate_sandboxed, args=(group,), daemon=True).start()

    def _terminate_sandboxed(self, group: int) -> None:
        # A stop may come while bwrap is still starting the job: wait until there is a process to
        # tell (or none will come); the SIGKILL after the grace period covers the rest.
        deadline = time.monotonic() + float(self.config.get("stop_grace_seconds", 30))
        while time.monotonic() < deadline:
            members = [pid for pid in _group_members(group) if pid != group and not _is_bwrap(pid)]
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
            if members or self.process is None or self.process.poll() is not None:
                return
            time.sleep(0.02)

    def request_stop(self, reason: str) -> None:
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
        grace = float(self.config.get("stop_grace_seconds", 30))
        killer = threading.Timer(grace, _signal_group, args=(process.pid, signal.SIGKILL))
        killer.daemon = True
        killer.start()

    # -- before: the /opt/ml layout, inputs, code, checkpoints -----------------------------------
    def prepare(self) -> None:
        for sub in (
            "input/config",
            "input/data",
            "model",
            "output/data",
            "output/intermediate",
            "code",
        ):
            (self.ml / sub).mkdir(parents=True, exist_ok=True)
        self._checkpoints.mkdir(parents=True, exist_ok=True)
        for name, content in contract.config_files(self.spec, self.host).items():
            (self.ml / "input" / "config" / name).write_text(json.dumps(content))
        (self.dir / "hosts").write_text(
            "127.0.0.1 localhost\n"
            + "".join(
                f"{self.config.get('master_addr', '127.0.0.1')} {h}\n"
                if h == "algo-1"
                else f"127.0.0.1 {h}\n"
                for h in contract.hosts_for(self.spec.instance_count)
            )
        )
        for channel in self.spec.channels:
            count = self._fetch_channel(channel.name, channel.s3_uri, channel.distribution)
            self.log.line(f"Shipyard: channel {channel.name!r}: {count} file(s) from {channel.s3_uri}")
        if self.spec.submit_directory:
            self._fetch_code(self.spec.submit_directory)
        self._resolve_environment()
        if self.spec.checkpoint_s3_uri:
            restored = self._fetch_prefix(self.spec.checkpoint_s3_uri, self._checkpoints, link=False)
            if restored:
                self.log.line(
                    f"Shipyard: restored {restored} checkpoint file(s) from {self.spec.checkpoint_s3_uri}"
                )

    def _resolve_environment(self) -> None:
        """The Python the job runs with: built or found in the environment cache (envs/)."""
        raw = self.config.get("environment")
        if not raw:
            return
        spec = EnvironmentSpec.from_json(raw)
        if spec.note:
            self.log.line(f"Shipyard: {spec.note}")
        requirements = self._requirements()
        cache = EnvironmentCache(
            Path(self.config["envs_dir"]),
            PackageSources.from_json(self.config.get("sources", {})),
            allow_server_python=bool(self.config.get("allow_server_python", True)),
        )
        try:
            env = cache.resolve(spec, requirements, log=self.log.line, job=self.spec.name)
        except EnvironmentBuildError as exc:
            raise _UserInputError(exc.message) from None
        self.python = str(env.python)
        self.environment = (cache, env.key)
        if spec.requirements:
            # pip in the job (a remote function's bootstrap runs `pip install -U 'sagemaker<3'`) keeps
            # what the environment pins instead of upgrading it: the environment is read-only in the
            # sandbox, and shared by other jobs outside it.
            (self.ml / PIP_CONSTRAINTS).write_text("\n".join(spec.requirements) + "\n")
        where = {
            "server": "the server's own Python (it has every package)",
            "site": f"the site's Python {env.python}",
            "cached": f"cached environment {env.key}",
            "built": f"new environment {env.key}",
        }[env.how]
        extra = " with requirements.txt" if requirements.strip() else ""
        self.log.line(f"Shipyard: environment {spec.name}{extra}: {where} ({env.seconds * 1000:.0f} ms)")

    def _requirements(self) -> str:
        """The code's requirements.txt, installed into the job's environment before it starts."""
        path = self.ml / "code" / "requirements.txt"
        return path.read_text() if path.is_file() else ""

    def _list_keys(self, uri: str) -> tuple[str, str, list[str]]:
        bucket, prefix = parse_s3_uri(uri, field="S3Uri")
        keys: list[str] = []
        start = ""
        while True:
            page = self.store.list_objects(bucket, prefix=prefix, start_after=start)
            keys += [o.key for o in page.objects if not o.key.endswith("/")]
            if not page.is_truncated or page.next_start_after is None:
                return bucket, prefix, keys
            start = page.next_start_after

    def _fetch_channel(self, name: str, uri: str, distribution: str) -> int:
        bucket, prefix, keys = self._list_keys(uri)
        if not keys:
            raise _UserInputError(f"No objects found under {uri} for channel {name!r}")
        if distribution == "ShardedByS3Key":
            keys = sharded(keys, self.host_index, self.spec.instance_count)
        target = self.ml / "input" / "data" / name
        target.mkdir(parents=True, exist_ok=True)
        for key in keys:
            self._fetch_object(bucket, key, target / relative_key(key, prefix), link=self.sandboxed)
        return len(keys)

    def _fetch_prefix(self, uri: str, target: Path, *, link: bool) -> int:
        bucket, prefix, keys = self._list_keys(uri)
        base = prefix if prefix.endswith("/") or not prefix else prefix + "/"
        for key in keys:
            if key.startswith(base):
                self._fetch_object(bucket, key, target / key[len(base) :], link=link)
        return len(keys)

    def _fetch_object(self, bucket: str, key: str, path: Path, *, link: bool) -> None:
        """Put an object at ``path``: a hard link to the stored file when it is local (inputs are
        mounted read-only in the sandbox, so the link cannot alter the object), else a copy."""
        path.parent.mkdir(parents=True, exist_ok=True)
        local = self.store.local_path(bucket, key)
        if local is not None:
            if link:
                try:
                    os.link(local, path)
                    return
                except OSError:
                    pass  # another filesystem: copy instead
            shutil.copyfile(local, path)
            return
        _, _, chunks = self.store.read_object(bucket, key)
        with path.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)

    def _fetch_code(self, uri: str) -> None:
        bucket, key = parse_s3_uri(uri, field="sagemaker_submit_directory")
        code = self.ml / "code"
        if key.endswith((".tar.gz", ".tgz", ".tar")):
            _, _, chunks = self.store.read_object(bucket, key)
            files = extract_tar(ChunkReader(chunks), code, what=f"source directory {uri}")
        else:
            files = self._fetch_prefix(uri, code, link=False)
        self.log.line(f"Shipyard: source directory {uri}: {files} file(s)")

    # -- during: the user's process ----------------------------------------------------------------
    def train(self) -> int:
        root = contract.ML_ROOT if self.sandboxed else PurePosixPath(self.ml)
        env = self._user_environment(root)
        workdir = self._workdir(root)
        command = self._command(root)
        self.command_display = command
        if self.sandboxed:
            full = sandbox_command(
                command,
                ml_dir=self.ml,
                host=self.host,
                hosts_file=self.dir / "hosts",
                hide=[Path(p) for p in self.config.get("hide", [])],
                keep=[environment_root(Path(self.python))],
                cwd=str(workdir),
            )
            cwd = None
        else:
            self.log.line(
                "Shipyard: bubblewrap is not available here; running unsandboxed, with /opt/ml at "
                f"{self.ml} (scripts that hard-code /opt/ml paths will not find them)"
            )
            full, cwd = command, str(workdir)
        self.log.line(f"Shipyard: invoking {' '.join(command)}")
        in_use = (
            self.environment[0].in_use(self.environment[1]) if self.environment else contextlib.nullcontext()
        )
        with in_use:
            return self._run_user_process(full, cwd, env)

    def _workdir(self, root: PurePosixPath) -> PurePosixPath:
        return root / "code"

    def _user_environment(self, root: PurePosixPath) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _SAFE_ENV}
        env.update(
            contract.training_environment(
                self.spec,
                self.host,
                root=root,
                num_cpus=max(1, int(self.config.get("cpus", 1))),
                num_gpus=int(self.config.get("gpus", 0)),
                region=self.config.get("region", "us-east-1"),
                master_addr=self.config.get("master_addr", "127.0.0.1"),
                master_port=int(self.config.get("master_port", 29500)),
            )
        )
        env["TRAINING_JOB_ARN"] = self.config.get("arn", "")
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONPATH"] = str(root / "code")
        env["PATH"] = (
            f"{Path(self.python).parent}:{env.get('PATH', '/usr/bin:/bin')}"  # `python` is the image's
        )
        return {**self._aws_environment(), **self._pip_environment(root), **env}

    def _pip_environment(self, root: PurePosixPath) -> dict[str, str]:
        return (
            {"PIP_CONSTRAINT": str(root / PIP_CONSTRAINTS)} if (self.ml / PIP_CONSTRAINTS).is_file() else {}
        )

    def _aws_environment(self) -> dict[str, str]:
        """What AWS clients in the job need to reach this Shipyard (its S3 and SageMaker APIs), as
        a SageMaker job reaches AWS with its role; the job's own Environment comes first."""
        api = self.config.get("api") or {}
        if not api.get("endpoint_url"):
            return {}
        return {
            "AWS_ENDPOINT_URL": api["endpoint_url"],
            "AWS_ACCESS_KEY_ID": api.get("access_key_id", "shipyard"),
            "AWS_SECRET_ACCESS_KEY": api.get("secret_access_key", "shipyard"),
            "AWS_DEFAULT_REGION": self.config.get("region", "us-east-1"),
        }

    def _sample_utilization(self) -> None:
        """Every ``utilization_seconds``, what the instance (this agent and all under it: the
        user's process, model servers) uses, as a line of ``utilization.jsonl``."""
        every = float(self.config.get("utilization_seconds") or 0)
        if every <= 0:
            return
        sampler = Sampler(
            os.getpid(),
            memory_bytes=float(self.config.get("memory_bytes") or 2**30),
            disk_bytes=float(self.config.get("disk_bytes") or 30 * 10**9),
            folder=self.ml,
        )
        if self._sampling.wait(every):  # work shorter than one interval is not sampled at all
            return
        with (self.dir / "utilization.jsonl").open("a") as out:
            sampler.sample()
            while not self._sampling.wait(every):
                point = sampler.sample()
                if point is not None:
                    out.write(json.dumps(point) + "\n")
                    out.flush()

    def _run_user_process(self, full: list[str], cwd: str | None, env: dict[str, str]) -> int:
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

    def _command(self, root: PurePosixPath) -> list[str]:
        if self.spec.entrypoint:
            return [*self.spec.entrypoint, *self.spec.arguments]
        program = self.spec.program
        builtin = (self.config.get("environment") or {}).get("builtin")
        if not program and builtin == "xgboost":
            script = Path(__file__).parent / "algorithms" / "xgboost_train.py"
            shutil.copyfile(script, self.ml / "code" / script.name)
            return [self.python, str(root / "code" / script.name)]
        if not program:
            raise _UserInputError(
                f"Image {self.spec.image!r} has no built-in algorithm in Shipyard yet: give a script "
                "(the sagemaker_program hyperparameter, set by the SDK's entry_point) or "
                "AlgorithmSpecification.ContainerEntrypoint"
            )
        args = to_cmd_args(self.spec.user_hyperparameters)
        script = self.ml / "code" / program
        if not script.is_file():
            raise _UserInputError(f"Entry point {program!r} is not in the source directory")
        if program.endswith(".sh"):
            return ["/bin/sh", str(root / "code" / program), *args]
        return [self.python, str(root / "code" / program), *args]

    def _last_lines(self, count: int) -> list[str]:
        try:
            lines = (self.dir / "log.jsonl").read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        messages = [json.loads(line)["m"] for line in lines[-(count + 20) :] if line.strip()]
        return [m for m in messages if not m.startswith("Shipyard: ")][-count:]

    # -- after: outputs --------------------------------------------------------------------------
    def upload(self, outcome: str) -> dict[str, str]:
        artifacts: dict[str, str] = {}
        if self.host_index != 0:
            return artifacts  # only algo-1's model and output data are kept
        model_dir = self.ml / "model"
        if outcome != Outcome.FAILED or any(model_dir.iterdir()):
            artifacts["model_artifacts"] = self._upload_tar(model_dir, self.spec.model_artifacts_uri())
        output_dir = self.ml / "output" / "data"
        if any(output_dir.iterdir()):
            artifacts["output_artifacts"] = self._upload_tar(output_dir, self.spec.output_data_uri())
        return artifacts

    def _upload_tar(self, folder: Path, uri: str) -> str:
        bucket, key = parse_s3_uri(uri, field="S3OutputPath")
        with self.store.open_writer(bucket, key, content_type="application/x-tar") as writer:
            count = pack_directory(folder, writer)  # type: ignore[arg-type]
            writer.commit()
        self.log.line(f"Shipyard: uploaded {count} file(s) from {folder.relative_to(self.ml)} to {uri}")
        return uri


class ProcessingAgent(Agent):
    """A processing job's instance: SageMaker's processing layout and contract.

    Inputs are fetched to their LocalPath under /opt/ml/processing (S3Prefix or ManifestFile,
    FullyReplicated or ShardedByS3Key, Gzip-decompressed when asked); /opt/ml/config holds
    resourceconfig.json and processingjobconfig.json; the ContainerEntrypoint runs with
    ContainerArguments and the job's Environment, the environment's Python first on PATH (so
    ``python3`` is the image's); outputs are uploaded as objects under their S3Uri, at the end or,
    for Continuous ones, as they appear.
    """

    @staticmethod
    def _parse_spec(request: dict[str, Any]) -> Any:
        from shipyard.core.processing import ProcessingJobSpec

        return ProcessingJobSpec.from_request(request)

    def _local(self, path: str) -> Path:
        return self.ml / PurePosixPath(path).relative_to("/opt/ml")

    def prepare(self) -> None:
        for sub in ("input/data", "config", "processing"):
            (self.ml / sub).mkdir(parents=True, exist_ok=True)
        hosts = contract.hosts_for(self.spec.instance_count)
        config = self.ml / "config"
        (config / "resourceconfig.json").write_text(
            json.dumps({"current_host": self.host, "hosts": hosts, "network_interface_name": "eth0"})
        )
        (config / "processingjobconfig.json").write_text(
            json.dumps(self.spec.job_config(self.config.get("arn", "")))
        )
        (self.dir / "hosts").write_text(
            "127.0.0.1 localhost\n"
            + "".join(f"{self.config.get('master_addr', '127.0.0.1')} {h}\n" for h in hosts)
        )
        for item in self.spec.inputs:
            count = self._fetch_input(item)
            self.log.line(
                f"Shipyard: input {item.name!r}: {count} file(s) from {item.s3_uri} at {item.local_path}"
            )
        for output in self.spec.outputs:
            self._local(output.local_path).mkdir(parents=True, exist_ok=True)
        self._resolve_environment()

    def _requirements(self) -> str:
        """A requirements.txt in the code input, as a file or in the sourcedir.tar.gz the SDK's
        FrameworkProcessor sends: the environment is built with it, so that the script's own
        ``pip install -r requirements.txt`` finds everything there already."""
        for item in self.spec.inputs:
            folder = self._local(item.local_path)
            if (folder / "requirements.txt").is_file():
                return (folder / "requirements.txt").read_text()
            archive = folder / "sourcedir.tar.gz"
            if archive.is_file():
                import tarfile

                with tarfile.open(archive) as tar:
                    member = next(
                        (m for m in tar.getmembers() if m.name.lstrip("./") == "requirements.txt"), None
                    )
                    if member is not None and member.isfile():
                        extracted = tar.extractfile(member)
                        return extracted.read().decode() if extracted else ""
        return ""

    def _fetch_input(self, item: Any) -> int:
        target = self._local(item.local_path)
        target.mkdir(parents=True, exist_ok=True)
        if item.data_type == "ManifestFile":
            bucket, key = parse_s3_uri(item.s3_uri, field="S3Uri")
            _, _, chunks = self.store.read_object(bucket, key)
            manifest = json.loads(b"".join(chunks))
            prefix = manifest[0]["prefix"]
            source_bucket, base = parse_s3_uri(prefix, field="ManifestFile prefix")
            keys = [base + entry for entry in manifest[1:]]
        else:
            source_bucket, base, keys = self._list_keys(item.s3_uri)
            if not keys:
                raise _UserInputError(f"No objects found under {item.s3_uri} for input {item.name!r}")
        if item.distribution == "ShardedByS3Key":
            keys = sharded(keys, self.host_index, self.spec.instance_count)
        for key in keys:
            path = target / relative_key(key, base)
            if item.compression == "Gzip":
                import gzip

                path = path.with_name(path.name.removesuffix(".gz"))
                path.parent.mkdir(parents=True, exist_ok=True)
                _, _, chunks = self.store.read_object(source_bucket, key)
                path.write_bytes(gzip.decompress(b"".join(chunks)))
            else:
                self._fetch_object(source_bucket, key, path, link=False)  # processing inputs are writable
        return len(keys)

    def _syncs(self) -> list[FolderSync]:
        interval = float(self.config.get("checkpoint_sync_seconds", 1.0))
        return [
            FolderSync(self, self._local(o.local_path), o.s3_uri, interval, f"output {o.name!r}")
            for o in self.spec.outputs
            if o.upload_mode == "Continuous"
        ]

    def _workdir(self, root: PurePosixPath) -> PurePosixPath:
        return root / "processing"

    def _user_environment(self, root: PurePosixPath) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in _SAFE_ENV}
        env.update(self._aws_environment())
        env.update(self._pip_environment(root))
        env.update(self.spec.environment)
        bin_dir = str(Path(self.python).parent)
        env["PATH"] = f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}"  # `python3` is the image's Python
        env["PYTHONUNBUFFERED"] = "1"
        env["PROCESSING_JOB_ARN"] = self.config.get("arn", "")
        return env

    def _command(self, root: PurePosixPath) -> list[str]:
        command = [*self.spec.entrypoint, *self.spec.arguments]
        if not self.sandboxed:  # the paths a script was given are under the real folder
            command = [c.replace("/opt/ml", str(root), 1) if c.startswith("/opt/ml/") else c for c in command]
        return command

    def upload(self, outcome: str) -> dict[str, str]:
        for output in self.spec.outputs:
            if output.upload_mode == "Continuous":
                continue  # its FolderSync made the last pass
            count = FolderSync(self, self._local(output.local_path), output.s3_uri, 0, "output").sync()
            self.log.line(f"Shipyard: output {output.name!r}: uploaded {count} file(s) to {output.s3_uri}")
        return {}


def make_agent(instance_dir: Path) -> Agent:
    """The agent for the job kind its agent.json names."""
    kind = json.loads((instance_dir / "agent.json").read_text()).get("kind", "training")
    if kind == "transform":
        from shipyard.runtime.transform import TransformAgent

        return TransformAgent(instance_dir)
    return ProcessingAgent(instance_dir) if kind == "processing" else Agent(instance_dir)


class FolderSync:
    """Mirrors a folder to an S3 URI prefix while the job runs: checkpoints (so a retry after a
    lost instance resumes from the last one, as SageMaker does) and Continuous processing outputs.
    A final pass runs at stop; :meth:`sync` alone uploads once (processing outputs at the end)."""

    def __init__(
        self, agent: Agent, folder: Path, uri: str, interval: float, what: str, *, skip_present: bool = False
    ) -> None:
        self._agent = agent
        self._interval = interval
        self._folder = folder
        self._uri = uri
        self.what = what
        self._bucket, prefix = parse_s3_uri(uri, field="S3Uri")
        self._base = prefix.rstrip("/") + "/" if prefix else ""
        self._uploaded: dict[Path, tuple[int, int]] = (  # restored checkpoints are there already
            {
                p: (st.st_size, st.st_mtime_ns)
                for p in self._folder.rglob("*")
                if p.is_file() and (st := p.stat())
            }
            if skip_present
            else {}
        )
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{what}-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
        count = self.sync()
        if count:
            self._agent.log.line(f"Shipyard: saved {count} {self.what} file(s) to {self._uri}")

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            try:
                self.sync()
            except Exception as exc:  # keep running; the final pass reports persistent trouble
                sys.stderr.write(f"{self.what} sync: {exc}\n")

    def sync(self) -> int:
        count = 0
        for path in sorted(self._folder.rglob("*")):
            if not path.is_file():
                continue
            st = path.stat()
            if self._uploaded.get(path) == (st.st_size, st.st_mtime_ns):
                continue
            key = self._base + path.relative_to(self._folder).as_posix()
            with self._agent.store.open_writer(self._bucket, key) as writer, path.open("rb") as f:
                while chunk := f.read(1024 * 1024):
                    writer.write(chunk)
                writer.commit()
            self._uploaded[path] = (st.st_size, st.st_mtime_ns)
            count += 1
        return count


class _UserInputError(Exception):
    """Something about the job's inputs or code, to be reported as a ClientError."""


def _is_bwrap(pid: int) -> bool:
    """bwrap's own processes: the one started, and the sandbox's init, which ignores SIGTERM."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "bwrap"
    except OSError:
        return False


def _group_members(group: int) -> list[int]:
    """The processes of process group ``group`` (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:
            members.append(int(entry.name))
    return members


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this process when the one that started it ends (Linux)."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the parent was gone already
        os._exit(1)


def open_store(config: dict[str, Any]) -> ObjectStore:
    if config["kind"] == "local":
        return LocalObjectStore(Path(config["root"]))
    from shipyard.storage._s3 import S3ObjectStore

    return S3ObjectStore(
        config.get("endpoint_url"),
        config.get("access_key_id"),
        config.get("secret_access_key"),
        config.get("region"),
        config.get("max_attempts"),
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--fork-server"]:
        return _serve_forks()
    if len(args) != 1:
        sys.stderr.write("usage: python -m shipyard.runtime.agent <instance dir> | --fork-server\n")
        return 2
    return make_agent(Path(args[0])).run()


def _serve_forks() -> int:
    """Start agents by forking this process, already started and imported (the local backend's
    fork server): a job then starts in a millisecond of CPU instead of a new interpreter's hundred.

    Reads instance folders on stdin, one per line, and answers on stdout ``launched <pid>`` for
    each, or ``failed <reason>``; ``exited <pid> <code>`` when an agent ends. Each agent runs in a
    session of its own with its output in its ``agent.log``, so it outlives this process. End of
    input (the server went away): exit, leaving the agents running.
    """
    import selectors

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD writes to wake_w
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    pending = b""

    def answer(text: str) -> None:
        os.write(1, text.encode() + b"\n")

    try:
        while True:
            for key, _ in selector.select():
                if key.fd == wake_r:
                    os.read(wake_r, 4096)
                    continue
                data = os.read(0, 65536)
                if not data:
                    return 0
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    try:
                        pid = _fork_agent(Path(line.decode()), close=(wake_r, wake_w, selector.fileno()))
                    except OSError as exc:
                        answer(f"failed {exc}")
                    else:
                        answer(f"launched {pid}")
            while True:  # reap every agent that has ended
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                answer(f"exited {pid} {os.waitstatus_to_exitcode(status)}")
    except BrokenPipeError:  # the server went away
        return 0


def _fork_agent(instance_dir: Path, close: tuple[int, ...]) -> int:
    log = os.open(instance_dir / "agent.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    pid = os.fork()
    if pid:
        os.close(log)
        return pid
    code = 1
    try:  # the child: nothing of the fork server's may leak into the job
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((null, 0), (log, 1), (log, 2)):
            os.dup2(source, target)
        for fd in (null, log, *close):
            os.close(fd)
        code = make_agent(instance_dir).run()
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
