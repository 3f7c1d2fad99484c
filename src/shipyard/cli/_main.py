"""``shipyard``: the command-line entry point (Typer)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

import shipyard
from shipyard.config import Settings
from shipyard.errors import ShipyardError

app = typer.Typer(
    name="shipyard",
    help="Shipyard: train, tune and serve models on your own machines, with the SageMaker API.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="The metadata database.", no_args_is_help=True)
app.add_typer(db_app, name="db")

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
) -> None:
    """Run the Shipyard server until interrupted (Ctrl-C or SIGTERM)."""
    from shipyard.server import run

    run(_settings(host=host, port=port, data_dir=data_dir, database_url=database_url, log_level=log_level))


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


@app.command()
def demo(data_dir: DataDir = None) -> None:
    """The quickstart: start a server on the embedded default, use it, and stop it."""
    from shipyard.cli._demo import run_demo

    run_demo(_settings(data_dir=data_dir))


@app.command()
def version() -> None:
    """Print Shipyard's version."""
    typer.echo(shipyard.__version__)


def main() -> None:
    """Console-script entry point: errors as one readable line (traceback with SHIPYARD_DEBUG=1)."""
    import os

    try:
        app()
    except ShipyardError as exc:
        if os.environ.get("SHIPYARD_DEBUG"):
            raise
        typer.secho(f"Error: {exc.message}", fg=typer.colors.RED, err=True)
        sys.exit(1)
