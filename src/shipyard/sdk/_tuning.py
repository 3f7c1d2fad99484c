"""Hyperparameter tuning without AWS notions::

    tuner = shipyard.Tuner(
        estimator,
        objective="validation:auc",
        params={"max_depth": shipyard.integer(2, 8), "eta": shipyard.loguniform(0.01, 0.3)},
        max_trials=8,
        parallel=2,
    )
    result = tuner.fit({"train": "train.csv", "validation": "valid.csv"})
    result.best_params, result.leaderboard(), result.best_job.deploy()

Each trial is a training job of ``estimator`` with the sampled values added to its
hyperparameters; the server runs the search (SageMaker's tuning API, Optuna's samplers).
"""

from __future__ import annotations

import dataclasses
import html
import time
from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.errors import ValidationError
from shipyard.sdk._connection import Connection, connect
from shipyard.sdk._jobs import announce
from shipyard.sdk._progress import Progress
from shipyard.sdk._training import Estimator, Inputs, TrainingJob, unique_name

_STRATEGIES = {"bayesian": "Bayesian", "random": "Random", "grid": "Grid", "hyperband": "Hyperband"}


@dataclasses.dataclass(frozen=True)
class Range:
    """Where a hyperparameter is searched: made by :func:`integer`, :func:`uniform`,
    :func:`loguniform` or :func:`choice`."""

    kind: str  # "Integer", "Continuous" or "Categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    values: tuple[Any, ...] = ()

    def to_api(self, name: str) -> dict[str, Any]:
        if self.kind == "Categorical":
            return {"Name": name, "Values": [str(v) for v in self.values]}
        return {
            "Name": name,
            "MinValue": str(self.low),
            "MaxValue": str(self.high),
            "ScalingType": "Logarithmic" if self.log else "Linear",
        }


def _bounds(low: float, high: float, log: bool) -> None:
    if not low < high:
        raise ValidationError(
            f"The range's low {low!r} must be below its high {high!r}", field="low", value=low
        )
    if log and low <= 0:
        raise ValidationError(
            f"A log-scaled range must start above 0, not at {low!r}", field="low", value=low
        )


def integer(low: int, high: int, *, log: bool = False) -> Range:
    """Whole numbers from ``low`` to ``high``, both included (``log``: searched on a log scale)."""
    _bounds(low, high, log)
    return Range("Integer", low, high, log)


def uniform(low: float, high: float) -> Range:
    """Real numbers between ``low`` and ``high``, on a linear scale."""
    _bounds(low, high, False)
    return Range("Continuous", low, high)


def loguniform(low: float, high: float) -> Range:
    """Real numbers between ``low`` and ``high``, on a log scale (learning rates, regularization)."""
    _bounds(low, high, True)
    return Range("Continuous", low, high, log=True)


def choice(*values: Any) -> Range:
    """One of ``values`` (passed to the script as strings)."""
    if not values:
        raise ValidationError("choice() needs at least one value", field="values", value=[])
    return Range("Categorical", values=tuple(values))


