"""``shipyard demo``: the quickstart, with Shipyard's own SDK on the embedded default server.

It connects to the embedded server (starting it in the background when it is not running), then
does what a researcher does: trains an XGBoost script on the Titanic passenger lists, tunes it
(8 trials, 2 at a time), deploys the best model, scores the held-out passengers and shows what
it all cost. The server keeps running with the history and the endpoint (one, ``titanic``,
replaced by each run), for the console at /ui, ``shipyard jobs`` and the API; ``shipyard stop``
stops it.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import time
from importlib import resources
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from rich.console import Console
from rich.table import Table

import shipyard
from shipyard.errors import ShipyardError

METRIC = "validation:accuracy"
ENDPOINT = "titanic"


def _quickstart() -> Any:
    return resources.files("shipyard.cli") / "quickstart"


def _passengers(path: Path) -> list[dict[str, Any]]:
    """The held-out passengers as JSON records: numbers as numbers, blanks as missing."""
    records = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            record: dict[str, Any] = {}
            for key, value in row.items():
                try:
                    record[key] = float(value) if value != "" else None
                except ValueError:
                    record[key] = value
            records.append(record)
    return records


def _rows(table: Any) -> list[dict[str, Any]]:
    return list(table.to_dict("records")) if hasattr(table, "to_dict") else list(table)


def run_demo(data_dir: Path | None = None) -> None:
    console = Console(highlight=False, soft_wrap=True)
    started = time.monotonic()
    since = dt.datetime.now(dt.UTC)
    connection = shipyard.connect(data_dir=data_dir) if data_dir else shipyard.connect()
    console.print(
        f"[bold]Shipyard quickstart[/] — server {connection.url} ({time.monotonic() - started:.1f} s)"
    )
    with resources.as_file(_quickstart()) as folder:
        code, data = folder / "code", folder / "data"
        inputs = {"train": data / "titanic_train.csv", "validation": data / "titanic_test.csv"}
        estimator = shipyard.Estimator(
            code / "titanic.py",
            framework="xgboost",
            hyperparameters={"num-round": 50, "max-depth": 4, "eta": 0.1},
            metrics={METRIC: r"validation-accuracy=([0-9.]+)"},
            max_run=600,
            tags={"Project": "quickstart", "Purpose": "demo"},
            connection=connection,
        )

        console.print("\n[bold]1. Train[/] an XGBoost script (the first run builds its environment) …")
        job = estimator.fit(inputs)
        if job.status != "Completed":
            raise ShipyardError(f"Training job {job.name} {job.status}: {job.failure_reason}")
        console.print(f"   held-out accuracy {job.final_metrics[METRIC]:.3f}")

        console.print("\n[bold]2. Tune[/] it: 8 trials, 2 at a time, Bayesian search …")
        tuner = shipyard.Tuner(
            estimator,
            objective=METRIC,
            params={
                "num-round": shipyard.integer(20, 200, log=True),
                "max-depth": shipyard.integer(2, 8),
                "eta": shipyard.loguniform(0.02, 0.5),
                "min-child-weight": shipyard.uniform(0.5, 8.0),
                "subsample": shipyard.uniform(0.6, 1.0),
            },
            max_trials=8,
            parallel=2,
            seed=0,
        )
        tuning = tuner.fit(inputs)
        best = tuning.best_job
        if tuning.status != "Completed" or best is None:
            raise ShipyardError(
                f"Tuning job {tuning.name} {tuning.status}: {tuning.describe().get('FailureReason')}"
            )
        board = tuning.leaderboard()
        rows = _rows(board)
        table = Table("trial", "accuracy", *tuner.params, title="best trials")
        for row in rows[:3]:
            table.add_row(
                str(row["trial"]), f"{row['objective']:.3f}", *(f"{float(row[k]):.3g}" for k in tuner.params)
            )
        console.print(table)
        console.print(f"   best: {best.name}, held-out accuracy {tuning.best_value:.3f}")

        console.print("\n[bold]3. Deploy[/] the best model and score the held-out passengers …")
        with contextlib.suppress(ShipyardError, ClientError):  # the last run's: this one replaces it
            shipyard.Endpoint(ENDPOINT, connection).delete()
        endpoint = best.deploy(name=ENDPOINT)
        try:
            passengers = _passengers(data / "titanic_test.csv")
            asked = time.perf_counter()
            chances = endpoint.predict(passengers)
            took = (time.perf_counter() - asked) * 1000
            right = sum((c > 0.5) == bool(p["Survived"]) for c, p in zip(chances, passengers, strict=True))
            console.print(
                f"   accuracy {right / len(passengers):.3f} on {len(passengers)} passengers "
                f"({took:.0f} ms for all of them in one request)"
            )
            for passenger, chance in list(zip(passengers, chances, strict=True))[:3]:
                fate = "survived" if passenger["Survived"] else "died"
                console.print(f"     {passenger['Name'][:40]:40} survival {chance:6.1%}  ({fate})")
        except BaseException:
            endpoint.delete()  # a failed demo leaves nothing serving
            raise
        console.print(
            f"   endpoint {endpoint.name} keeps serving, for the console (delete it: shipyard endpoints delete "
            f"{endpoint.name})"
        )

    console.print("\n[bold]4. What it cost[/], from the ledger (tagged Project=quickstart, this run):")
    spent = [
        r
        for r in _rows(shipyard.costs(["tag:Project", "kind"], since=since, connection=connection))
        if r["tag:Project"] == "quickstart"
    ]
    costs = Table("work", "instance-seconds", "cost (USD)", "on SageMaker (USD)")
    for row in sorted(spent, key=lambda r: str(r["kind"])):
        costs.add_row(
            str(row["kind"]),
            f"{row['unit_seconds']:.1f}",
            f"{row['cost_usd']:.6f}",
            f"{row['sagemaker_cost_usd']:.6f}",
        )
    costs.add_row(
        "[bold]total[/]",
        "",
        f"[bold]{sum(r['cost_usd'] for r in spent):.6f}[/]",
        f"[bold]{sum(r['sagemaker_cost_usd'] for r in spent):.6f}[/]",
    )
    console.print(costs)

    console.print(
        f"\n[green]Quickstart complete[/] in {time.monotonic() - started:.0f} s. Where to look next:"
    )
    for what, command in (
        ("the console", f"{connection.url}/ui"),
        ("the jobs you just ran", "shipyard jobs list"),
        ("the best trial's log", f"shipyard jobs logs {best.name}"),
        ("its learning curve", f"shipyard jobs metrics {best.name}"),
        ("the native API", f"{connection.url}/api/v1/docs"),
        ("your SageMaker code here", 'eval "$(shipyard sagemaker-env)"'),
        ("the guide", "docs/quickstart.md"),
        ("stop the server", "shipyard stop  (it keeps running, with this history)"),
    ):
        console.print(f"   {what:26}[cyan]{command}[/]")  # soft wrap: a command stays whole to be copied
