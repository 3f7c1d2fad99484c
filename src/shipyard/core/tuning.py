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

from shipyard.core.training import TrainingJobStatus
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


def parse_ranges(raw: Mapping[str, Any]) -> tuple[ParameterRange, ...]:
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
                    field=f"{_FIELD}.ParameterRanges.{key}",
                    value=name,
                )
            if low > high:
                raise ValidationError(
                    f"Range {name!r}: MinValue {low:g} is greater than MaxValue {high:g}",
                    field=f"{_FIELD}.ParameterRanges.{key}",
                    value=name,
                )
            scaling = item.get("ScalingType", "Auto")
            if scaling == "ReverseLogarithmic" and (kind == "Integer" or low < 0 or high >= 1):
                raise ValidationError(
                    f"Range {name!r}: ReverseLogarithmic scaling takes a Continuous range within [0, 1), "
                    f"got {kind} {low:g}..{high:g}",
                    field=f"{_FIELD}.ParameterRanges.{key}.ScalingType",
                    value=scaling,
                )
            if scaling == "Logarithmic" and low <= 0:
                raise ValidationError(
                    f"Range {name!r}: Logarithmic scaling needs MinValue > 0, got {low:g}",
                    field=f"{_FIELD}.ParameterRanges.{key}.ScalingType",
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
            field=f"{_FIELD}.ParameterRanges",
            value=names,
        )
    if not ranges:
        raise ValidationError(
            "ParameterRanges names no hyperparameter to tune", field=f"{_FIELD}.ParameterRanges"
        )
    return tuple(ranges)


@dataclasses.dataclass(frozen=True)
class TuningJobSpec:
    name: str
    strategy: Strategy
    objective_metric: str
    maximize: bool
    max_jobs: int
    max_parallel: int
    max_runtime_seconds: int | None
    ranges: tuple[ParameterRange, ...]
    static_hyperparameters: Mapping[str, str]
    training: Mapping[str, Any]  # the TrainingJobDefinition: the trials' CreateTrainingJob fields
    resource_config: Mapping[str, Any]
    random_seed: int
    target_value: float | None
    early_stopping: bool
    request: Mapping[str, Any]
    warm_start_parents: tuple[str, ...] = ()

    @classmethod
    def from_request(cls, params: Mapping[str, Any]) -> TuningJobSpec:
        config = params["HyperParameterTuningJobConfig"]
        definition = params.get("TrainingJobDefinition")
        if definition is None:
            raise ValidationError(
                "TrainingJobDefinition is required (several TrainingJobDefinitions are not supported yet)",
                field="TrainingJobDefinition",
            )
        warm_start = params.get("WarmStartConfig") or {}
        parents = tuple(
            p["HyperParameterTuningJobName"] for p in warm_start.get("ParentHyperParameterTuningJobs", [])
        )
        strategy = Strategy(config["Strategy"])
        if strategy == Strategy.HYPERBAND:
            raise ValidationError(
                "Strategy Hyperband is not supported yet; use Bayesian, Random or Grid",
                field=f"{_FIELD}.Strategy",
                value=strategy.value,
            )
        objective = config.get("HyperParameterTuningJobObjective")
        if objective is None:
            raise ValidationError(
                f"{_FIELD}.HyperParameterTuningJobObjective is required",
                field=f"{_FIELD}.HyperParameterTuningJobObjective",
            )
        limits = config["ResourceLimits"]
        ranges = parse_ranges(config.get("ParameterRanges") or definition.get("HyperParameterRanges") or {})
        static = dict(definition.get("StaticHyperParameters") or {})
        clash = sorted(set(static) & {r.name for r in ranges})
        if clash:
            raise ValidationError(
                f"Hyperparameters {clash} are both static and tuned",
                field="TrainingJobDefinition.StaticHyperParameters",
                value=clash,
            )
        max_jobs = limits.get("MaxNumberOfTrainingJobs")
        if strategy == Strategy.GRID:
            size = math.prod(len(r.grid_values()) for r in ranges)
            max_jobs = min(max_jobs or size, size)
        elif max_jobs is None:
            raise ValidationError(
                "ResourceLimits.MaxNumberOfTrainingJobs is required for Bayesian and Random",
                field=f"{_FIELD}.ResourceLimits.MaxNumberOfTrainingJobs",
            )
        criteria = config.get("TuningJobCompletionCriteria") or {}
        resource_config = definition.get("ResourceConfig")
        if resource_config is None:
            tuning_resources = definition.get("HyperParameterTuningResourceConfig") or {}
            if tuning_resources.get("InstanceConfigs"):
                raise ValidationError(
                    "HyperParameterTuningResourceConfig.InstanceConfigs (several instance types) is not supported "
                    "yet; give InstanceType and InstanceCount",
                    field="TrainingJobDefinition.HyperParameterTuningResourceConfig.InstanceConfigs",
                )
            resource_config = {
                k: v
                for k, v in tuning_resources.items()
                if k in ("InstanceType", "InstanceCount", "VolumeSizeInGB", "VolumeKmsKeyId")
            }
        if "InstanceType" not in resource_config:
            raise ValidationError(
                "TrainingJobDefinition needs ResourceConfig (or HyperParameterTuningResourceConfig) with "
                "InstanceType and InstanceCount",
                field="TrainingJobDefinition.ResourceConfig",
            )
        name = params["HyperParameterTuningJobName"]
        return cls(
            name=name,
            strategy=strategy,
            objective_metric=objective["MetricName"],
            maximize=objective["Type"] == "Maximize",
            max_jobs=int(max_jobs),
            max_parallel=int(limits["MaxParallelTrainingJobs"]),
            max_runtime_seconds=limits.get("MaxRuntimeInSeconds"),
            ranges=ranges,
            static_hyperparameters=static,
            training=definition,
            resource_config=resource_config,
            random_seed=int(config.get("RandomSeed", int(hashlib.sha256(name.encode()).hexdigest()[:6], 16))),
            target_value=criteria.get("TargetObjectiveMetricValue"),
            early_stopping=config.get("TrainingJobEarlyStoppingType", "Off") == "Auto",
            warm_start_parents=parents,
            request=params,
        )

    def trial_name(self, number: int, hyperparameters: Mapping[str, str]) -> str:
        """``<tuning job>-NNN-<8 hex>``, as SageMaker names a tuning job's training jobs."""
        digest = hashlib.sha256(json.dumps(dict(hyperparameters), sort_keys=True).encode()).hexdigest()[:8]
        return f"{self.name}-{number + 1:03d}-{digest}"

    def grid_point(self, number: int) -> dict[str, Any]:
        """The ``number``-th point of the grid (Grid strategy): every combination exactly once."""
        names = [r.name for r in self.ranges]
        combination = next(
            itertools.islice(itertools.product(*(r.grid_values() for r in self.ranges)), number, None)
        )
        return dict(zip(names, combination, strict=True))

    def is_better(self, value: float, than: float | None) -> bool:
        return than is None or (value > than if self.maximize else value < than)

    def reached_target(self, best: float | None) -> bool:
        if best is None or self.target_value is None:
            return False
        return best >= self.target_value if self.maximize else best <= self.target_value


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
    """One training job of a tuning job: its number, its name and the values it was given."""

    number: int
    job: str
    hyperparameters: Mapping[str, str]


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

    @property
    def name(self) -> str:
        return self.spec.name
