"""The server ↔ agent contract: what the server tells an instance agent, and what it answers.

The server (its scheduler, through a backend) and an instance agent share nothing but one
folder per instance, :class:`InstanceFolder`:

* ``agent.json`` — :class:`AgentConfig`: what to run and with what, written once by the backend;
* ``status.json`` — :class:`AgentStatus`: the agent's phases and, at the end, its
  :class:`Outcome`; replaced atomically as it goes;
* ``log.jsonl`` — one ``{"t": <epoch ms>, "m": <line>}`` per output line, append-only;
* ``utilization.jsonl`` — a utilization sample per line, append-only;
* ``agent.log`` — the agent's own output (its tracebacks); ``hosts`` — the sandbox's /etc/hosts;
  ``ml/`` — the instance's /opt/ml.

Each record has one ``to_json``/``from_json`` and its defaults here, and carries the contract's
``version``: an agent refuses a config of a newer version than it knows (a server newer than the
agent's node), and readers ignore keys they do not know, so old folders read after an upgrade.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard.core.devices import Gpu
from shipyard.core.outcomes import Outcome

VERSION = 1
# A model server answers only requests carrying the token it was started with (model_server.py).
TOKEN_ENV = "SHIPYARD_MODEL_SERVER_TOKEN"
TOKEN_HEADER = "x-shipyard-token"
__all__ = [
    "VERSION",
    "AgentConfig",
    "AgentStatus",
    "ContractError",
    "InstanceFolder",
    "JobApi",
    "Outcome",
    "Phase",
    "StoreAccess",
]


class ContractError(Exception):
    """An ``agent.json`` this agent cannot run (a newer contract, or a key missing)."""


@dataclasses.dataclass(frozen=True)
class StoreAccess:
    """How an agent reaches the object store: the server's folder (``local``), or S3 (real S3,
    or this server's own S3 API from another machine).

    ``job_credentials``: sign with the job's own session credentials (its :class:`JobApi`'s),
    as an agent reaching this server's S3 API does; the server's key is never handed out.
    ``session_token`` and ``expiration`` come with session credentials.
    """

    kind: str = "local"
    root: str | None = None
    endpoint_url: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    region: str | None = None
    max_attempts: int | None = None
    session_token: str | None = None
    expiration: str | None = None
    job_credentials: bool = False

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None and v is not False}

    def signed_as(self, credentials: JobApi | None) -> StoreAccess:
        """This access with ``credentials``' keys, when it takes the job's (``job_credentials``)."""
        if not self.job_credentials or credentials is None:
            return self
        return dataclasses.replace(
            self,
            access_key_id=credentials.access_key_id,
            secret_access_key=credentials.secret_access_key,
            session_token=credentials.session_token,
            expiration=credentials.expiration,
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StoreAccess:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls) if f.name in data})


@dataclasses.dataclass(frozen=True)
class JobApi:
    """Where the job's own AWS clients reach this Shipyard, and as whom: the job's session
    credentials (``session_token`` and ``expiration``, ISO 8601, set) or placeholders for a
    server that checks no signature."""

    endpoint_url: str
    access_key_id: str = "shipyard"
    secret_access_key: str = "shipyard"
    session_token: str | None = None
    expiration: str | None = None

    def __repr__(self) -> str:  # never the secret or the token in a log line
        return f"JobApi({self.endpoint_url!r}, access_key_id={self.access_key_id!r})"


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """``agent.json``: everything an instance agent needs, written by the backend.

    Attributes:
        kind: ``training``, ``processing`` or ``transform`` (which agent runs).
        request: The job's validated Create request (the agent parses its spec from it).
        host, host_index: ``algo-N`` and N - 1.
        arn, region: The job's ARN and region (its ``*_JOB_ARN`` and ``AWS_REGION``).
        object_store: How to reach inputs and outputs.
        api: Where the job's AWS clients reach this server (None: they are not pointed at it).
        cpus, gpus, memory_bytes, disk_bytes: What the instance was granted.
        gpu_devices: The GPUs it was granted (``gpus`` of them, where the backend grants
            specific devices): the sandbox binds their nodes and no other GPU's, and
            ``gpu_control`` (the driver's control nodes) with them.
        sandbox: ``bwrap`` or ``off``; ``hide``: host paths the sandbox must not show.
        python: The interpreter a job without an environment runs with.
        environment: The job's EnvironmentSpec as JSON (None: ``python`` as it is).
        envs_dir, sources, allow_server_python: The environment cache and where packages come from.
        master_addr, master_port: Where algo-1 is reached by the other instances.
        model: A transform job's model (image, model data, environment, framework).
        notes: Lines the agent logs first (e.g. the job was scaled down to fit).
        stop_grace_seconds: SIGTERM to SIGKILL on a stop.
        utilization_seconds: How often utilization is sampled (0: never).
        checkpoint_sync_seconds: How often checkpoints and Continuous outputs are mirrored.
        model_startup_seconds: How long a transform job's model server may take to be healthy.
        die_with_parent: End with the process that started the agent (a Ray actor).
    """

    kind: str
    request: Mapping[str, Any]
    host: str
    host_index: int
    object_store: StoreAccess
    arn: str = ""
    region: str = "us-east-1"
    api: JobApi | None = None
    cpus: float = 1
    gpus: int = 0
    gpu_devices: tuple[Gpu, ...] = ()
    gpu_control: tuple[str, ...] = ()
    memory_bytes: float = 2**30
    disk_bytes: float = 30 * 10**9
    sandbox: str = "off"
    hide: tuple[str, ...] = ()
    python: str = ""
    environment: Mapping[str, Any] | None = None
    envs_dir: str | None = None
    sources: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    allow_server_python: bool = True
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    model: Mapping[str, Any] | None = None
    notes: tuple[str, ...] = ()
    stop_grace_seconds: float = 30.0
    utilization_seconds: float = 0.0
    checkpoint_sync_seconds: float = 1.0
    model_startup_seconds: float = 600.0
    die_with_parent: bool = False
    version: int = VERSION

    def replace(self, **changes: Any) -> AgentConfig:
        return dataclasses.replace(self, **changes)

    @property
    def builtin(self) -> str | None:
        """The built-in algorithm the environment names (``xgboost``), if any."""
        return (self.environment or {}).get("builtin")

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["request"] = dict(self.request)
        data["object_store"] = self.object_store.to_json()
        data["api"] = dataclasses.asdict(self.api) if self.api else None
        data["hide"] = list(self.hide)
        data["notes"] = list(self.notes)
        data["gpu_devices"] = [g.to_json() for g in self.gpu_devices]
        data["gpu_control"] = list(self.gpu_control)
        data["sources"] = dict(self.sources)
        data["environment"] = dict(self.environment) if self.environment is not None else None
        data["model"] = dict(self.model) if self.model is not None else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AgentConfig:
        version = int(data.get("version", VERSION))
        if version > VERSION:
            raise ContractError(
                f"agent.json is of contract version {version}, this agent knows {VERSION}: "
                "install the server's Shipyard version where the agent runs"
            )
        missing = [k for k in ("kind", "request", "host", "host_index", "object_store") if k not in data]
        if missing:
            raise ContractError(f"agent.json lacks {', '.join(missing)}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["object_store"] = StoreAccess.from_json(data["object_store"])
        api = data.get("api") or {}
        api_fields = {f.name for f in dataclasses.fields(JobApi)}
        values["api"] = (
            JobApi(**{k: v for k, v in api.items() if k in api_fields}) if api.get("endpoint_url") else None
        )
        values["hide"] = tuple(data.get("hide") or ())
        values["notes"] = tuple(data.get("notes") or ())
        values["gpu_devices"] = tuple(
            Gpu.from_json(g, where=f"gpu_devices[{i}]") for i, g in enumerate(data.get("gpu_devices") or ())
        )
        values["gpu_control"] = tuple(data.get("gpu_control") or ())
        values["sources"] = dict(data.get("sources") or {})
        values["version"] = version
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str  # Downloading, Training, Uploading
    time: str  # ISO 8601, UTC


@dataclasses.dataclass(frozen=True)
class AgentStatus:
    """``status.json``: where the agent stands and, at the end, how its work ended.

    A folder without one (or with one still being replaced) reads as :meth:`unreported`:
    the agent has not started yet.

    Attributes:
        reported: Whether the agent wrote it (it handles SIGTERM from then on).
        agent_pid: The agent's process.
        user_pgid: The process group of the user's process, once started (to kill it).
        started: When the agent began its work (the billed interval opens).
        training_start, training_end: When the user's process started, when the work ended.
        phases: The phases gone through, in order, with their times.
        outcome: None while it runs; the agent's judgement at the end.
        exit_code: The user's process's, if it ran.
        failure_reason: Why it failed (or, with MaxRuntimeExceeded, the message).
        model_artifacts, output_artifacts: The URIs uploaded (algo-1 only).
        elapsed: Seconds from start to the end, by the agent's monotonic clock.
    """

    reported: bool = False
    agent_pid: int | None = None
    user_pgid: int | None = None
    started: str | None = None
    training_start: str | None = None
    training_end: str | None = None
    phases: tuple[Phase, ...] = ()
    outcome: Outcome | None = None
    exit_code: int | None = None
    failure_reason: str | None = None
    model_artifacts: str | None = None
    output_artifacts: str | None = None
    elapsed: float | None = None
    version: int = VERSION

    @classmethod
    def unreported(cls) -> AgentStatus:
        return cls()

    @property
    def phase(self) -> str | None:
        return self.phases[-1].name if self.phases else None

    def replace(self, **changes: Any) -> AgentStatus:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "reported"}
        data["phases"] = [{"phase": p.name, "time": p.time} for p in self.phases]
        data["phase"] = self.phase
        data["outcome"] = self.outcome.value if self.outcome else None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AgentStatus:
        outcome = data.get("outcome")
        return cls(
            reported=True,
            agent_pid=data.get("agent_pid"),
            user_pgid=data.get("user_pgid"),
            started=data.get("started"),
            training_start=data.get("training_start"),
            training_end=data.get("training_end"),
            phases=tuple(Phase(p["phase"], p["time"]) for p in data.get("phases") or ()),
            outcome=Outcome(outcome) if outcome else None,
            exit_code=data.get("exit_code"),
            failure_reason=data.get("failure_reason"),
            model_artifacts=data.get("model_artifacts"),
            output_artifacts=data.get("output_artifacts"),
            elapsed=data.get("elapsed"),
            version=int(data.get("version", VERSION)),
        )


@dataclasses.dataclass(frozen=True)
class InstanceFolder:
    """One instance's folder, where the server and its agent meet. See the module docstring."""

    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / "agent.json"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def log(self) -> Path:
        return self.path / "log.jsonl"

    @property
    def utilization(self) -> Path:
        return self.path / "utilization.jsonl"

    @property
    def agent_log(self) -> Path:
        return self.path / "agent.log"

    @property
    def hosts(self) -> Path:
        return self.path / "hosts"

    @property
    def ml(self) -> Path:
        return self.path / "ml"

    def write_config(self, config: AgentConfig) -> None:
        """Write ``agent.json``, readable by the server's user only: it holds the job's credentials."""
        self.path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.config_path.unlink()  # a file made earlier keeps its mode; this one is new
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(config.to_json()))

    def read_config(self) -> AgentConfig:
        return AgentConfig.from_json(json.loads(self.config_path.read_text()))

    def write_status(self, status: AgentStatus) -> None:
        """Replace ``status.json`` atomically: a reader sees the old one or the new one."""
        tmp = self.status_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status.to_json()))
        os.replace(tmp, self.status_path)

    def read_status(self) -> AgentStatus:
        """The agent's status; :meth:`AgentStatus.unreported` while there is none."""
        try:
            data = json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return AgentStatus.unreported()
        return AgentStatus.from_json(data) if isinstance(data, dict) else AgentStatus.unreported()
