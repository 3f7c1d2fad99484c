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

from shipyard.errors import ConfigurationError

DEFAULT_PORT = 8300
DEFAULT_ACCOUNT_ID = "000000000000"
DEFAULT_REGION = "us-east-1"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the server needs to know, resolved once at start.

    Attributes:
        host: Address to bind. Anything but loopback requires credentials.
        port: TCP port.
        data_dir: Root of all local state (database, object store, job folders).
        database_url: SQLAlchemy URL of the metadata store; defaults to a SQLite file in data_dir.
        access_key_id / secret_access_key: When both are set, every request must be signed with them
            (AWS SigV4, or ``Authorization: Bearer <secret_access_key>`` on the native API).
        account_id: The AWS account id Shipyard presents in ARNs and STS answers.
        region: Region used when a request does not say one.
        object_store: ``local`` (buckets under data_dir) or ``s3`` (a real S3-compatible service).
        s3_endpoint_url / s3_access_key_id / s3_secret_access_key / s3_region: the ``s3`` object store.
        instance_catalog: Optional CSV overriding or adding instance types; defaults to
            ``<data_dir>/instance_types.csv`` when that file exists.
        sandbox: How job processes are isolated: ``auto`` (bubblewrap when it works here, else
            unsandboxed with a note in each job's log), ``bwrap`` (required) or ``off``.
        package_index_url / package_extra_index_urls / package_find_links: where job environments'
            packages come from (a private mirror, a wheelhouse folder); URLs separated by spaces.
            find-links defaults to ``$PIP_FIND_LINKS``.
        server_python_jobs: ``on`` lets a job whose environment the server's own interpreter already
            satisfies run in it without building one; ``off`` always builds.
        endpoint_startup_seconds: How long a model server may take to answer ``/ping`` (its
            environment built and its model loaded) before its endpoint fails.
        autoscaling_interval_seconds / autoscaling_window_seconds: how often the endpoint scaler
            looks, and over how many seconds it measures invocations per instance.
        cost_check_seconds: How often budgets are checked against the spend (alerts, stops).
        storage_sample_seconds: How often the object store's size is sampled for the ledger.
        utilization_seconds: How often each job instance and model server samples its CPU,
            memory and disk use.
        idle_endpoint_seconds: An endpoint not invoked for this long is reported idle (its
            instances cost all the same); ``idle_endpoints = "delete"`` deletes it then.
        backend: Where job instances and endpoints run: ``local`` (processes on this machine) or
            ``ray`` (the Ray cluster at ``ray_address``).
        ray_address: The Ray cluster: ``host:port`` of its GCS when this machine is one of its
            nodes, or ``ray://host:10001`` (Ray Client) when it is not.
        ray_token: The cluster's token when it uses Ray's token authentication
            (``RAY_AUTH_MODE=token``); defaults to ``$RAY_AUTH_TOKEN``.
        ray_instance_types: With ``backend = "local"``, instance types (shell patterns separated by
            spaces or commas, e.g. ``ml.g* ml.p*``) whose jobs and endpoints go to Ray all the same.
        alert_command: A shell command run for every budget alert (the alert in its environment:
            ``SHIPYARD_ALERT`` as JSON, ``SHIPYARD_BUDGET``, ``SHIPYARD_SPEND_USD``).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = dataclasses.field(default_factory=lambda: Path("~/.shipyard").expanduser())
    database_url: str = ""
    access_key_id: str | None = None
    secret_access_key: str | None = None
    account_id: str = DEFAULT_ACCOUNT_ID
    region: str = DEFAULT_REGION
    object_store: str = "local"
    s3_endpoint_url: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str | None = None
    instance_catalog: Path | None = None
    sandbox: str = "auto"
    package_index_url: str | None = None
    package_extra_index_urls: str = ""
    package_find_links: str = ""
    server_python_jobs: str = "on"
    endpoint_startup_seconds: int = 600
    autoscaling_interval_seconds: int = 10
    autoscaling_window_seconds: int = 60
    cost_check_seconds: int = 5
    storage_sample_seconds: int = 3600
    alert_command: str | None = None
    backend: str = "local"
    ray_address: str | None = None
    ray_token: str | None = None
    ray_instance_types: str = ""
    utilization_seconds: int = 5
    idle_endpoint_seconds: int = 3600
    idle_endpoints: str = "report"
    log_level: str = "info"

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser().resolve())
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'shipyard.db'}")
        if self.instance_catalog is None:
            candidate = self.data_dir / "instance_types.csv"
            if candidate.exists():
                object.__setattr__(self, "instance_catalog", candidate)
        if not 0 < self.port < 65536:
            raise ConfigurationError(f"port must be between 1 and 65535, got {self.port}")
        if self.object_store not in ("local", "s3"):
            raise ConfigurationError(f"object_store must be 'local' or 's3', got {self.object_store!r}")
        if self.server_python_jobs not in ("on", "off"):
            raise ConfigurationError(
                f"server_python_jobs must be 'on' or 'off', got {self.server_python_jobs!r}"
            )
        if self.sandbox not in ("auto", "bwrap", "off"):
            raise ConfigurationError(f"sandbox must be 'auto', 'bwrap' or 'off', got {self.sandbox!r}")
        if self.backend not in ("local", "ray"):
            raise ConfigurationError(f"backend must be 'local' or 'ray', got {self.backend!r}")
        if (self.backend == "ray" or self.ray_instance_types.strip()) and not self.ray_address:
            what = "backend is 'ray'" if self.backend == "ray" else "ray_instance_types is set"
            raise ConfigurationError(
                f"{what} but ray_address is not: give the Ray cluster's address "
                "(--ray-address host:port, or ray://host:10001)"
            )
        if self.idle_endpoints not in ("report", "delete"):
            raise ConfigurationError(
                f"idle_endpoints must be 'report' or 'delete', got {self.idle_endpoints!r}"
            )
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ConfigurationError(
                "access_key_id and secret_access_key must be set together "
                f"(access_key_id={'set' if self.access_key_id else 'unset'}, "
                f"secret_access_key={'set' if self.secret_access_key else 'unset'})"
            )

    @property
    def auth_enabled(self) -> bool:
        return self.secret_access_key is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def check_bind_allowed(self) -> None:
        """Refuse to expose an unauthenticated server beyond this machine."""
        if not is_loopback(self.host) and not self.auth_enabled:
            raise ConfigurationError(
                f"Refusing to bind host {self.host!r} without authentication: only loopback "
                "addresses (127.0.0.1, ::1, localhost) may be served without credentials. Set "
                "SHIPYARD_ACCESS_KEY_ID and SHIPYARD_SECRET_ACCESS_KEY (or access_key_id / "
                "secret_access_key in the config file) to serve other addresses."
            )

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        """Build settings from ``overrides`` (flags; None values ignored), env vars and config file."""
        environ = os.environ if environ is None else environ
        explicit = {k: v for k, v in (overrides or {}).items() if v is not None}
        from_env = _from_environ(environ)
        data_dir = explicit.get("data_dir") or from_env.get("data_dir")
        config_path = environ.get("SHIPYARD_CONFIG")
        if config_path:
            from_file = _read_config_file(Path(config_path).expanduser(), required=True)
        else:
            base = Path(data_dir).expanduser() if data_dir else Path("~/.shipyard").expanduser()
            from_file = _read_config_file(base / "config.toml", required=False)
        merged: dict[str, Any] = {**from_file, **from_env, **explicit}
        return cls(**merged)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_ENV_NAMES = {name: f"SHIPYARD_{name.upper()}" for name in _FIELDS}
# SHIPYARD_HOME is the conventional name for the data dir.
_ENV_NAMES["data_dir"] = "SHIPYARD_HOME"


def _coerce(name: str, raw: Any, source: str) -> Any:
    field_type = str(_FIELDS[name].type)
    try:
        if "int" in field_type:
            return int(raw)
        if "Path" in field_type:
            return Path(str(raw)).expanduser()
        return str(raw)
    except ValueError:
        raise ConfigurationError(f"{source}: {name} must be an integer, got {raw!r}") from None


def _from_environ(environ: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, env_name in _ENV_NAMES.items():
        raw = environ.get(env_name)
        if raw:
            values[name] = _coerce(name, raw, f"environment variable {env_name}")
    return values


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
    for key, value in section.items():
        if isinstance(value, dict):
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
