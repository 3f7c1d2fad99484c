"""Hyperparameter tuning jobs: the spec of a search, its ranges, and its trials."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.core.training import TUNING_OBJECTIVE_HP, TrainingJobStatus
from shipyard.errors import ValidationError

_FIELD = "HyperParameterTuningJobConfig"


class Strategy(enum.StrEnum):
    BAYESIAN = "Bayesian"
    RANDOM = "Random"
    GRID = "Grid"
    HYPERBAND = "Hyperband"


# A tuning job moves through the same statuses as a training job (InProgress, Completed, Failed,
# Stopping, Stopped); SageMaker names two enums, one type serves both.
TuningJobStatus = TrainingJobStatus


@dataclasses.dataclass(frozen=True)
class ParameterRange:
    """One tunable hyperparameter: Integer or Continuous between low and high, or Categorical."""

    name: str
    kind: str  # "Integer" | "Continuous" | "Categorical"
    low: float = 0.0
    high: float = 0.0
    values: tuple[str, ...] = ()
    scaling: str = "Auto"  # Auto | Linear | Logarithmic | ReverseLogarithmic

    @property
    def log(self) -> bool:
        return self.scaling == "Logarithmic"

    def format(self, value: Any) -> str:
        """A sampled value as the hyperparameter string a training job receives."""
        if self.kind == "Integer":
            return str(int(value))
        if self.kind == "Continuous":
            return repr(float(value))
        return str(value)

    def grid_values(self) -> list[Any]:
        if self.kind == "Categorical":
            return list(self.values)
        if self.kind == "Integer":
            return list(range(int(self.low), int(self.high) + 1))
        raise ValidationError(
            f"Grid search takes only Categorical and Integer ranges; {self.name!r} is Continuous",
            field=f"{_FIELD}.ParameterRanges.ContinuousParameterRanges",
            value=self.name,
        )


def _number(raw: Any, name: str, which: str) -> float:
    try:
        value = float(json.loads(raw) if isinstance(raw, str) else raw)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{which} of range {name!r} must be a number, got {raw!r}",
            field=f"{_FIELD}.ParameterRanges",
            value=raw,
        ) from None
    if not math.isfinite(value):
        raise ValidationError(
            f"{which} of range {name!r} must be finite, got {raw!r}",
            field=f"{_FIELD}.ParameterRanges",
            value=raw,
        )
    return value


def _categorical_value(raw: str) -> str:
    # The SDK JSON-encodes categorical values ('"gbtree"'); the training job gets the plain value.
    try:
        decoded = json.loads(raw)
    except (TypeError, ValueError):
        return raw
    return decoded if isinstance(decoded, str) else raw


def parse_ranges(raw: Mapping[str, Any], field: str | None = None) -> tuple[ParameterRange, ...]:
    where = field or f"{_FIELD}.ParameterRanges"
    ranges: list[ParameterRange] = []
    for kind, key in (("Integer", "IntegerParameterRanges"), ("Continuous", "ContinuousParameterRanges")):
        for item in raw.get(key, []):
            name = item["Name"]
            low, high = (
                _number(item["MinValue"], name, "MinValue"),
                _number(item["MaxValue"], name, "MaxValue"),
            )
            if kind == "Integer" and not (low.is_integer() and high.is_integer()):
                raise ValidationError(
                    f"Integer range {name!r} needs whole bounds, got {low:g}..{high:g}",
                    field=f"{where}.{key}",
                    value=name,
                )
            if low > high:
                raise ValidationError(
                    f"Range {name!r}: MinValue {low:g} is greater than MaxValue {high:g}",
                    field=f"{where}.{key}",
                    value=name,
                )
            scaling = item.get("ScalingType", "Auto")
            if scaling == "ReverseLogarithmic" and (kind == "Integer" or low < 0 or high >= 1):
                raise ValidationError(
                    f"Range {name!r}: ReverseLogarithmic scaling takes a Continuous range within [0, 1), "
                    f"got {kind} {low:g}..{high:g}",
                    field=f"{where}.{key}.ScalingType",
                    value=scaling,
                )
            if scaling == "Logarithmic" and low <= 0:
                raise ValidationError(
                    f"Range {name!r}: Logarithmic scaling needs MinValue > 0, got {low:g}",
                    field=f"{where}.{key}.ScalingType",
                    value=scaling,
                )
            ranges.append(ParameterRange(name, kind, low, high, scaling=scaling))
    for item in raw.get("CategoricalParameterRanges", []):
        values = tuple(_categorical_value(v) for v in item["Values"])
        ranges.append(ParameterRange(item["Name"], "Categorical", values=values))
    names = [r.name for r in ranges]
    if len(set(names)) != len(names):
        raise ValidationError(
            f"A hyperparameter may appear in one range only: {names}",
            field=f"{where}",
            value=names,
        )
    if not ranges:
        raise ValidationError("ParameterRanges names no hyperparameter to tune", field=where)
    return tuple(ranges)


@dataclasses.dataclass(frozen=True)
class TrainingDefinition:
    """What the trials of one training job definition run, tune and report.

    A tuning job has one (``TrainingJobDefinition``, ``name`` None) or several
    (``TrainingJobDefinitions``, each with its ``DefinitionName``); the search then also chooses
    the definition of each trial.
    """

    name: str | None
    training: Mapping[str, Any]  # the definition's CreateTrainingJob fields
    ranges: tuple[ParameterRange, ...]
    static_hyperparameters: Mapping[str, str]
    resource_config: Mapping[str, Any]
    objective_metric: str

    @classmethod
    def parse(
        cls, raw: Mapping[str, Any], *, field: str, objective_metric: str, ranges: Mapping[str, Any]
    ) -> TrainingDefinition:
        parsed = parse_ranges(
            ranges, field=f"{field}.HyperParameterRanges" if raw.get("DefinitionName") else None
        )
        static = dict(raw.get("StaticHyperParameters") or {})
        clash = sorted(set(static) & {r.name for r in parsed})
        if clash:
            raise ValidationError(
                f"Hyperparameters {clash} are both static and tuned",
                field=f"{field}.StaticHyperParameters",
                value=clash,
            )
        resource_config = raw.get("ResourceConfig")
        if resource_config is None:
            tuning_resources = raw.get("HyperParameterTuningResourceConfig") or {}
            if tuning_resources.get("InstanceConfigs"):
                raise ValidationError(
                    "HyperParameterTuningResourceConfig.InstanceConfigs (several instance types) is not supported "
                    "yet; give InstanceType and InstanceCount",
                    field=f"{field}.HyperParameterTuningResourceConfig.InstanceConfigs",
                )
            resource_config = {
                k: v
                for k, v in tuning_resources.items()
                if k in ("InstanceType", "InstanceCount", "VolumeSizeInGB", "VolumeKmsKeyId")
            }
        if "InstanceType" not in resource_config:
            raise ValidationError(
                f"{field} needs ResourceConfig (or HyperParameterTuningResourceConfig) with InstanceType and "
                "InstanceCount",
                field=f"{field}.ResourceConfig",
            )
        return cls(raw.get("DefinitionName"), raw, parsed, static, resource_config, objective_metric)

    @property
    def trial_static_hyperparameters(self) -> dict[str, str]:
        """The static hyperparameters as SageMaker gives them to each trial and shows them in
        DescribeHyperParameterTuningJob: with ``_tuning_objective_metric`` naming the objective
        (the SDK's attach removes it, built-in algorithms read it). A framework estimator's
        hyperparameters are JSON-encoded, and so is the metric name among them.
        """
        static = dict(self.static_hyperparameters)
        encoded = "sagemaker_program" in static or "sagemaker_estimator_module" in static
        static.setdefault(
            TUNING_OBJECTIVE_HP, json.dumps(self.objective_metric) if encoded else self.objective_metric
        )
        return static


@dataclasses.dataclass(frozen=True)
class Hyperband:
    """Hyperband as asynchronous successive halving in brackets (Li et al. 2020, as Optuna's
    HyperbandPruner runs it), decided from the trials' objective curves alone.

    A trial's resource is the number of objective values it has reported (each regex match is a
    step; for a script, typically one per epoch). Trial ``n`` belongs to a bracket, weighted as
    Hyperband weights them; bracket ``b`` has rungs at ``min_resource * factor**(b + k)`` steps. A
    trial that reaches a rung goes on only if its value there is in the best ``1/factor`` of the
    values that trials of its bracket had reached there before it (the best so far while fewer
    than ``factor`` have): decided once, at the time it got there, so the same curves always give
    the same decisions, however often and whenever (e.g. after a restart) they are looked at.
    """

    min_resource: int
    max_resource: int
    factor: int = 3

    @property
    def brackets(self) -> int:
        count = 1
        while self.min_resource * self.factor**count <= self.max_resource:
            count += 1
        return count

    def bracket_of(self, number: int) -> int:
        """Brackets that stop early get more trials: weights as Hyperband's n_i."""
        top = self.brackets - 1
        weights = [math.ceil((top + 1) / (top - b + 1) * self.factor ** (top - b)) for b in range(top + 1)]
        position = number % sum(weights)
        for bracket, weight in enumerate(weights):
            if position < weight:
                return bracket
            position -= weight
        raise AssertionError("unreachable")

    def rungs(self, bracket: int) -> list[int]:
        steps = []
        k = 0
        while (step := self.min_resource * self.factor ** (bracket + k)) < self.max_resource:
            steps.append(step)
            k += 1
        return steps

    def should_stop(
        self,
        number: int,
        curves: Mapping[int, Sequence[tuple[float, float]]],
        *,
        maximize: bool,
    ) -> bool:
        """Whether trial ``number`` is to stop, given every trial's curve of (value, time) by number."""
        bracket = self.bracket_of(number)
        mine = curves.get(number, ())
        peers = [c for n, c in curves.items() if self.bracket_of(n) == bracket]
        for step in self.rungs(bracket):
            if len(mine) < step:
                return False
            value, reached = mine[step - 1]
            competing = sorted(c[step - 1][0] for c in peers if len(c) >= step and c[step - 1][1] <= reached)
            keep = max(1, len(competing) // self.factor)  # how many go on from this rung
            threshold = competing[-keep] if maximize else competing[keep - 1]
            if (value < threshold) if maximize else (value > threshold):
                return True
        return False


_EPOCH_KEYS = ("epochs", "numepochs", "n-epochs", "n_epochs", "num_epochs")


def _hyperband(config: Mapping[str, Any], definitions: Sequence[TrainingDefinition]) -> Hyperband:
    raw = ((config.get("StrategyConfig") or {}).get("HyperbandStrategyConfig")) or {}
    field = f"{_FIELD}.StrategyConfig.HyperbandStrategyConfig"
    if config.get("TrainingJobEarlyStoppingType", "Off") != "Off":
        raise ValidationError(
            "TrainingJobEarlyStoppingType must be Off with Strategy Hyperband: Hyperband stops trials itself",
            field=f"{_FIELD}.TrainingJobEarlyStoppingType",
            value=config["TrainingJobEarlyStoppingType"],
        )
    low = raw.get("MinResource", 1)
    high = raw.get("MaxResource")
    if high is None:  # as SageMaker does: from the epochs the trials are given
        for definition in definitions:
            for key in _EPOCH_KEYS:
                if key in definition.static_hyperparameters:
                    text = definition.static_hyperparameters[key]
                    try:
                        high = int(json.loads(text) if text.startswith('"') else text)
                    except ValueError:
                        raise ValidationError(
                            f"Static hyperparameter {key}={text!r} is not a whole number of epochs",
                            field=f"{field}.MaxResource",
                            value=text,
                        ) from None
                    break
        if high is None:
            raise ValidationError(
                "Strategy Hyperband needs MaxResource, or a static hyperparameter to infer it from "
                f"({', '.join(_EPOCH_KEYS)})",
                field=f"{field}.MaxResource",
            )
    if not 1 <= low <= high <= 20000:
        raise ValidationError(
            f"Hyperband needs 1 <= MinResource <= MaxResource <= 20000, got {low}..{high}",
            field=field,
            value={"MinResource": low, "MaxResource": high},
        )
    return Hyperband(int(low), int(high))


def _several_definitions(
    several: Sequence[Mapping[str, Any]], config: Mapping[str, Any]
) -> tuple[tuple[TrainingDefinition, ...], Mapping[str, Any]]:
    """TrainingJobDefinitions: each names itself, its objective and its ranges."""
    if not 1 <= len(several) <= 10:
        raise ValidationError(
            f"TrainingJobDefinitions takes 1 to 10 definitions, got {len(several)}",
            field="TrainingJobDefinitions",
            value=len(several),
        )
    if config.get("ParameterRanges"):
        raise ValidationError(
            "With TrainingJobDefinitions, each definition gives its HyperParameterRanges; "
            f"{_FIELD}.ParameterRanges must be left out",
            field=f"{_FIELD}.ParameterRanges",
        )
    definitions = []
    objective: Mapping[str, Any] | None = None
    for index, raw in enumerate(several):
        field = f"TrainingJobDefinitions.{index}"
        name = raw.get("DefinitionName")
        if not name:
            raise ValidationError(
                f"{field}.DefinitionName is required with several definitions",
                field=f"{field}.DefinitionName",
            )
        own = raw.get("TuningObjective") or config.get("HyperParameterTuningJobObjective")
        if own is None:
            raise ValidationError(f"{field}.TuningObjective is required", field=f"{field}.TuningObjective")
        if objective is not None and own["Type"] != objective["Type"]:
            raise ValidationError(
                f"Every definition must {objective['Type']} its objective; {name!r} would {own['Type']} it",
                field=f"{field}.TuningObjective.Type",
                value=own["Type"],
            )
        objective = objective or own
        definitions.append(
            TrainingDefinition.parse(
                raw,
                field=field,
                objective_metric=own["MetricName"],
                ranges=raw.get("HyperParameterRanges") or {},
            )
        )
    names = [d.name for d in definitions]
    if len(set(names)) != len(names):
        raise ValidationError(
            f"DefinitionNames must be unique, got {names}", field="TrainingJobDefinitions", value=names
        )
    assert objective is not None
    return tuple(definitions), objective


@dataclasses.dataclass(frozen=True)
class TuningJobSpec:
    name: str
    strategy: Strategy
    maximize: bool
    max_jobs: int
    max_parallel: int
    max_runtime_seconds: int | None
    definitions: tuple[TrainingDefinition, ...]
    random_seed: int
    target_value: float | None
    early_stopping: bool
    request: Mapping[str, Any]
    warm_start_parents: tuple[str, ...] = ()
    hyperband: Hyperband | None = None

    @classmethod
    def from_request(cls, params: Mapping[str, Any]) -> TuningJobSpec:
        config = params["HyperParameterTuningJobConfig"]
        single = params.get("TrainingJobDefinition")
        several: Sequence[Mapping[str, Any]] = params.get("TrainingJobDefinitions") or []
        if (single is None) == (not several):
            raise ValidationError(
                "Give either TrainingJobDefinition or TrainingJobDefinitions (one of them, not both)",
                field="TrainingJobDefinition",
            )
        warm_start = params.get("WarmStartConfig") or {}
        parents = tuple(
            p["HyperParameterTuningJobName"] for p in warm_start.get("ParentHyperParameterTuningJobs", [])
        )
        strategy = Strategy(config["Strategy"])
        objective = config.get("HyperParameterTuningJobObjective")
        if single is not None:
            objective = objective or single.get("TuningObjective")
            if objective is None:
                raise ValidationError(
                    f"{_FIELD}.HyperParameterTuningJobObjective is required",
                    field=f"{_FIELD}.HyperParameterTuningJobObjective",
                )
            definitions: tuple[TrainingDefinition, ...] = (
                TrainingDefinition.parse(
                    single,
                    field="TrainingJobDefinition",
                    objective_metric=objective["MetricName"],
                    ranges=config.get("ParameterRanges") or single.get("HyperParameterRanges") or {},
                ),
            )
        else:
            definitions, objective = _several_definitions(several, config)
        limits = config["ResourceLimits"]
        max_jobs = limits.get("MaxNumberOfTrainingJobs")
        if strategy == Strategy.GRID:
            size = sum(math.prod(len(r.grid_values()) for r in d.ranges) for d in definitions)
            max_jobs = min(max_jobs or size, size)
        elif max_jobs is None:
            raise ValidationError(
                f"ResourceLimits.MaxNumberOfTrainingJobs is required for {strategy.value}",
                field=f"{_FIELD}.ResourceLimits.MaxNumberOfTrainingJobs",
            )
        criteria = config.get("TuningJobCompletionCriteria") or {}
        name = params["HyperParameterTuningJobName"]
        return cls(
            name=name,
            strategy=strategy,
            maximize=objective["Type"] == "Maximize",
            max_jobs=int(max_jobs),
            max_parallel=int(limits["MaxParallelTrainingJobs"]),
            max_runtime_seconds=limits.get("MaxRuntimeInSeconds"),
            definitions=definitions,
            random_seed=int(config.get("RandomSeed", int(hashlib.sha256(name.encode()).hexdigest()[:6], 16))),
            target_value=criteria.get("TargetObjectiveMetricValue"),
            early_stopping=config.get("TrainingJobEarlyStoppingType", "Off") == "Auto",
            warm_start_parents=parents,
            request=params,
            hyperband=_hyperband(config, definitions) if strategy == Strategy.HYPERBAND else None,
        )

    @property
    def objective_metrics(self) -> list[str]:
        return sorted({d.objective_metric for d in self.definitions})

    def definition(self, name: str | None) -> TrainingDefinition:
        """The definition a trial ran (None: the only one)."""
        for definition in self.definitions:
            if definition.name == name:
                return definition
        return self.definitions[0]

    def trial_name(self, number: int, hyperparameters: Mapping[str, str]) -> str:
        """``<tuning job>-NNN-<8 hex>``, as SageMaker names a tuning job's training jobs."""
        digest = hashlib.sha256(json.dumps(dict(hyperparameters), sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.name}-{number + 1:03d}-{digest}"

    def grid_point(self, number: int) -> tuple[TrainingDefinition, dict[str, Any]]:
        """The ``number``-th point of the grid (Grid strategy): every combination exactly once,
        definition after definition."""
        for definition in self.definitions:
            size = math.prod(len(r.grid_values()) for r in definition.ranges)
            if number < size:
                names = [r.name for r in definition.ranges]
                grids = (r.grid_values() for r in definition.ranges)
                combination = next(itertools.islice(itertools.product(*grids), number, None))
                return definition, dict(zip(names, combination, strict=True))
            number -= size
        raise IndexError("beyond the grid")

    def is_better(self, value: float, than: float | None) -> bool:
        return than is None or (value > than if self.maximize else value < than)

    def reached_target(self, best: float | None) -> bool:
        if best is None or self.target_value is None:
            return False
        return best >= self.target_value if self.maximize else best <= self.target_value


class SamplerKind(enum.StrEnum):
    RANDOM = "Random"
    GP = "GP"  # Optuna's GPSampler: Gaussian process, log expected improvement (q-batch for trials in flight)
    TPE = "TPE"  # Optuna's TPESampler: multivariate, with constant liar


# The Gaussian process pays off on small spaces: its fit grows with the cube of the trials and its
# acquisition search with the dimensions, and it sees only completed trials.
GP_MAX_PARAMETERS = 10
GP_MAX_TRIALS = 300


@dataclasses.dataclass(frozen=True)
class SamplerChoice:
    """The sampler a tuning job searches with, how many random trials it starts with, and why."""

    kind: SamplerKind
    reason: str
    startup_trials: int = 0
    constant_liar: bool = False  # TPE: trials in flight count as a bad result, so parallel ones spread

    def describe(self) -> str:
        names = {
            SamplerKind.RANDOM: "random sampling",
            SamplerKind.GP: "Gaussian-process Bayesian optimization (Optuna GPSampler)",
            SamplerKind.TPE: "multivariate TPE" + (" with constant liar" if self.constant_liar else ""),
        }
        start = f", {self.startup_trials} random trials first" if self.startup_trials else ""
        return f"{names[self.kind]}{start}: {self.reason}"


def choose_sampler(spec: TuningJobSpec, *, gp_available: bool = True) -> SamplerChoice:
    """The sampler for a Random, Bayesian or Hyperband search, from its space and parallelism alone.

    Bayesian takes a Gaussian process (GP) over one definition's ranges when they are at most
    ``GP_MAX_PARAMETERS`` (of any kind: the GP's kernel compares Categorical values by whether
    they are equal), ``MaxNumberOfTrainingJobs`` is at most ``GP_MAX_TRIALS`` and early stopping
    is off, after two random trials per range (at most 10 and a quarter of the trials, less the
    trials launched blind while the first ones run); else multivariate TPE. Hyperband takes TPE (its
    stopped trials inform TPE; a GP sees only completed ones). TPE uses constant liar when trials
    run in parallel; the GP accounts for trials in flight itself (q-batch expected improvement).
    ``gp_available`` says whether the GP's packages (torch, scipy) are installed; without them TPE
    takes its place and the reason says so.
    """
    if spec.strategy == Strategy.GRID:
        raise ValueError("Grid search enumerates its grid; it takes no sampler")
    if spec.strategy == Strategy.RANDOM:
        return SamplerChoice(SamplerKind.RANDOM, "Strategy Random")
    parallel = spec.max_parallel > 1
    # Random trials to start from: enough to fit a model to, few enough to leave most to the model.
    tpe = SamplerChoice(
        SamplerKind.TPE, "", startup_trials=min(10, max(2, spec.max_jobs // 8)), constant_liar=parallel
    )
    ranges = [r for d in spec.definitions for r in d.ranges]
    if spec.strategy == Strategy.HYPERBAND:
        why = "Hyperband's stopped trials inform TPE"
    elif len(spec.definitions) > 1:
        why = "several training job definitions make a conditional space"
    elif spec.early_stopping:
        why = "with early stopping, stopped trials inform TPE"
    elif len(ranges) > GP_MAX_PARAMETERS:
        why = f"{len(ranges)} ranges, more than the {GP_MAX_PARAMETERS} a Gaussian process searches well"
    elif spec.max_jobs > GP_MAX_TRIALS:
        why = f"{spec.max_jobs} trials, more than the {GP_MAX_TRIALS} a Gaussian process fits quickly"
    elif not gp_available:
        why = (
            "Gaussian-process search needs torch and scipy, which are not installed "
            "(pip install torch scipy to use it)"
        )
    else:
        # Two random trials per range (as Ax starts its GP), at most 10 and a quarter of the trials:
        # fewer left the GP stuck on 5 ranges (xgb-cancer), more slowed it on 2 (branin). Trials
        # launched while the first ones still run are random too: with P in flight, P - 1 fewer.
        # Categorical ranges go to the GP too (TPE needed 14 trials sequential and 22 with 4 in
        # flight on the benchmark's mixed space, the GP 9 sequential).
        wanted = min(2 * len(ranges), 10, spec.max_jobs // 4)
        startup = max(2, wanted - (spec.max_parallel - 1))
        return SamplerChoice(
            SamplerKind.GP,
            f"{len(ranges)} ranges, at most the {GP_MAX_PARAMETERS} a Gaussian process searches well",
            startup_trials=startup,
        )
    return dataclasses.replace(tpe, reason=why)


MIN_TRIALS_TO_COMPARE = 3


def should_stop_early(curve: Sequence[float], others: Sequence[Sequence[float]], *, maximize: bool) -> bool:
    """SageMaker's early-stopping rule: stop a training job whose running average of the objective
    up to its current step is worse than the median of the other jobs' running averages up to the
    same step (once enough jobs reached that step)."""
    step = len(curve)
    if step < 2:
        return False
    peers = [sum(o[:step]) / step for o in others if len(o) >= step]
    if len(peers) < MIN_TRIALS_TO_COMPARE:
        return False
    peers.sort()
    middle = len(peers) // 2
    median = peers[middle] if len(peers) % 2 else (peers[middle - 1] + peers[middle]) / 2
    mine = sum(curve) / step
    return mine < median if maximize else mine > median


def objective_value(final_metrics: Sequence[Mapping[str, Any]], metric: str) -> float | None:
    for entry in final_metrics:
        if entry["MetricName"] == metric:
            return float(entry["Value"])
    return None


@dataclasses.dataclass(frozen=True)
class Trial:
    """One training job of a tuning job: its number, its name, the values it was given and the
    definition it ran."""

    number: int
    job: str
    hyperparameters: Mapping[str, str]
    definition: str | None = None  # its DefinitionName, with several TrainingJobDefinitions


@dataclasses.dataclass(frozen=True)
class TuningJob:
    spec: TuningJobSpec
    arn: str
    created: Any  # datetime
    status: TuningJobStatus
    trials: tuple[Trial, ...] = ()
    failure_reason: str | None = None
    end_time: Any = None
    last_modified: Any = None
    completion: str | None = None
    owner: str | None = None  # who created it (its trials are theirs too)

    @property
    def name(self) -> str:
        return self.spec.name


@dataclasses.dataclass(frozen=True)
class TuningPass:
    """What one pass of a tuning job does: stop its running trials, start ``launch`` new ones, or
    end the job (``finish`` with its failure reason or completion reason)."""

    stop_trials: bool = False
    launch: int = 0
    finish: TuningJobStatus | None = None
    failure_reason: str | None = None
    completion: str | None = None


def plan_pass(
    spec: TuningJobSpec,
    *,
    stopping: bool,
    elapsed_seconds: float,
    best: float | None,
    launched: int,
    running: int,
    completed: int,
) -> TuningPass:
    """The pass of a tuning job with ``launched`` trials so far, ``running`` of them not ended and
    ``completed`` of them Completed, whose best objective is ``best``. A stop, MaxRuntimeInSeconds
    or a reached target stops the running trials, then ends the job once none runs; else new
    trials start up to MaxParallelTrainingJobs and MaxNumberOfTrainingJobs; when all were
    launched and all have ended, the job ends: Completed with a best trial, else Failed saying why."""
    out_of_time = spec.max_runtime_seconds is not None and elapsed_seconds > spec.max_runtime_seconds
    reached = spec.reached_target(best)
    if stopping or out_of_time or reached:
        if running:
            return TuningPass(stop_trials=True)
        if stopping:
            return TuningPass(finish=TuningJobStatus.STOPPED)
        why = "ObjectiveMetricValueReached" if reached else "MaxRuntimeExceeded"
        return TuningPass(finish=TuningJobStatus.COMPLETED, completion=why)
    launch = max(0, min(spec.max_jobs - launched, spec.max_parallel - running))
    if launch or launched < spec.max_jobs or running:
        return TuningPass(launch=launch)
    if not completed:
        return TuningPass(
            finish=TuningJobStatus.FAILED,
            failure_reason=f"All {launched} training jobs failed; see their FailureReason",
        )
    if best is None:
        metrics = " or ".join(sorted({repr(d.objective_metric) for d in spec.definitions}))
        return TuningPass(
            finish=TuningJobStatus.FAILED,
            failure_reason=f"No training job reported the objective metric {metrics}",
        )
    return TuningPass(finish=TuningJobStatus.COMPLETED, completion="MaxNumberOfTrainingJobsReached")