class Tuner:
    """A search over an estimator's hyperparameters for the best value of one of its metrics.

    Args:
        estimator: What each trial trains.
        objective: The metric to optimize: one of the estimator's ``metrics``.
        params: Hyperparameter name → :class:`Range`.
        maximize: False to minimize the objective (a loss).
        max_trials: How many training jobs in all.
        parallel: How many at once.
        strategy: ``"bayesian"`` (default), ``"random"``, ``"grid"`` or ``"hyperband"``.
        early_stopping: Stop trials whose curve is worse than the median of earlier ones.
        seed: Makes the sampled values repeatable.
    """

    def __init__(
        self,
        estimator: Estimator,
        *,
        objective: str,
        params: Mapping[str, Range],
        maximize: bool = True,
        max_trials: int = 10,
        parallel: int = 1,
        strategy: str = "bayesian",
        early_stopping: bool = False,
        seed: int | None = None,
    ) -> None:
        if estimator.metrics and objective not in estimator.metrics:
            raise ValidationError(
                f"objective {objective!r} is not one of the estimator's metrics "
                f"({', '.join(estimator.metrics)})",
                field="objective",
                value=objective,
            )
        if not params:
            raise ValidationError(
                "params is empty: name at least one hyperparameter to search", field="params"
            )
        for name, given in params.items():
            if not isinstance(given, Range):
                raise ValidationError(
                    f"params[{name!r}] is {given!r}, not a range: use shipyard.integer, uniform, "
                    "loguniform or choice",
                    field=f"params.{name}",
                    value=repr(given),
                )
        if strategy.lower() not in _STRATEGIES:
            raise ValidationError(
                f"strategy {strategy!r} is not one of {', '.join(_STRATEGIES)}",
                field="strategy",
                value=strategy,
            )
        if not 1 <= parallel <= max_trials:
            raise ValidationError(
                f"parallel {parallel} must be between 1 and max_trials ({max_trials})",
                field="parallel",
                value=parallel,
            )
        self.estimator = estimator
        self.objective = objective
        self.params = dict(params)
        self.maximize = maximize
        self.max_trials = max_trials
        self.parallel = parallel
        self.strategy = _STRATEGIES[strategy.lower()]
        self.early_stopping = early_stopping
        self.seed = seed

    def fit(
        self, inputs: Inputs = None, *, name: str | None = None, wait: bool = True, show: bool = True
    ) -> TuningJob:
        """Start the search on ``inputs`` (as for :meth:`Estimator.fit`); with ``wait``, return
        when it ends, showing trials done, running and the best so far."""
        connection = self.estimator.connection
        definition = self.estimator.definition(inputs, connection=connection)
        static = {k: v for k, v in definition.pop("HyperParameters").items() if k not in self.params}
        definition["StaticHyperParameters"] = static
        ranges: dict[str, list[dict[str, Any]]] = {}
        for key, given in self.params.items():
            ranges.setdefault(f"{given.kind}ParameterRanges", []).append(given.to_api(key))
        config: dict[str, Any] = {
            "Strategy": self.strategy,
            "HyperParameterTuningJobObjective": {
                "Type": "Maximize" if self.maximize else "Minimize",
                "MetricName": self.objective,
            },
            "ResourceLimits": {
                "MaxNumberOfTrainingJobs": self.max_trials,
                "MaxParallelTrainingJobs": self.parallel,
            },
            "ParameterRanges": ranges,
            "TrainingJobEarlyStoppingType": "Auto" if self.early_stopping else "Off",
        }
        if self.seed is not None:
            config["RandomSeed"] = self.seed
        job_name = name or unique_name(self.estimator.entry_point.stem, limit=32)
        request = {
            "HyperParameterTuningJobName": job_name,
            "HyperParameterTuningJobConfig": config,
            "TrainingJobDefinition": definition,
            "Tags": [{"Key": k, "Value": v} for k, v in self.estimator.tags.items()],
        }
        announce(connection, "tuning", request, f"Tuning job {job_name}", show=show)
        connection.client("sagemaker").create_hyper_parameter_tuning_job(**request)
        job = TuningJob(job_name, connection)
        if wait:
            job.wait(show=show)
        return job


