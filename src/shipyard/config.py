"""Server settings: one frozen object, built from flags, environment variables and a config file.

Precedence, highest first: explicit values (command-line flags) > ``SHIPYARD_*`` environment
variables > the TOML config file > defaults. The config file is ``$SHIPYARD_CONFIG`` if set, else
``<data dir>/config.toml`` if it exists. Nothing here is read at import time: callers build a
:class:`Settings` with :meth:`Settings.load` and pass it down.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard.core.quotas import QuotaBook, Quotas
from shipyard.core.slurm import SlurmSite
from shipyard.errors import ConfigurationError, ValidationError

DEFAULT_PORT = 8300
DEFAULT_ACCOUNT_ID = "000000000000"
DEFAULT_REGION = "us-east-1"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the server needs to know, resolved once at start.

    Attributes:
        host: Address to bind. Anything but loopback requires credentials, and a job sandbox (or
            ``sandbox = "off"`` set explicitly).
        port: TCP port.
        data_dir: Root of all local state (database, object store, job folders).
        database_url: SQLAlchemy URL of the metadata store; defaults to a SQLite file in data_dir.
        access_key_id / secret_access_key: When both are set, every request must be signed with them
            (AWS SigV4, or ``Authorization: Bearer <secret_access_key>`` on the native API). One
            without the other, or either empty or blank in any source, is an error at start.
        auth: ``on``: every request must be signed with a user's key (IAM users, made with
            ``shipyard users add`` or the IAM API) or the key pair above (the account's root);
            the first start creates the administrator ``admin`` and writes its key to
            ``<data_dir>/admin-credentials`` (0600). ``off`` (the default): auth is on only when
            the key pair above is set.
        account_id: The AWS account id Shipyard presents in ARNs and STS answers.
        region: Region used when a request does not say one.
        object_store: ``local`` (buckets under data_dir) or ``s3`` (a real S3-compatible service).
        s3_endpoint_url / s3_access_key_id / s3_secret_access_key / s3_region: the ``s3`` object store
            (its key pair, like the server's, both or neither, never empty).
        instance_catalog: Optional CSV overriding or adding instance types; defaults to
            ``<data_dir>/instance_types.csv`` when that file exists.
        sandbox: How job processes are isolated: ``auto`` (bubblewrap when it works here, else
            unsandboxed, said at start and in each job's log; then only loopback is served),
            ``bwrap`` (required) or ``off`` (unsandboxed, also beyond loopback).
        package_index_url / package_extra_index_urls / package_find_links: where job environments'
            packages come from (a private mirror, a wheelhouse folder); URLs separated by spaces.
            find-links defaults to ``$PIP_FIND_LINKS``.
        gpu_package_sources: Where jobs on GPU types get CUDA builds of PyTorch (PyTorch and
            Hugging Face PyTorch images), separated by spaces: index URLs (``https://download.
            pytorch.org/whl/cu124``, a mirror of it; searched before the package index) and wheel
            folders. Empty: they get the site's CPU build as CPU types do, and their log says so.
        envs_dir: Where job environments are built and cached; ``<data dir>/envs`` by default. A
            fast local disk, or one folder several servers on a machine share (environments are
            content-addressed and built under a lock, so each is built once for all of them).
        server_python_jobs: ``on`` lets a job whose environment the server's own interpreter already
            satisfies run in it without building one; ``off`` always builds.
        endpoint_startup_seconds: How long a model server may take to answer ``/ping`` (its
            environment built and its model loaded) before its endpoint fails.
        autoscaling_interval_seconds / autoscaling_window_seconds: how often the endpoint scaler
            looks, and over how many seconds it measures invocations per instance.
        cost_check_seconds: How often budgets are checked against the spend (alerts, stops).
        storage_sample_seconds: How often the object store's size is sampled for the ledger.
        multipart_max_age_hours: Multipart uploads left open longer than this (a crashed client's)
            are aborted, as an S3 lifecycle rule would; 168 (7 days), 0 never.
        utilization_seconds: How often each job instance and model server samples its CPU,
            memory and disk use.
        cpu_overcommit: The local backend hands out this many times the machine's cores (1: no
            more than it has; 2 runs two 2-vCPU trials on a 2-core laptop at once, slower each).
        fit_to_machine: ``on`` (the default): a job whose instance type is larger than the
            backend (more vCPUs, memory or GPUs, or GPUs of more memory) runs with what there
            is, recorded on the job; ``off``: it is refused at once, naming the numbers.
        fake_gpus: FOR TESTS ONLY: a JSON device list (``core.devices.GpuInventory``'s form)
            the local backend uses instead of asking NVML, so that GPU allocation and the
            sandbox's device binding are tested on a machine without a GPU. Unset: NVML's
            GPUs (the ``gpu`` extra), limited by ``CUDA_VISIBLE_DEVICES``.
        idle_endpoint_seconds: An endpoint not invoked for this long is reported idle (its
            instances cost all the same); ``idle_endpoints = "delete"`` deletes it then.
        notebook_idle_seconds: A notebook instance whose Jupyter server saw no activity for this
            long (its ``/api/status`` ``last_activity``) is stopped; 0 never stops one. 3600.
        serverless_idle_seconds: A serverless endpoint's model server without a request for this
            long is stopped (scaled to zero: the next request starts it again); 300.
        backend: Where job instances and endpoints run: ``local`` (processes on this machine),
            ``ray`` (the Ray cluster at ``ray_address``) or ``slurm`` (job instances as Slurm jobs
            through ``sbatch``; endpoints stay local).
        ray_address: The Ray cluster: ``host:port`` of its GCS when this machine is one of its
            nodes, or ``ray://host:10001`` (Ray Client) when it is not.
        ray_token: The cluster's token when it uses Ray's token authentication
            (``RAY_AUTH_MODE=token``); defaults to ``$RAY_AUTH_TOKEN``.
        ray_instance_types: With ``backend = "local"``, instance types (shell patterns separated by
            spaces or commas, e.g. ``ml.g* ml.p*``) whose jobs and endpoints go to Ray all the same.
        slurm_instance_types: With ``backend = "local"``, instance types whose jobs go to Slurm.
        slurm_partition / slurm_account / slurm_qos: What every sbatch asks for unless the
            ``[slurm_types]`` table says otherwise (empty: Slurm's defaults for the server's user).
        slurm_types: The config file's ``[slurm_types."<pattern>"]`` tables: per instance type
            (shell patterns, tried in file order) ``partition``, ``cpus_per_task``,
            ``memory_mib``, ``gres`` (``gpu:a100:1``), ``qos``, ``account``. Not settable by
            flag or environment variable.
        slurm_dir: The folder on each Slurm node where instances run (a local disk; the job's
            files reach the server through Slurm, not a shared filesystem); ``/tmp/shipyard-slurm``.
        slurm_envs_dir: Where the nodes build and cache job environments: ``<slurm_dir>/envs`` by
            default, or a folder on a filesystem the nodes share, so each is built once for all.
        alert_command: A shell command run for every budget alert (the alert in its environment:
            ``SHIPYARD_ALERT`` as JSON, ``SHIPYARD_BUDGET``, ``SHIPYARD_SPEND_USD``).
        max_instances_per_job: Site quota on a training, processing or transform job's
            InstanceCount (a tuning job's trials too); 20 as SageMaker's default.
        max_job_instances: Site quota on the instances of all active training, processing and
            transform jobs together: a create past it is refused (trials count, but are not
            refused: their tuning job was checked).
        max_tuning_training_jobs / max_tuning_parallel_jobs: Site quotas on a tuning job's
            MaxNumberOfTrainingJobs (750) and MaxParallelTrainingJobs (10), SageMaker's defaults.
        max_instances_per_variant / max_endpoint_instances: Site quotas on an endpoint variant's
            instance count, and on the instances of all endpoints together.
        A request past a quota answers SageMaker's ``ResourceLimitExceeded``, naming it.
        user_quotas: Quotas by user and group, the config file's ``[quotas]`` tables
            (``[quotas.default]``, ``[quotas.users.<name>]``, ``[quotas.groups.<name>]``, each
            of ``vcpus``, ``gpus``, ``instances``, ``endpoints``); an administrator changes them
            at run time (``shipyard quotas set``). Not settable by flag or environment variable.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = dataclasses.field(default_factory=lambda: Path("~/.shipyard").expanduser())
    database_url: str = ""
    access_key_id: str | None = None
    secret_access_key: str | None = None
    auth: str = "off"
    account_id: str = DEFAULT_ACCOUNT_ID
    region: str = DEFAULT_REGION
    object_store: str = "local"
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str | None = None
    instance_catalog: Path | None = None
    sandbox: str = "auto"
    cpu_overcommit: float = 1.0
    fit_to_machine: str = "on"
    fake_gpus: Path | None = None
    package_index_url: str | None = None
    package_extra_index_urls: str = ""
    package_find_links: str = ""
    gpu_package_sources: str = ""
    envs_dir: Path | None = None
    server_python_jobs: str = "on"
    endpoint_startup_seconds: int = 600
    autoscaling_interval_seconds: int = 10
    autoscaling_window_seconds: int = 60
    cost_check_seconds: int = 5
    storage_sample_seconds: int = 3600
    multipart_max_age_hours: int = 168
    alert_command: str | None = None
    backend: str = "local"
    ray_address: str | None = None
    ray_token: str | None = None
    ray_instance_types: str = ""
    slurm_instance_types: str = ""
    slurm_partition: str = ""
    slurm_account: str = ""
    slurm_qos: str = ""
    slurm_types: SlurmSite = dataclasses.field(default_factory=SlurmSite)
    slurm_dir: str = "/tmp/shipyard-slurm"
    slurm_envs_dir: str = ""
    utilization_seconds: int = 5
    idle_endpoint_seconds: int = 3600
    idle_endpoints: str = "report"
    notebook_idle_seconds: int = 3600
    serverless_idle_seconds: int = 300
    log_level: str = "info"
    max_instances_per_job: int = 20
    max_job_instances: int = 100
    max_tuning_training_jobs: int = 750
    max_tuning_parallel_jobs: int = 10
    max_instances_per_variant: int = 20
    max_endpoint_instances: int = 100
    user_quotas: QuotaBook = dataclasses.field(default_factory=QuotaBook)

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        if self.envs_dir is not None:
            object.__setattr__(self, "envs_dir", Path(self.envs_dir).expanduser().resolve())
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'shipyard.db'}")
        if self.instance_catalog is None:
            candidate = self.data_dir / "instance_types.csv"
            if candidate.exists():
                object.__setattr__(self, "instance_catalog", candidate)
        if not 0 < self.port < 65536:
            raise ConfigurationError(f"port must be between 1 and 65535, got {self.port}")
        if not 1 <= self.cpu_overcommit <= 16:
            raise ConfigurationError(f"cpu_overcommit must be between 1 and 16, got {self.cpu_overcommit:g}")
        if self.object_store not in ("local", "s3"):
            raise ConfigurationError(f"object_store must be 'local' or 's3', got {self.object_store!r}")
        if self.server_python_jobs not in ("on", "off"):
            raise ConfigurationError(
                f"server_python_jobs must be 'on' or 'off', got {self.server_python_jobs!r}"
            )
        if self.fit_to_machine not in ("on", "off"):
            raise ConfigurationError(f"fit_to_machine must be 'on' or 'off', got {self.fit_to_machine!r}")
        if self.auth not in ("on", "off"):
            raise ConfigurationError(f"auth must be 'on' or 'off', got {self.auth!r}")
        if self.sandbox not in ("auto", "bwrap", "off"):
            raise ConfigurationError(f"sandbox must be 'auto', 'bwrap' or 'off', got {self.sandbox!r}")
        if self.backend not in ("local", "ray", "slurm"):
            raise ConfigurationError(f"backend must be 'local', 'ray' or 'slurm', got {self.backend!r}")
        if self.slurm_instance_types.strip() and self.backend != "local":
            raise ConfigurationError(
                f"slurm_instance_types routes some types to Slurm from a local server; backend is {self.backend!r}"
            )
        try:
            SlurmSite.from_config(
                partition=self.slurm_partition, account=self.slurm_account, qos=self.slurm_qos
            )
        except ValidationError as exc:
            raise ConfigurationError(exc.message) from None
        if (self.backend == "ray" or self.ray_instance_types.strip()) and not self.ray_address:
            what = "backend is 'ray'" if self.backend == "ray" else "ray_instance_types is set"
            raise ConfigurationError(
                f"{what} but ray_address is not: give the Ray cluster's address "
                "(--ray-address host:port, or ray://host:10001)"
            )
        if self.multipart_max_age_hours < 0:
            raise ConfigurationError(
                f"multipart_max_age_hours must be 0 (never) or more, got {self.multipart_max_age_hours}"
            )
        if self.serverless_idle_seconds < 1:
            raise ConfigurationError(
                f"serverless_idle_seconds must be at least 1, got {self.serverless_idle_seconds}"
            )
        if self.notebook_idle_seconds < 0:
            raise ConfigurationError(
                f"notebook_idle_seconds must be 0 (never) or more, got {self.notebook_idle_seconds}"
            )
        if self.idle_endpoints not in ("report", "delete"):
            raise ConfigurationError(
                f"idle_endpoints must be 'report' or 'delete', got {self.idle_endpoints!r}"
            )
        for pair in _CREDENTIAL_PAIRS:
            _check_pair(pair, {name: getattr(self, name) for name in pair}, {})
        for name in _QUOTAS:
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be at least 1, got {getattr(self, name)}")

    @property
    def quotas(self) -> Quotas:
        """The site's quotas, as the services check them."""
        return Quotas(
            instances_per_job=self.max_instances_per_job,
            job_instances=self.max_job_instances,
            tuning_training_jobs=self.max_tuning_training_jobs,
            tuning_parallel_jobs=self.max_tuning_parallel_jobs,
            instances_per_variant=self.max_instances_per_variant,
            endpoint_instances=self.max_endpoint_instances,
        )

    @property
    def slurm_site(self) -> SlurmSite:
        """The sbatch settings: the defaults, and the ``[slurm_types]`` table's rows."""
        defaults = SlurmSite.from_config(
            partition=self.slurm_partition, account=self.slurm_account, qos=self.slurm_qos
        )
        return dataclasses.replace(
            self.slurm_types, partition=defaults.partition, account=defaults.account, qos=defaults.qos
        )

    @property
    def auth_enabled(self) -> bool:
        return self.auth == "on" or self.secret_access_key is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def sandbox_problem(self) -> str | None:
        """Why jobs would run unsandboxed here (None: they run in the sandbox). ``off`` is the
        site's own choice; ``auto`` falls back to off where bubblewrap cannot work."""
        if self.sandbox == "off":
            return 'sandbox = "off" is set'
        from shipyard.runtime import _sandbox

        if _sandbox.sandbox_available():
            return None
        return _sandbox.sandbox_problem() or "the job sandbox cannot be made here"

    def check_bind_allowed(self) -> None:
        """Refuse to expose beyond this machine a server without authentication, or one whose
        jobs would run unsandboxed without the site saying ``sandbox = "off"``."""
        if is_loopback(self.host):
            return
        if not self.auth_enabled:
            raise ConfigurationError(
                f"Refusing to bind host {self.host!r} without authentication: only loopback "
                "addresses (127.0.0.1, ::1, localhost) may be served without credentials. Set "
                "SHIPYARD_ACCESS_KEY_ID and SHIPYARD_SECRET_ACCESS_KEY (or access_key_id / "
                "secret_access_key in the config file) to serve other addresses."
            )
        problem = None if self.sandbox == "off" else self.sandbox_problem()
        if problem is not None:
            raise ConfigurationError(
                f"Refusing to bind host {self.host!r} with jobs unsandboxed ({problem}): a job "
                "runs other people's code, and unsandboxed it can read the data dir and the "
                "server's secrets. Make the sandbox work (install bubblewrap), serve loopback "
                'only, or set sandbox = "off" (SHIPYARD_SANDBOX=off) to accept unsandboxed jobs.'
            )

    @property
    def environments_dir(self) -> Path:
        """The folder of the environment cache: ``envs_dir``, else ``<data dir>/envs``."""
        return self.envs_dir or self.data_dir / "envs"

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Build settings from ``overrides`` (flags; None values ignored), env vars and config file."""
        environ = os.environ if environ is None else environ
        explicit = {k: v for k, v in (overrides or {}).items() if v is not None}
        sources = {name: "flag --" + name.replace("_", "-") for name in explicit}
        from_env = _from_environ(environ)
        data_dir = explicit.get("data_dir") or from_env.get("data_dir")
        config_path = environ.get("SHIPYARD_CONFIG")
        if config_path:
            from_file = _read_config_file(Path(config_path).expanduser(), required=True)
        else:
            base = Path(data_dir).expanduser() if data_dir else Path("~/.shipyard").expanduser()
            config_path = str(base / "config.toml")
            from_file = _read_config_file(base / "config.toml", required=False)
        sources = {
            **{name: f"config file {config_path!r}" for name in from_file},
            **{name: f"environment variable {_ENV_NAMES[name]}" for name in from_env},
            **sources,
        }
        merged: dict[str, Any] = {**from_file, **from_env, **explicit}
        for pair in _CREDENTIAL_PAIRS:
            _check_pair(pair, {name: merged.get(name) for name in pair}, sources)
        return cls(**merged)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_QUOTAS = tuple(name for name in _FIELDS if name.startswith("max_"))
# Key pairs: both or neither, and never empty (an empty one would leave auth off unnoticed).
_CREDENTIAL_PAIRS = (("access_key_id", "secret_access_key"), ("s3_access_key_id", "s3_secret_access_key"))
_CREDENTIALS = {name for pair in _CREDENTIAL_PAIRS for name in pair}
_TABLES = ("user_quotas", "slurm_types")  # the config file's tables only
_ENV_NAMES = {name: f"SHIPYARD_{name.upper()}" for name in _FIELDS if name not in _TABLES}
# SHIPYARD_HOME is the conventional name for the data dir.
_ENV_NAMES["data_dir"] = "SHIPYARD_HOME"


def _coerce(name: str, raw: Any, source: str) -> Any:
    field_type = str(_FIELDS[name].type)
    try:
        if "int" in field_type:
            return int(raw)
        if "float" in field_type:
            return float(raw)
        if "Path" in field_type:
            return Path(str(raw)).expanduser()
        return str(raw)
    except ValueError:
        what = "a number" if "float" in field_type else "an integer"
        raise ConfigurationError(f"{source}: {name} must be {what}, got {raw!r}") from None


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, env_name in _ENV_NAMES.items():
        raw = environ.get(env_name)
        if raw or (raw is not None and name in _CREDENTIALS):  # an empty credential is an error
            values[name] = _coerce(name, raw, f"environment variable {env_name}")
    return values


def _check_pair(pair: tuple[str, str], values: Mapping[str, Any], sources: Mapping[str, str]) -> None:
    """Both of a key pair or neither, each a non-blank string; errors name the setting and where
    it came from (``sources``; unnamed when the settings were built directly)."""

    def where(name: str) -> str:
        return f" (from {sources[name]})" if name in sources else ""

    for name in pair:
        value = values[name]
        if value is None:
            continue
        if not isinstance(value, str):
            raise ConfigurationError(f"{name}{where(name)} must be a string, got {value!r}")
        if not value.strip():
            raise ConfigurationError(
                f"{name}{where(name)} is {'empty' if not value else 'blank'}: give the key, or leave "
                "the setting out altogether (an empty credential would leave authentication off)"
            )
        if value != value.strip():
            raise ConfigurationError(
                f"{name}{where(name)} has leading or trailing whitespace; give the key alone"
            )
    given = [name for name in pair if values[name] is not None]
    if len(given) == 1:
        [missing] = [name for name in pair if name not in given]
        raise ConfigurationError(
            f"{pair[0]} and {pair[1]} must be set together: {given[0]} is set{where(given[0])} "
            f"but {missing} is not (set {_ENV_NAMES[missing]} or {missing} in the config file)"
        )


def _read_config_file(path: Path, *, required: bool) -> dict[str, Any]:
    if not path.exists():
        if required:
            raise ConfigurationError(f"Config file {str(path)!r} (from SHIPYARD_CONFIG) does not exist")
        return {}
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"Config file {str(path)!r} is not valid TOML: {exc}") from None
    section = raw.get("server", raw)
    values: dict[str, Any] = {}
    quotas = raw.get("quotas", section.get("quotas"))
    if quotas is not None:
        try:
            values["user_quotas"] = QuotaBook.from_config(quotas)
        except ValidationError as exc:
            raise ConfigurationError(f"Config file {str(path)!r}: {exc.message}") from None
    slurm_types = raw.get("slurm_types", section.get("slurm_types"))
    if slurm_types is not None:
        try:
            values["slurm_types"] = SlurmSite.from_config(types=slurm_types)
        except ValidationError as exc:
            raise ConfigurationError(f"Config file {str(path)!r}: {exc.message}") from None
    for key, value in section.items():
        if isinstance(value, dict) or key in ("quotas", "slurm_types"):
            continue
        name = key.replace("-", "_")
        if name not in _FIELDS:
            raise ConfigurationError(
                f"Config file {str(path)!r}: unknown setting {key!r}; known settings: "
                + ", ".join(sorted(_FIELDS))
            )
        values[name] = _coerce(name, value, f"config file {str(path)!r}")
    return values


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
