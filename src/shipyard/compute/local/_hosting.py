"""Model servers as local processes: one per endpoint instance, in the model's environment.

Each runs ``runtime/model_server.py`` with the environment's Python, in the bubblewrap sandbox
when it works here (the instance's ``ml/`` at /opt/ml, so the model is at /opt/ml/model as in
SageMaker's containers), on a loopback port of its own. Its output is read by a thread and kept as
``log.jsonl`` in the instance folder, the format the Logs API reads. Model servers end with the
Shipyard server (bubblewrap's --die-with-parent, or the end of their standard input): the server
starts them again when it starts.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from shipyard.compute._serving import ModelRequest, ModelServer, ModelServerError, ModelServers
from shipyard.compute.local._gpus import MODEL_SERVER_HOLDER, GpuLedger
from shipyard.config import DEFAULT_REGION
from shipyard.core.devices import Gpu, GpusBusy, visible_environment
from shipyard.core.training import parse_s3_uri
from shipyard.envs import EnvironmentCache, environment_roots, framework_of, model_builder_sdk_requirement
from shipyard.errors import NotFoundError
from shipyard.runtime._sandbox import (
    MODEL_SERVERS,
    gpu_binds,
    hand_over,
    run_as_for,
    sandbox_available,
    sandbox_command,
)
from shipyard.runtime.contract import TOKEN_ENV
from shipyard.storage import ObjectStore
from shipyard.storage._archives import ChunkReader, extract_tar

log = logging.getLogger(__name__)
_SERVER = Path(__file__).resolve().parents[2] / "runtime" / "model_server.py"
_SAFE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
# A requirements.txt line that pins the sagemaker SDK itself (its extras allowed): the user's pin wins.
_PINS_SAGEMAKER = re.compile(r"^\s*sagemaker\s*(?:\[[^\]]*\])?\s*(?:==|===)", re.MULTILINE | re.IGNORECASE)


def prepare_model(
    request: ModelRequest,
    folder: Path,
    objects: ObjectStore,
    environments: EnvironmentCache,
    log: Callable[[str], None],
) -> ServerLaunch:
    """Lay out a model server's folder (``ml/model``, ``ml/code``) from the object store and find
    or build its environment; what starting it takes."""
    ml = folder / "ml"
    (ml / "model").mkdir(parents=True, exist_ok=True)
    container = request.container
    if container.model_data_url:
        bucket, key = parse_s3_uri(container.model_data_url, field="ModelDataUrl")
        try:
            _, _, chunks = objects.read_object(bucket, key)
        except NotFoundError:
            raise ModelServerError(f"the model data {container.model_data_url} does not exist") from None
        extract_tar(ChunkReader(chunks), ml / "model", what=f"model data {container.model_data_url}")
    code_dir: str | None = None
    submit = container.submit_directory
    if submit and submit.startswith("s3://"):
        bucket, key = parse_s3_uri(submit, field="SAGEMAKER_SUBMIT_DIRECTORY")
        _, _, chunks = objects.read_object(bucket, key)
        extract_tar(ChunkReader(chunks), ml / "code", what=f"source directory {submit}")
        code_dir = "/opt/ml/code"
    elif (ml / "model" / "code").is_dir():
        code_dir = "/opt/ml/model/code"
    host_code = ml / code_dir.removeprefix("/opt/ml/") if code_dir else None
    requirements = host_code / "requirements.txt" if host_code else None
    requirements_txt = requirements.read_text() if requirements and requirements.is_file() else ""
    sdk = model_builder_sdk_requirement(host_code) if host_code else None
    libraries: dict[str, str] = {}
    if sdk:
        libraries = _shared_libs_on_library_path(ml / "model")
        # Added beside a line that only bounds it: v2's ModelBuilder writes sagemaker[huggingface]>=2.199,
        # which alone now resolves to v3, whose sagemaker.base_deserializers is gone.
        if not _PINS_SAGEMAKER.search(requirements_txt):
            log(f"The model was packaged by the sagemaker SDK's ModelBuilder; its server gets {sdk}")
            requirements_txt = f"{requirements_txt.rstrip()}\n{sdk}\n".lstrip()
    environment = environments.resolve(
        request.environment, requirements_txt, log=log, job=f"endpoint {request.endpoint}"
    )
    python = Path(environment.python)
    given = container.environment
    region = given.get("AWS_REGION") or given.get("SAGEMAKER_REGION") or DEFAULT_REGION
    return ServerLaunch(
        instance_dir=folder,
        python=str(python),
        framework=framework_of(container.image) or "sklearn",
        program=container.program,
        code_dir=code_dir,
        environment={
            # a region, as SageMaker's containers have one (the SDK's serving code makes clients on
            # import): the model's own, or the one the SDK packaged it for, or the default
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            **container.environment,
            **libraries,
            "SAGEMAKER_ENDPOINT_NAME": request.endpoint,
            "SAGEMAKER_VARIANT_NAME": request.variant,
        },
        keep=list(environment_roots(python)),  # the server's own Python too: it may lie under /tmp
    )


def _shared_libs_on_library_path(model: Path) -> dict[str, str]:
    """The SDK's ModelBuilder packs the shared libraries a model needs in ``shared_libs/``, and its
    serving code copies that folder over the container's ``/lib`` before loading the model (always:
    the folder is there, empty, when there are none). Here ``/lib`` is the machine's, read-only in
    the sandbox: the folder is moved aside, so the copy is skipped, and its libraries (if any) are
    found on ``LD_LIBRARY_PATH`` instead (what the loader's search of ``/lib`` gave them)."""
    folder = model / "shared_libs"
    if not folder.is_dir() or folder.is_symlink():
        return {}
    if not any(folder.iterdir()):
        folder.rmdir()
        return {}
    aside = model / ".shared_libs"
    shutil.rmtree(aside, ignore_errors=True)
    folder.rename(aside)
    return {"LD_LIBRARY_PATH": "/opt/ml/model/.shared_libs"}


@dataclasses.dataclass(frozen=True)
class ServerLaunch:
    """What one model server needs. ``ml_dir`` holds ``model/`` (and ``code/`` when the code came
    separately); ``code_dir`` and the paths in ``environment`` are as the server sees them."""

    instance_dir: Path
    python: str
    framework: str
    program: str | None
    code_dir: str | None
    environment: Mapping[str, str]
    keep: Sequence[Path] = ()


class LocalModelServer(ModelServer):
    """A model server process on this machine."""

    def __init__(
        self,
        request: ModelRequest,
        launch: ServerLaunch,
        host: str,
        port: int,
        process: subprocess.Popen[bytes],
        token: str,
    ) -> None:
        super().__init__(request, host, port, token)
        self.launch = launch
        self.process = process

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def ended(self) -> str:
        return f"exit code {self.process.returncode}"


class LocalModelServers(ModelServers):
    """Starts, checks and stops model-server processes.

    Args:
        objects: Where model data and code are read from.
        environments: The environment cache (a factory: it is opened when first needed).
        sandbox: "bwrap" to run them in bubblewrap (when it works here), else "off".
        hide: Folders the model's code must not see (the Shipyard data dir).
        host: The address they listen on (loopback, unless other machines must reach them).
        gpus: The machine's GPU ledger (the local backend's, shared with its jobs): a model server
            on a GPU type is granted its own GPUs there, as a job instance is.
        gpus_for: How many GPUs (and of how much memory each) an instance type has.
    """

    def __init__(
        self,
        objects: ObjectStore | None,
        environments: Callable[[], EnvironmentCache] | None,
        sandbox: str = "auto",
        hide: Sequence[Path] = (),
        host: str = "127.0.0.1",
        gpus: GpuLedger | None = None,
        gpus_for: Callable[[str], tuple[int, float]] = lambda instance_type: (0, 0.0),
    ) -> None:
        self._gpus = gpus
        self._gpus_for = gpus_for
        self._objects = objects
        self._environments = environments
        self.sandboxed = sandbox != "off" and sandbox_available()
        self._hide = list(hide)
        self.host = host
        # bwrap's --die-with-parent follows the thread that started it: start every model server
        # from one thread that lives as long as this object, not from the short-lived thread that
        # brings an endpoint up.
        self._spawner = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="shipyard-model-spawner")

    def start(self, request: ModelRequest) -> LocalModelServer:
        assert self._objects is not None and self._environments is not None
        launch = prepare_model(
            request,
            request.instance_dir,
            self._objects,
            self._environments(),
            lambda line: log.info("Endpoint %s: %s", request.endpoint, line),
        )
        return self.run(request, launch)

    def replace(self, dead: ModelServer) -> LocalModelServer:
        assert isinstance(dead, LocalModelServer)
        return self.run(dead.request, dead.launch)

    def run(self, request: ModelRequest, launch: ServerLaunch) -> LocalModelServer:
        """Start a model server from a prepared folder."""
        ml = launch.instance_dir / "ml"
        for sub in ("model", "input/data", "output"):
            (ml / sub).mkdir(parents=True, exist_ok=True)
        server_script = launch.instance_dir / "model_server.py"
        shutil.copyfile(_SERVER, server_script)  # the model's Python has no Shipyard to import it from
        port = _claim_port(self.host)
        root = "/opt/ml" if self.sandboxed else str(ml)

        def inside(path: str | None) -> str | None:
            return path.replace("/opt/ml", root, 1) if path and path.startswith("/opt/ml") else path

        command = [
            launch.python,
            "-u",
            str(server_script),
            "--model-dir",
            f"{root}/model",
            "--port",
            str(port),
            "--host",
            self.host,
        ]
        command += ["--framework", launch.framework, "--exit-with-stdin"]
        if launch.code_dir:
            command += ["--code-dir", inside(launch.code_dir) or ""]
        if launch.program:
            command += ["--program", launch.program]
        if request.memory_limit_mb:
            command += ["--memory-limit-mb", str(request.memory_limit_mb)]
        granted = self._grant(request, launch, port)
        env = {k: v for k, v in os.environ.items() if k in _SAFE_ENV}
        env.update({k: inside(v) or "" for k, v in launch.environment.items()})
        env.update(visible_environment(granted))  # the GPUs granted, as a job is told them
        env["PYTHONPATH"] = inside(launch.code_dir) or ""
        token = secrets.token_urlsafe(24)
        env[TOKEN_ENV] = token
        if self.sandboxed:
            run_as = run_as_for(MODEL_SERVERS + port)
            if run_as is not None:
                env["HOME"] = "/tmp"
                hand_over(ml, run_as)
            hosts = launch.instance_dir / "hosts"
            hosts.write_text("127.0.0.1 localhost model\n")
            command = sandbox_command(
                command,
                ml_dir=ml,
                host="model",
                hosts_file=hosts,
                hide=self._hide,
                keep=[*launch.keep, server_script],
                cwd="/opt/ml/model",
                run_as=run_as,
                devices=gpu_binds(granted, self._gpus.inventory.control if self._gpus else ()),
            )
        try:
            process = self._spawner.submit(
                subprocess.Popen,
                command,
                stdin=subprocess.PIPE,  # closes when this process ends: the model server then exits
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=None if self.sandboxed else str(ml / "model"),
                env=env,
                start_new_session=True,
            ).result()
        except BaseException:
            if self._gpus is not None:
                self._gpus.release(_holder(launch, port))
            raise
        server = LocalModelServer(request, launch, self.host, port, process, token)
        if granted and self._gpus is not None:
            self._gpus.hold(_holder(launch, port), [g.index for g in granted], lambda: server.alive)
        threading.Thread(target=_keep_log, args=(server,), name="shipyard-model-log", daemon=True).start()
        return server

    def _grant(self, request: ModelRequest, launch: ServerLaunch, port: int) -> tuple[Gpu, ...]:
        """The GPUs a model server on ``request``'s type gets: as many as the type has (no more
        than the machine has: fit to the machine, as jobs are), each its own.

        Raises:
            ModelServerError: they are all held (by jobs or other model servers).
        """
        count, memory_gib = self._gpus_for(request.instance_type)
        if self._gpus is None or not count or not len(self._gpus.inventory):
            return ()
        try:
            return self._gpus.take(
                _holder(launch, port), min(count, len(self._gpus.inventory)), min_memory_gib=memory_gib
            )[0]
        except GpusBusy as exc:
            raise ModelServerError(
                f"{request.instance_type} has {count} GPU(s) and this machine's are held: {exc}"
            ) from None

    def stop(self, server: ModelServer, grace: float = 5.0) -> None:
        assert isinstance(server, LocalModelServer)
        _release_port(server.port)
        if server.alive:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(server.process.pid, 15)
            try:
                server.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(server.process.pid, 9)
                server.process.wait()
        with contextlib.suppress(OSError):
            server.process.stdin.close()  # type: ignore[union-attr]
        if self._gpus is not None:
            self._gpus.release(_holder(server.launch, server.port))


