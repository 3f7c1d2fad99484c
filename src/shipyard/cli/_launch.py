"""``shipyard train`` and ``shipyard tune``: launch from the terminal, with the SDK underneath.

Both wait and show progress unless ``--detach``; the exit code says how the job ended (0 when it
completed, 1 otherwise), so scripts can trust it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from shipyard.cli._jobs import AsJson, Url, print_json
from shipyard.errors import ValidationError


def _pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """``key=value`` options into a dict (the first ``=`` splits; values may hold more)."""
    found: dict[str, str] = {}
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise ValidationError(f"{option} {value!r} is not key=value", field=option, value=value)
        found[key] = rest
    return found


def _value(text: str) -> Any:
    """A hyperparameter from the command line: a number or JSON value when it reads as one."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def train(
    script: Annotated[Path, typer.Argument(help="The training script")],
    source_dir: Annotated[
        Path | None, typer.Option(help="Folder shipped with the script [default: the script alone]")
    ] = None,
    framework: Annotated[str, typer.Option(help="sklearn, xgboost or pytorch")] = "sklearn",
    framework_version: Annotated[str | None, typer.Option(help="As SageMaker names it, e.g. 1.2-1")] = None,
    image: Annotated[str | None, typer.Option(help="A SageMaker image URI instead of --framework")] = None,
    instance_type: Annotated[str, typer.Option(help="See `shipyard instance-types`")] = "ml.m5.large",
    instance_count: Annotated[int, typer.Option(min=1, help="Instances (each runs the script)")] = 1,
    hyperparameter: Annotated[
        list[str] | None,
        typer.Option(
            "--hp", "-p", help="name=value, passed as --name value, -n value for one letter (repeat)"
        ),
    ] = None,
    metric: Annotated[
        list[str] | None, typer.Option("--metric", "-m", help="name=regex over the log (repeat)")
    ] = None,
    data: Annotated[
        list[str] | None,
        typer.Option(
            "--input", "-i", help="channel=path or channel=s3://... (repeat); a bare path is 'training'"
        ),
    ] = None,
    requirement: Annotated[
        list[str] | None, typer.Option("--requirement", "-r", help="Extra pip package")
    ] = None,
    max_run: Annotated[int, typer.Option(help="Seconds before the job is stopped")] = 24 * 3600,
    tag: Annotated[list[str] | None, typer.Option("--tag", "-t", help="key=value (repeat)")] = None,
    name: Annotated[str | None, typer.Option(help="The job's name [default: made from the script's]")] = None,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Start it and return")] = False,
    url: Url = None,
    as_json: AsJson = False,
) -> None:
    """Train SCRIPT as a job: its log as it runs, then its metrics, model and cost."""
    from shipyard.sdk import Estimator, connect

    inputs: dict[str, str] = {}
    for given in data or []:
        channel, sep, where = given.partition("=")
        if not sep or "/" in channel or channel.startswith("s3:"):
            channel, where = "training", given  # a bare path or URI
        inputs[channel] = where
    estimator = Estimator(
        script,
        source_dir=source_dir,
        framework=framework,
        framework_version=framework_version,
        image=image,
        instance_type=instance_type,
        instance_count=instance_count,
        hyperparameters={k: _value(v) for k, v in _pairs(hyperparameter, "--hp").items()},
        metrics=_pairs(metric, "--metric"),
        max_run=max_run,
        requirements=requirement or [],
        tags=_pairs(tag, "--tag"),
        connection=connect(url),
    )
    job = estimator.fit(inputs or None, name=name, wait=not detach, logs=not as_json, show=not as_json)
    if detach:
        typer.echo(job.name)
        return
    described = job.describe()
    summary = {
        "name": job.name,
        "status": described["TrainingJobStatus"],
        "failure_reason": described.get("FailureReason"),
        "metrics": job.final_metrics,
        "model": described.get("ModelArtifacts", {}).get("S3ModelArtifacts"),
        "cost_usd": job.cost,
    }
    if as_json:
        print_json(summary)
    else:
        console = Console(highlight=False)
        for key, value in summary["metrics"].items():
            console.print(f"  {key:<24} {value:g}")
        if summary["model"]:
            console.print(f"  model     {summary['model']}")
        if summary["cost_usd"] is not None:
            console.print(f"  cost      ${summary['cost_usd']:.6f}")
    if summary["status"] != "Completed":
        raise typer.Exit(1)


_SPEC_KEYS = {
    "script": "the training script (required)",
    "source_dir": "folder shipped with it",
    "framework": "sklearn, xgboost or pytorch",
    "framework_version": "",
    "image": "",
    "instance_type": "",
    "instance_count": "",
    "hyperparameters": "fixed hyperparameters",
    "metrics": "name: regex",
    "requirements": "extra pip packages",
    "max_run": "",
    "tags": "",
    "inputs": "channel: path or s3:// URI",
    "objective": "the metric to optimize (required)",
    "maximize": "true (default) or false",
    "params": "name: {integer|uniform|loguniform: [low, high]} or {choice: [...]} (required)",
    "max_trials": "",
    "parallel": "",
    "strategy": "bayesian, random, grid or hyperband",
    "early_stopping": "",
    "seed": "",
    "name": "",
}


