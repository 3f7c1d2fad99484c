"""``shipyard pipelines ...``: pipelines and their runs from the terminal.

A run is named by its ARN, by ``<pipeline>/<execution id>``, or by the pipeline's name alone (its
newest run).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from shipyard.cli._jobs import AsJson, Url, print_json

pipelines_app = typer.Typer(
    help="Pipelines: list, start, watch, runs, steps, stop, retry.", no_args_is_help=True
)

Run = Annotated[
    str, typer.Argument(help="A run: its ARN, <pipeline>/<execution id>, or a pipeline (its newest run)")
]


def _connection(url: str | None) -> Any:
    from shipyard.sdk import connect

    return connect(url)


def _run(url: str | None, name: str) -> Any:
    from shipyard.sdk import PipelineRun

    connection = _connection(url)
    if name.startswith("arn:"):
        return PipelineRun(name, connection)
    sm = connection.client("sagemaker")
    pipeline, _, execution = name.partition("/")
    if execution:
        arn = sm.describe_pipeline(PipelineName=pipeline)["PipelineArn"]
        return PipelineRun(f"{arn}/execution/{execution}", connection)
    runs = sm.list_pipeline_executions(PipelineName=pipeline, MaxResults=1)["PipelineExecutionSummaries"]
    if not runs:
        raise typer.BadParameter(f"pipeline {pipeline!r} has not run yet", param_hint="RUN")
    return PipelineRun(runs[0]["PipelineExecutionArn"], connection)


def _finish(run: Any) -> None:
    if run.status != "Succeeded":
        raise typer.Exit(1)


@pipelines_app.command("list")
def list_pipelines(url: Url = None, as_json: AsJson = False) -> None:
    """Every pipeline, newest first."""
    from shipyard.sdk import pipelines

    found = pipelines(_connection(url))
    if as_json:
        print_json(found)
        return
    table = Table("name", "created", "last run", "description")
    for p in found:
        last = p.get("last_run")
        table.add_row(
            p["name"],
            f"{p['created']:%Y-%m-%d %H:%M}",
            f"{last:%Y-%m-%d %H:%M}" if last else "",
            p.get("description") or "",
        )
    Console().print(table)


@pipelines_app.command()
def start(
    name: Annotated[str, typer.Argument(help="The pipeline")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE, overriding a parameter's default")
    ] = None,
    wait: Annotated[bool, typer.Option(help="Watch the run to its end (exit 1 unless it succeeds)")] = True,
    url: Url = None,
) -> None:
    """Start a run of a pipeline."""
    from shipyard.sdk import Pipeline

    values: dict[str, str] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--param")
        values[key] = value
    run = Pipeline(name, connection=_connection(url)).start(**values)
    typer.echo(run.arn)
    if wait:
        _finish(run.wait())


@pipelines_app.command()
def watch(run: Run, url: Url = None) -> None:
    """Follow a run to its end, step by step (exit 1 unless it succeeds)."""
    _finish(_run(url, run).wait())


@pipelines_app.command()
def runs(
    name: Annotated[str, typer.Argument(help="The pipeline")],
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 20,
    url: Url = None,
    as_json: AsJson = False,
) -> None:
    """A pipeline's runs, newest first."""
    sm = _connection(url).client("sagemaker")
    found = sm.list_pipeline_executions(PipelineName=name, MaxResults=min(limit, 100))[
        "PipelineExecutionSummaries"
    ]
    if as_json:
        print_json(found)
        return
    table = Table("run", "status", "started", "failure")
    for r in found:
        table.add_row(
            f"{name}/{r['PipelineExecutionArn'].rsplit('/', 1)[1]}",
            r["PipelineExecutionStatus"],
            f"{r['StartTime']:%Y-%m-%d %H:%M:%S}",
            (r.get("PipelineExecutionFailureReason") or "").splitlines()[0][:80]
            if r.get("PipelineExecutionFailureReason")
            else "",
        )
    Console().print(table)


@pipelines_app.command()
def steps(run: Run, url: Url = None, as_json: AsJson = False) -> None:
    """A run's steps: status, attempts, the job each ran, its cost, cache hits, failures."""
    from decimal import Decimal

    from shipyard.core.costs import money

    handle = _run(url, run)
    found = handle.steps()
    costs = {s["name"]: s["cost_usd"] for s in handle._native()["steps"]}
    for step in found:
        step["cost_usd"] = costs.get(step["name"])
    if as_json:
        print_json(found)
        return
    table = Table("step", "status", "attempts", "job / outcome", "cost", "note")
    for s in found:
        note = f"cached from {str(s['cached_from']).rsplit('/', 1)[1]}" if s.get("cached_from") else ""
        if s.get("failure"):
            note = str(s["failure"]).splitlines()[0][:80]
        cost = money(Decimal(s["cost_usd"])) if s.get("cost_usd") is not None else ""
        table.add_row(
            s["name"], s["status"], str(s["attempts"]), s.get("job") or s.get("outcome") or "", cost, note
        )
    Console().print(table)


@pipelines_app.command()
def stop(run: Run, url: Url = None) -> None:
    """Stop a run: its running steps' jobs are stopped."""
    _run(url, run).stop()


@pipelines_app.command()
def retry(
    run: Run, wait: Annotated[bool, typer.Option(help="Watch it to its end")] = True, url: Url = None
) -> None:
    """Run a failed or stopped run on: its failed and stopped steps again."""
    found = _run(url, run).retry()
    if wait:
        _finish(found.wait())
