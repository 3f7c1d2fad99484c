"""``shipyard``: the command-line entry point (Typer)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

import shipyard
from shipyard.config import Settings
from shipyard.envs import EnvironmentCache
from shipyard.errors import ConfigurationError, ShipyardError

app = typer.Typer(
    name="shipyard",
    help="Shipyard: train, tune and serve models on your own machines, with the SageMaker API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="The metadata database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
envs_app = typer.Typer(
    help="Job environments built from SageMaker images and requirements.txt.", no_args_is_help=True
)
app.add_typer(envs_app, name="envs")

# The commands of other modules attach after the main app exists.
from shipyard.cli._costs import alerts, budgets_app, cost, waste  # noqa: E402
from shipyard.cli._endpoints import endpoints_app, instance_types  # noqa: E402
from shipyard.cli._jobs import jobs_app  # noqa: E402
from shipyard.cli._launch import train, tune  # noqa: E402
from shipyard.cli._pipelines import pipelines_app  # noqa: E402
from shipyard.cli._quotas import quotas_app  # noqa: E402
from shipyard.cli._users import keys_app, users_app, whoami  # noqa: E402

app.command()(train)
app.command()(tune)
app.add_typer(jobs_app, name="jobs")
app.add_typer(pipelines_app, name="pipelines")
app.add_typer(endpoints_app, name="endpoints")
app.command("instance-types")(instance_types)
app.command()(cost)
app.add_typer(budgets_app, name="budgets")
app.add_typer(quotas_app, name="quotas")
app.command()(alerts)
app.command()(waste)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.command()(whoami)


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks (also SHIPYARD_DEBUG=1)")] = False,
) -> None:
    import os

    if debug:
        os.environ["SHIPYARD_DEBUG"] = "1"


DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Where Shipyard keeps its state [env: SHIPYARD_HOME; default: ~/.shipyard]"
    ),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="SQLAlchemy URL of the metadata database [default: SQLite in the data dir]"
    ),
]


def _settings(**overrides: object) -> Settings:

    return Settings.load(overrides)


@app.command()
def server(
    host: Annotated[str | None, typer.Option(help="Address to bind [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [default: 8300]")] = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error")] = None,
    backend: Annotated[
        str | None, typer.Option(help="Where jobs and endpoints run: local, ray or slurm [default: local]")
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(help="The Ray cluster (host:port, or ray://host:10001); its token from $RAY_AUTH_TOKEN"),
    ] = None,
) -> None:
    """Run the Shipyard server until interrupted (Ctrl-C or SIGTERM)."""
    from shipyard.server import run

    run(
        _settings(
            host=host,
            port=port,
            data_dir=data_dir,
            database_url=database_url,
            log_level=log_level,
            backend=backend,
            ray_address=ray_address,
        )
    )


@db_app.command("upgrade")
def db_upgrade(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Bring the database schema to the newest version (the server also does this at start)."""
    from shipyard.store import Database

    settings = _settings(data_dir=data_dir, database_url=database_url)
    db = Database(settings.database_url)
    try:
        before = db.current_revision()
        db.upgrade()
        after = db.current_revision()
    finally:
        db.dispose()
    if before == after:
        typer.echo(f"Database is up to date (revision {after}).")
    else:
        typer.echo(f"Database upgraded from {before or 'empty'} to revision {after}.")


def _env_cache(data_dir: Path | None) -> EnvironmentCache:
    return EnvironmentCache(_settings(data_dir=data_dir).environments_dir)


@envs_app.command("list")
def envs_list(
    data_dir: DataDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per environment")] = False,
) -> None:
    """The cached environments: size, last use, how many jobs used them."""
    import json

    from rich.console import Console
    from rich.table import Table

    envs = _env_cache(data_dir).environments()
    if as_json:
        for env in envs:
            typer.echo(
                json.dumps(
                    {
                        "key": env.key,
                        "name": env.name,
                        "path": str(env.path),
                        "size_bytes": env.size_bytes,
                        "created": env.created.isoformat(),
                        "last_used": env.last_used.isoformat(),
                        "jobs": env.jobs,
                    }
                )
            )
        return
    table = Table("key", "environment", "size", "last used", "jobs")
    for env in envs:
        table.add_row(
            env.key,
            env.name,
            f"{env.size_bytes / 2**20:.0f} MiB",
            f"{env.last_used:%Y-%m-%d %H:%M}",
            str(env.jobs),
        )
    Console().print(table if envs else "No environments built yet.")