def _load_spec(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValidationError(
            f"Cannot read the tuning spec {str(path)!r}: {exc.strerror}", field="spec"
        ) from None
    import yaml

    try:
        spec = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ValidationError(f"The tuning spec {str(path)!r} does not parse: {exc}", field="spec") from None
    if not isinstance(spec, Mapping):
        raise ValidationError(f"The tuning spec {str(path)!r} must be a mapping of settings", field="spec")
    unknown = sorted(set(spec) - set(_SPEC_KEYS))
    if unknown:
        raise ValidationError(
            f"Unknown setting {unknown[0]!r} in {str(path)!r} (known: {', '.join(_SPEC_KEYS)})",
            field=unknown[0],
            value=spec[unknown[0]],
        )
    for required in ("script", "objective", "params"):
        if required not in spec:
            raise ValidationError(f"The tuning spec {str(path)!r} has no {required!r}", field=required)
    return dict(spec)


_NUMBERS = {"instance_count": 1, "max_run": 24 * 3600, "max_trials": 10, "parallel": 1, "seed": None}
_FLAGS = {"maximize": True, "early_stopping": False}


def _spec_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec's counts, run time and seed as whole numbers (``seed`` may be left out) and its
    switches as true or false; anything else is refused naming the setting."""
    settings: dict[str, Any] = {}
    for name, default in _NUMBERS.items():
        value = spec.get(name, default)
        if (value is not None or name != "seed") and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValidationError(
                f"{name} must be a whole number, not {value!r}", field=name, value=repr(value)
            )
        settings[name] = value
    for name, default in _FLAGS.items():
        value = spec.get(name, default)
        if not isinstance(value, bool):
            raise ValidationError(
                f"{name} must be true or false, not {value!r}", field=name, value=repr(value)
            )
        settings[name] = value
    return settings


def _range(name: str, given: Any) -> Any:
    import shipyard

    helpers = {
        "integer": shipyard.integer,
        "uniform": shipyard.uniform,
        "loguniform": shipyard.loguniform,
        "choice": shipyard.choice,
    }
    if not isinstance(given, Mapping) or len(given) != 1 or next(iter(given)) not in helpers:
        raise ValidationError(
            f"params.{name} is {given!r}: write {{integer: [low, high]}}, {{uniform: [low, high]}}, "
            "{loguniform: [low, high]} or {choice: [a, b, ...]}",
            field=f"params.{name}",
            value=repr(given),
        )
    kind, values = next(iter(given.items()))
    if not isinstance(values, list):
        raise ValidationError(f"params.{name}.{kind} must be a list, not {values!r}", field=f"params.{name}")
    if kind != "choice" and len(values) != 2:
        raise ValidationError(
            f"params.{name}.{kind} must be [low, high], not {values!r}",
            field=f"params.{name}",
            value=repr(values),
        )
    return helpers[kind](*values)


def tune(
    spec_file: Annotated[
        Path, typer.Argument(metavar="SPEC", help="YAML or JSON: script, objective, params, ...")
    ],
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Start it and return")] = False,
    url: Url = None,
    as_json: AsJson = False,
) -> None:
    """Tune a script's hyperparameters from a small spec file; prints the leaderboard.

    \b
    script: train.py
    framework: xgboost
    metrics: {validation:auc: "validation-auc=([0-9.]+)"}
    inputs: {train: data/train.csv, validation: data/valid.csv}
    objective: validation:auc
    params:
      max_depth: {integer: [2, 8]}
      eta: {loguniform: [0.01, 0.3]}
    max_trials: 8
    parallel: 2
    """
    from shipyard.sdk import Estimator, Tuner, connect

    spec = _load_spec(spec_file)
    base = spec_file.resolve().parent

    def here(value: Any) -> Any:  # paths in the spec are relative to its folder
        return str(base / value) if value is not None and not str(value).startswith("s3://") else value

    params = spec["params"]
    if not isinstance(params, Mapping) or not params:
        raise ValidationError("params must name at least one hyperparameter to search", field="params")
    settings = _spec_settings(spec)
    estimator = Estimator(
        here(spec["script"]),
        source_dir=here(spec.get("source_dir")),
        framework=spec.get("framework", "sklearn"),
        framework_version=spec.get("framework_version"),
        image=spec.get("image"),
        instance_type=spec.get("instance_type", "ml.m5.large"),
        instance_count=settings["instance_count"],
        hyperparameters=spec.get("hyperparameters") or {},
        metrics=spec.get("metrics") or {},
        max_run=settings["max_run"],
        requirements=spec.get("requirements") or [],
        tags={str(k): str(v) for k, v in (spec.get("tags") or {}).items()},
        connection=connect(url),
    )
    tuner = Tuner(
        estimator,
        objective=str(spec["objective"]),
        params={str(k): _range(str(k), v) for k, v in params.items()},
        maximize=settings["maximize"],
        max_trials=settings["max_trials"],
        parallel=settings["parallel"],
        strategy=str(spec.get("strategy", "bayesian")),
        early_stopping=settings["early_stopping"],
        seed=settings["seed"],
    )
    inputs = {str(k): here(v) for k, v in (spec.get("inputs") or {}).items()}
    job = tuner.fit(inputs or None, name=spec.get("name"), wait=not detach, show=not as_json)
    if detach:
        typer.echo(job.name)
        return
    board = job.leaderboard()
    rows = board.to_dict("records") if hasattr(board, "to_dict") else board
    status = job.status
    if as_json:
        print_json({"name": job.name, "status": status, "best": job.best_params, "trials": rows})
    else:
        columns = list(rows[0]) if rows else []
        table = Table(*columns, title=f"{job.name}: {status}")
        for row in rows:
            table.add_row(
                *("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values())
            )
        Console().print(table)
    if status != "Completed":
        raise typer.Exit(1)
