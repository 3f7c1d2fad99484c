"""``shipyard jobs ...``: training jobs from the terminal (tables for people, ``--json`` for scripts)."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Column, Table

jobs_app = typer.Typer(help="Training jobs: list, describe, logs, metrics, stop.", no_args_is_help=True)

Url = Annotated[
    str | None, typer.Option("--url", help="The server [env: SHIPYARD_URL; default: the embedded one]")
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def _sagemaker(url: str | None) -> Any:
    from shipyard.sdk import connect

    return connect(url).client("sagemaker")


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@jobs_app.command("list")
def list_jobs(
    url: Url = None,
    status: Annotated[
        str | None, typer.Option(help="InProgress, Completed, Failed, Stopping or Stopped")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many, newest first")] = 20,
    as_json: AsJson = False,
) -> None:
    """The newest training jobs."""
    params: dict[str, Any] = {
        "MaxResults": min(limit, 100),
        "SortBy": "CreationTime",
        "SortOrder": "Descending",
    }
    if status:
        params["StatusEquals"] = status
    jobs = _sagemaker(url).list_training_jobs(**params)["TrainingJobSummaries"]
    if as_json:
        print_json(jobs)
        return
    # the name whole (the part that tells two apart is at its end); the other columns give way
    longest = max((len(j["TrainingJobName"]) for j in jobs), default=4)
    table = Table(Column("name", no_wrap=True, min_width=longest), "status", "created", "ended")
    client = _sagemaker(url) if any(j.get("SecondaryStatus") == "Pending" for j in jobs) else None
    for j in jobs:
        ended = j.get("TrainingEndTime")
        status = j["TrainingJobStatus"]
        if client is not None and j.get("SecondaryStatus") == "Pending":  # say why it waits
            described = client.describe_training_job(TrainingJobName=j["TrainingJobName"])
            status += f" (Pending: {waiting_message(described)})"
        table.add_row(
            j["TrainingJobName"],
            status,
            f"{j['CreationTime']:%m-%d %H:%M}",
            f"{ended:%H:%M:%S}" if ended else "",
        )
    Console().print(table)


def waiting_message(job: dict[str, Any]) -> str:
    """Why a Pending job waits: its last transition's StatusMessage."""
    transitions = job.get("SecondaryStatusTransitions") or [{}]
    return str(transitions[-1].get("StatusMessage", ""))


@jobs_app.command("describe")
def describe(name: str, url: Url = None, as_json: AsJson = False) -> None:
    """A training job: status, times and duration, cost, hyperparameters, metrics, model, failure."""
    from shipyard.sdk import connect

    connection = connect(url)
    job = connection.client("sagemaker").describe_training_job(TrainingJobName=name)
    job.pop("ResponseMetadata", None)
    if as_json:
        print_json(job)
        return
    costs = connection.native(f"training-jobs/{name}")
    console = Console(highlight=False)
    console.print(f"[bold]{job['TrainingJobName']}[/]  {job['TrainingJobStatus']} ({job['SecondaryStatus']})")
    if job["SecondaryStatus"] == "Pending":
        console.print(f"  waiting   {waiting_message(job)}", markup=False)
    console.print(f"  image     {job['AlgorithmSpecification'].get('TrainingImage')}")
    console.print(
        f"  resources {job['ResourceConfig']['InstanceCount']} x {job['ResourceConfig']['InstanceType']}"
    )
    console.print(f"  created   {_when(job.get('CreationTime'))}")
    if job.get("TrainingStartTime"):
        console.print(f"  started   {_when(job['TrainingStartTime'])}")
    if job.get("TrainingEndTime"):
        took = (job["TrainingEndTime"] - job["TrainingStartTime"]).total_seconds()
        console.print(f"  ended     {_when(job['TrainingEndTime'])} ({took:.1f} s)")
    running = job["TrainingJobStatus"] in ("InProgress", "Stopping")
    if costs.get("scaled_down"):  # "scaled down to fit this machine: each of ..."
        why, _, what = str(costs["scaled_down"]).partition(": ")
        console.print(f"  granted   {what or why} ({why})" if what else f"  granted   {why}", markup=False)
    billed = f" as {costs['billed_as']}, what it was given" if costs.get("billed_as") else ""
    asked = f" for {job['ResourceConfig']['InstanceType']}" if billed else ""
    console.print(
        f"  cost      ${costs['cost_usd']}{' so far' if running else ''}{billed} "
        f"(on SageMaker ${costs['sagemaker_cost_usd']}{asked})",
        markup=False,
    )
    shown = {k: v for k, v in (job.get("HyperParameters") or {}).items() if not k.startswith("sagemaker_")}
    for key, value in sorted(shown.items()):
        console.print(f"  {key:<24} {value}", markup=False)
    for metric in job.get("FinalMetricDataList", []):
        console.print(f"  {metric['MetricName']:<24} {metric['Value']:g}")
    console.print(f"  model     {job['ModelArtifacts']['S3ModelArtifacts']}")
    if job.get("FailureReason"):
        console.print(f"  [red]failure[/]   {job['FailureReason']}")


def _when(moment: Any) -> str:
    """A time as the user's clock shows it, to the second."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z") if moment else "-"


@jobs_app.command("logs")
def logs(
    name: str,
    url: Url = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends")] = False,
) -> None:
    """A training job's output."""
    from shipyard.sdk import TrainingJob, connect

    job = TrainingJob(name, connect(url))
    job.describe()  # a clear error for a job that does not exist
    printed = 0
    while True:
        status = job.status
        lines = list(job.log_lines())
        for line in lines[printed:]:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
        printed = len(lines)
        if not follow or status in ("Completed", "Failed", "Stopped"):
            return
        time.sleep(0.5)


@jobs_app.command("metrics")
def metrics(name: str, url: Url = None, as_json: AsJson = False) -> None:
    """Every point of every metric the job's definitions matched."""
    from shipyard.sdk import connect

    series = connect(url).native(f"training-jobs/{name}/metrics")["metrics"]
    if as_json:
        print_json(series)
        return
    table = Table("metric", "step", "value", "time")
    for metric, points in series.items():
        for p in points:
            table.add_row(metric, str(p["step"]), f"{p['value']:g}", p["timestamp"][11:19])
    Console().print(table)


@jobs_app.command("stop")
def stop(name: str, url: Url = None) -> None:
    """Ask a running job to stop (SIGTERM to its script, SIGKILL after the grace period)."""
    _sagemaker(url).stop_training_job(TrainingJobName=name)
    typer.echo(f"Stopping {name}")
