"""Worst-case cost before launch, from a SageMaker create request.

- A training or processing job: its instances for all of ``MaxRuntimeInSeconds`` (SageMaker's
  default, a day, when the request gives none).
- A tuning job: every trial at its worst (the dearest definition), or, when the tuning job has a
  ``MaxRuntimeInSeconds`` of its own, its parallel trials for that long, whichever is less.
- A batch transform job has no time limit to bound it: an hour of its instances.
- An endpoint: its instances per hour and per day; a budget's check counts a day of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from shipyard.core.catalog import JobKind
from shipyard.core.costs import CENT
from shipyard.core.pricing import Price

DEFAULT_MAX_RUNTIME = 86_400  # SageMaker's, when a request gives none
TRANSFORM_HOURS = Decimal(1)
ENDPOINT_HOURS = Decimal(24)

Prices = Callable[[str, JobKind], Price]


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What a launch may cost at most.

    Attributes:
        per_hour_usd / sagemaker_per_hour_usd: All its instances for an hour.
        hours: How long the worst case runs them.
        usd / sagemaker_usd: The worst case, at the site's and SageMaker's prices.
        basis: How it was reckoned, in words ("6 trials x 1 x ml.m5.large x 2 h").
    """

    per_hour_usd: Decimal
    sagemaker_per_hour_usd: Decimal
    hours: Decimal
    basis: str

    @property
    def usd(self) -> Decimal:
        return (self.per_hour_usd * self.hours).quantize(CENT)

    @property
    def sagemaker_usd(self) -> Decimal:
        return (self.sagemaker_per_hour_usd * self.hours).quantize(CENT)

    def to_json(self) -> dict[str, Any]:
        return {
            "usd": str(self.usd),
            "sagemaker_usd": str(self.sagemaker_usd),
            "per_hour_usd": str(self.per_hour_usd.quantize(CENT)),
            "sagemaker_per_hour_usd": str(self.sagemaker_per_hour_usd.quantize(CENT)),
            "per_day_usd": str((self.per_hour_usd * 24).quantize(CENT)),
            "hours": str(self.hours),
            "basis": self.basis,
        }


def _instances(prices: Prices, instance_type: str, count: int, kind: JobKind) -> tuple[Decimal, Decimal]:
    price = prices(instance_type, kind)
    return price.site * count, price.sagemaker * count


def _hours(seconds: Any) -> Decimal:
    return Decimal(int(seconds)) / 3600


def _describe_hours(hours: Decimal) -> str:
    return f"{hours.normalize():f} h" if hours >= 1 else f"{(hours * 60).normalize():f} min"


def training(params: Mapping[str, Any], prices: Prices) -> Estimate:
    resources = params["ResourceConfig"]
    count = int(resources.get("InstanceCount", 1))
    site, sagemaker = _instances(prices, resources["InstanceType"], count, JobKind.TRAINING)
    hours = _hours((params.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME))
    return Estimate(
        site, sagemaker, hours, f"{count} x {resources['InstanceType']} x {_describe_hours(hours)}"
    )


def processing(params: Mapping[str, Any], prices: Prices) -> Estimate:
    cluster = params["ProcessingResources"]["ClusterConfig"]
    count = int(cluster.get("InstanceCount", 1))
    site, sagemaker = _instances(prices, cluster["InstanceType"], count, JobKind.PROCESSING)
    hours = _hours((params.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME))
    return Estimate(site, sagemaker, hours, f"{count} x {cluster['InstanceType']} x {_describe_hours(hours)}")


def transform(params: Mapping[str, Any], prices: Prices) -> Estimate:
    resources = params["TransformResources"]
    count = int(resources.get("InstanceCount", 1))
    site, sagemaker = _instances(prices, resources["InstanceType"], count, JobKind.TRANSFORM)
    return Estimate(
        site,
        sagemaker,
        TRANSFORM_HOURS,
        f"{count} x {resources['InstanceType']} x 1 h (a transform job has no time limit; an hour is counted)",
    )


def tuning(params: Mapping[str, Any], prices: Prices) -> Estimate:
    config = params["HyperParameterTuningJobConfig"]
    limits = config["ResourceLimits"]
    trials = int(limits["MaxNumberOfTrainingJobs"])
    parallel = int(limits.get("MaxParallelTrainingJobs", 1))
    definitions = params.get("TrainingJobDefinitions") or [params["TrainingJobDefinition"]]
    worst = max((training(d, prices) for d in definitions), key=lambda e: e.usd)
    by_trials = Estimate(
        worst.per_hour_usd * trials,
        worst.sagemaker_per_hour_usd * trials,
        worst.hours,
        f"{trials} trials x {worst.basis}",
    )
    if "MaxRuntimeInSeconds" in limits:
        hours = _hours(limits["MaxRuntimeInSeconds"])
        by_time = Estimate(
            worst.per_hour_usd * parallel,
            worst.sagemaker_per_hour_usd * parallel,
            hours,
            f"{parallel} trials at a time x {_describe_hours(hours)}",
        )
        return min(by_trials, by_time, key=lambda e: e.usd)
    return by_trials


def endpoint(variants: list[Mapping[str, Any]], prices: Prices) -> Estimate:
    """An endpoint config's ``ProductionVariants``: per hour; a day for the worst case."""
    site = sagemaker = Decimal(0)
    parts = []
    for variant in variants:
        if serverless := variant.get("ServerlessConfig"):  # MaxConcurrency requests all day long
            count = int(serverless["MaxConcurrency"])
            billed = f"serverless:{int(serverless['MemorySizeInMB'])}MB"
            s, m = _instances(prices, billed, count, JobKind.HOSTING)
            site, sagemaker = site + s, sagemaker + m
            parts.append(f"{count} concurrent requests x {billed}")
            continue
        count = int(variant.get("InitialInstanceCount", 1))
        s, m = _instances(prices, variant["InstanceType"], count, JobKind.HOSTING)
        site, sagemaker = site + s, sagemaker + m
        parts.append(f"{count} x {variant['InstanceType']}")
    return Estimate(site, sagemaker, ENDPOINT_HOURS, f"{' + '.join(parts)} x 24 h (a day of it)")


def remaining(estimate: Estimate, spent: Decimal) -> Decimal:
    """What a running launch may still cost."""
    return max(Decimal(0), estimate.usd - spent)