def _holder(launch: ServerLaunch, port: int) -> str:
    """A model server's key in the GPU ledger: its folder and port (a replacement is another)."""
    return f"{MODEL_SERVER_HOLDER}{launch.instance_dir}:{port}"


def _keep_log(server: LocalModelServer) -> None:
    assert server.process.stdout is not None
    with server.log_path.open("a", encoding="utf-8") as log:
        for raw in server.process.stdout:
            record = {"t": int(time.time() * 1000), "m": raw.decode("utf-8", "replace").rstrip("\n")}
            log.write(json.dumps(record, ensure_ascii=False) + "\n")
            log.flush()
    server.process.wait()
    _release_port(server.port)  # it has ended: its port is free again


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# Ports given to model servers of this process that may not have bound them yet: the kernel may
# give a port that was free a moment ago to the next bind(0) again (two servers of one endpoint
# start at once), and a sandboxed server's uid is made from its port.
_PORTS_LOCK = threading.Lock()
_PORTS: set[int] = set()


def _claim_port(host: str) -> int:
    with _PORTS_LOCK:
        for _ in range(1000):
            port = _free_port(host)
            if port not in _PORTS:
                _PORTS.add(port)
                return port
    raise ModelServerError("no free loopback port for a model server")


def _release_port(port: int) -> None:
    with _PORTS_LOCK:
        _PORTS.discard(port)


__all__ = ["LocalModelServer", "LocalModelServers", "ServerLaunch", "prepare_model"]
