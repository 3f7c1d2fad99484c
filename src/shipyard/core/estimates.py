"""Worst-case cost before launch, from a SageMaker create request.

- A training or processing job: its instances for all of ``MaxRuntimeInSeconds`` (SageMaker's
  default, a day, when the request gives none).
- A tuning job: every trial at its worst (the dearest definition), or, when the tuning job has a
  ``MaxRuntimeInSeconds`` of its own, its parallel trials for that long, whichever is less.
- A batch transform job has no time limit to bound it: an hour of its instances.
- An endpoint: its instances per hour and per day; a budget's check counts a day of it.

A job's instances are priced as this site will charge them (:data:`Prices` is given their count):
a job that fit-to-machine scales down (an ``ml.p4d.24xlarge`` given 2 vCPUs and no GPU) at the
type that gives what each instance will be granted (core/pricing.py ``Rates.placed``), which
``billed_as`` names and the basis says ("as ml.r5.xlarge, what this machine gives it");
SageMaker's price beside it stays the type asked for.
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

# An hour of one of ``count`` instances of a type launched together for a kind of work (the
# costs' ``launch_price``): the site's for what each will be granted, SageMaker's for the type.
Prices = Callable[[str, JobKind, int], Price]


def granted_phrase(billed_as: str) -> str:
    """How an estimate says it prices a scaled-down job as another type."""
    return f"as {billed_as}, what this machine gives it"


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What a launch may cost at most.

    Attributes:
        per_hour_usd / sagemaker_per_hour_usd: All its instances for an hour.
        hours: How long the worst case runs them.
        usd / sagemaker_usd: The worst case, at the site's and SageMaker's prices.
        basis: How it was reckoned, in words ("6 trials x 1 x ml.m5.large x 2 h").
        billed_as: The type the site will charge its instances as when fit-to-machine scales
            them down (the basis then ends ", as <type>, what this machine gives it"); None when
            they are priced as asked.
    """

    per_hour_usd: Decimal
    sagemaker_per_hour_usd: Decimal
    hours: Decimal
    basis: str
    billed_as: str | None = None

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
            "billed_as": self.billed_as,
        }


def _instances(
    prices: Prices, instance_type: str, count: int, kind: JobKind
) -> tuple[Decimal, Decimal, str | None]:
    price = prices(instance_type, kind, count)
    return price.site * count, price.sagemaker * count, price.billed_as


def _basis(text: str, billed_as: str | None) -> str:
    return f"{text}, {granted_phrase(billed_as)}" if billed_as else text


def _hours(seconds: Any) -> Decimal:
    return Decimal(int(seconds)) / 3600


def _describe_hours(hours: Decimal) -> str:
    return f"{hours.normalize():f} h" if hours >= 1 else f"{(hours * 60).normalize():f} min"


def training(params: Mapping[str, Any], prices: Prices) -> Estimate:
    resources = params["ResourceConfig"]
    count = int(resources.get("InstanceCount", 1))
    site, sagemaker, billed_as = _instances(prices, resources["InstanceType"], count, JobKind.TRAINING)
    hours = _hours((params.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME))
    basis = f"{count} x {resources['InstanceType']} x {_describe_hours(hours)}"
    return Estimate(site, sagemaker, hours, _basis(basis, billed_as), billed_as)


def processing(params: Mapping[str, Any], prices: Prices) -> Estimate:
    cluster = params["ProcessingResources"]["ClusterConfig"]
    count = int(cluster.get("InstanceCount", 1))
    site, sagemaker, billed_as = _instances(prices, cluster["InstanceType"], count, JobKind.PROCESSING)
    hours = _hours((params.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME))
    basis = f"{count} x {cluster['InstanceType']} x {_describe_hours(hours)}"
    return Estimate(site, sagemaker, hours, _basis(basis, billed_as), billed_as)


def transform(params: Mapping[str, Any], prices: Prices) -> Estimate:
    resources = params["TransformResources"]
    count = int(resources.get("InstanceCount", 1))
    site, sagemaker, billed_as = _instances(prices, resources["InstanceType"], count, JobKind.TRANSFORM)
    basis = (
        f"{count} x {resources['InstanceType']} x 1 h (a transform job has no time limit; an hour is counted)"
    )
    return Estimate(site, sagemaker, TRANSFORM_HOURS, _basis(basis, billed_as), billed_as)


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
        worst.billed_as,
    )
    if "MaxRuntimeInSeconds" in limits:
        hours = _hours(limits["MaxRuntimeInSeconds"])
        by_time = Estimate(
            worst.per_hour_usd * parallel,
            worst.sagemaker_per_hour_usd * parallel,
            hours,
            _basis(f"{parallel} trials at a time x {_describe_hours(hours)}", worst.billed_as),
            worst.billed_as,
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
            s, m, _ = _instances(prices, billed, count, JobKind.HOSTING)
            site, sagemaker = site + s, sagemaker + m
            parts.append(f"{count} concurrent requests x {billed}")
            continue
        count = int(variant.get("InitialInstanceCount", 1))
        s, m, _ = _instances(prices, variant["InstanceType"], count, JobKind.HOSTING)
        site, sagemaker = site + s, sagemaker + m
        parts.append(f"{count} x {variant['InstanceType']}")
    return Estimate(site, sagemaker, ENDPOINT_HOURS, f"{' + '.join(parts)} x 24 h (a day of it)")


def remaining(estimate: Estimate, spent: Decimal) -> Decimal:
    """What a running launch may still cost."""
    return max(Decimal(0), estimate.usd - spent)