@envs_app.command("prune")
def envs_prune(
    data_dir: DataDir = None,
    unused_days: Annotated[
        float, typer.Option(help="Remove environments no job used for this many days")
    ] = 7.0,
) -> None:
    """Remove environments not used lately (never one a running job uses)."""
    import datetime as dt

    removed = _env_cache(data_dir).prune(unused_for=dt.timedelta(days=unused_days))
    freed = sum(env.size_bytes for env in removed)
    typer.echo(f"Removed {len(removed)} environment(s), {freed / 2**20:.0f} MiB freed.")


@app.command()
def demo(
    data_dir: DataDir = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="Port of the server it starts [env: SHIPYARD_PORT; default: 8300, else a free one]"
        ),
    ] = None,
) -> None:
    """The quickstart: train, tune, deploy and score on the embedded server (started if needed)."""
    import os

    from shipyard.cli._demo import run_demo
    from shipyard.sdk._connection import running_server

    if port is not None:
        running = running_server(data_dir)
        if running is not None and not running.endswith(f":{port}"):
            raise ConfigurationError(
                f"A server already runs on this data dir at {running}, not on port {port}: "
                "stop it (shipyard stop) or leave --port out"
            )
        os.environ["SHIPYARD_PORT"] = str(port)
    run_demo(data_dir)


@app.command()
def stop(data_dir: DataDir = None) -> None:
    """Stop the embedded server on the data dir (the one `shipyard demo` and the SDK start)."""
    from shipyard.sdk._connection import stop_embedded

    url = stop_embedded(data_dir)
    typer.echo(f"Stopped the server at {url}" if url else "No server was running.")


@app.command()
def version() -> None:
    """Print Shipyard's version."""
    typer.echo(shipyard.__version__)


def main() -> None:
    """Console-script entry point: errors as one readable line (a traceback with --debug)."""
    import os

    try:
        app()
    except ShipyardError as exc:
        if os.environ.get("SHIPYARD_DEBUG"):
            raise
        typer.secho(f"Error: {exc.message}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except Exception as exc:  # the server's answer (botocore's ClientError and the like)
        import httpx
        from botocore.exceptions import BotoCoreError, ClientError

        if os.environ.get("SHIPYARD_DEBUG") or not isinstance(
            exc, ClientError | BotoCoreError | httpx.HTTPError
        ):
            raise
        message = str(exc)
        if isinstance(exc, ClientError):  # the server's own words, without botocore's frame
            message = exc.response.get("Error", {}).get("Message") or message
        if isinstance(exc, httpx.HTTPStatusError):
            try:
                message = exc.response.json()["message"]
            except (ValueError, KeyError, TypeError):
                message = f"{exc.response.status_code} from {exc.request.url}"
        typer.secho(f"Error: {message}", fg=typer.colors.RED, err=True)
        sys.exit(1)


@app.command("sagemaker-env")
def sagemaker_env(
    url: Annotated[
        str | None, typer.Option("--url", help="The server [env: SHIPYARD_URL; default: the embedded one]")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Print the shell exports that point boto3 and the sagemaker SDK at Shipyard.

    Use: eval "$(shipyard sagemaker-env)". In Python, `import shipyard.connector` also takes out
    the SDK's 5-30 s waits between looks at a job (docs/sagemaker-notebooks.md says what it
    patches)."""
    import shlex

    from shipyard.sdk import connect
    from shipyard.sdk._connection import SAGEMAKER_SDK_CONFIG, _data_dir

    connection = connect(url, data_dir=data_dir) if (url or data_dir) else connect()
    folder = _data_dir(data_dir)
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "sagemaker-config.yaml"
    # The user's own bucket, made (or found to be theirs) now: never one another user made first.
    config.write_text(SAGEMAKER_SDK_CONFIG.format(bucket=connection.bucket))
    exports = {
        "AWS_ENDPOINT_URL": connection.url,
        "AWS_ACCESS_KEY_ID": connection.access_key_id,
        "AWS_SECRET_ACCESS_KEY": connection.secret_access_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config),
    }
    if connection.credentials.session_token:
        exports["AWS_SESSION_TOKEN"] = connection.credentials.session_token
    for name, value in exports.items():
        typer.echo(f"export {name}={shlex.quote(value)}")