class TuningJob:
    """A tuning job on the server: its trials, the best of them, what it all cost."""

    def __init__(self, name: str, connection: Connection | None = None) -> None:
        self.name = name
        self.connection = connection or connect()

    def describe(self) -> dict[str, Any]:
        """The SageMaker DescribeHyperParameterTuningJob answer."""
        sm = self.connection.client("sagemaker")
        answer = dict(sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=self.name))
        answer.pop("ResponseMetadata", None)
        return answer

    @property
    def status(self) -> str:
        """InProgress, Completed, Failed, Stopping or Stopped."""
        return str(self.describe()["HyperParameterTuningJobStatus"])

    def wait(self, *, show: bool = True, poll: float = 0.3) -> TuningJob:
        """Until the search ends, showing trials done, running and the best value so far."""
        if show and (note := self.connection.native(f"tuning-jobs/{self.name}").get("parallel_note")):
            print(f"Tuning job {self.name}: {note}", flush=True)
        with Progress(f"Tuning job {self.name}", show=show) as progress:
            while True:
                described = self.describe()
                status = described["HyperParameterTuningJobStatus"]
                counts = described.get("TrainingJobStatusCounters", {})
                done = sum(counts.get(k, 0) for k in ("Completed", "NonRetryableError", "Stopped"))
                limit = described["HyperParameterTuningJobConfig"]["ResourceLimits"][
                    "MaxNumberOfTrainingJobs"
                ]
                best = described.get("BestTrainingJob", {}).get("FinalHyperParameterTuningJobObjectiveMetric")
                text = f"{done}/{limit} trials done, {counts.get('InProgress', 0)} running" + (
                    f", best {best['MetricName']} {best['Value']:.4g}" if best else ""
                )
                if status not in ("InProgress", "Stopping"):
                    break
                progress.update(text)
                time.sleep(poll)
            reason = described.get("FailureReason")
            progress.done(f"{status} in {progress.elapsed:.1f} s, {text}" + (f": {reason}" if reason else ""))
        return self

    def stop(self) -> None:
        """Stop the search and its running trials."""
        self.connection.client("sagemaker").stop_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=self.name
        )

    def _trials(self) -> dict[str, Any]:
        return dict(self.connection.native(f"tuning-jobs/{self.name}"))

    @property
    def best_job(self) -> TrainingJob | None:
        """The trial with the best objective value (None until one has reported it)."""
        best = self._trials()["best_training_job"]
        return TrainingJob(best, self.connection) if best else None

    @property
    def best_params(self) -> dict[str, str]:
        """The searched hyperparameters' values in the best trial."""
        best = self.describe().get("BestTrainingJob")
        return dict(best["TunedHyperParameters"]) if best else {}

    @property
    def best_value(self) -> float | None:
        """The best trial's objective value (None until one has reported it)."""
        best = self.describe().get("BestTrainingJob")
        return float(best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]) if best else None

    def leaderboard(self) -> Any:
        """Every trial, best first: trial number, training job, status, objective, cost and each
        searched hyperparameter. A pandas DataFrame when pandas is installed, else a list of dicts."""
        found = self._trials()
        maximize = found["objective"]["maximize"]
        rows = [
            {
                "trial": t["number"],
                "training_job": t["training_job"],
                "status": t["status"],
                "objective": t["objective"],
                "cost_usd": float(t["cost_usd"]) if t["cost_usd"] is not None else None,
                **{k: v for k, v in t["hyperparameters"].items() if not k.startswith("sagemaker_")},
            }
            for t in found["trials"]
        ]
        rows.sort(
            key=lambda r: (
                r["objective"] is None,
                -(r["objective"] or 0) if maximize else r["objective"] or 0,
            )
        )
        try:
            import pandas as pd
        except ImportError:
            return rows
        return pd.DataFrame(rows)

    @property
    def cost(self) -> float:
        """What its trials cost, at the catalog's price."""
        return float(self._trials()["cost_usd"])

    def __repr__(self) -> str:
        return f"TuningJob({self.name!r}, status={self.status!r})"

    def _repr_html_(self) -> str:
        board = self.leaderboard()
        rows: Sequence[dict[str, Any]] = board.to_dict("records") if hasattr(board, "to_dict") else board
        head = "".join(f"<th>{html.escape(str(k))}</th>" for k in (rows[0] if rows else {}))
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row.values())
            + "</tr>"
            for row in rows
        )
        return f"<b>TuningJob</b> {html.escape(self.name)} — {html.escape(self.status)}<table><tr>{head}</tr>{body}</table>"
