"""Waste: endpoints nobody calls, and jobs on bigger instances than they used.

- An endpoint in service that has not been invoked for ``idle_endpoint_seconds`` is idle: its
  instances cost the same whether they answer or not (the most common way SageMaker bills are
  wasted). It is reported, or deleted when the site says ``idle_endpoints = "delete"``.
- A finished job whose sampled peak CPU and memory fit a cheaper instance type (with a fifth to
  spare) gets a right-sizing suggestion: the cheapest such type for the same kind of work and
  what it would have saved on that run. A job on a GPU type gets one only when its GPUs sat idle
  (every GPUUtilization sample under ``IDLE_GPU_PERCENT``): then the cheapest type without GPUs
  that fits its CPU and memory. Its GPUs not sampled (no NVML): no suggestion either way.
- Model servers' utilization is sampled here too (job instances sample their own).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from shipyard.core.catalog import InstanceCatalog, JobKind
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.costs import CENT, money
from shipyard.runtime.utilization import Sampler
from shipyard.services.costs import CostService
from shipyard.services.endpoints import EndpointService
from shipyard.services.jobs import JobService
from shipyard.store.budgets import BudgetRepository
from shipyard.store.utilization import Sample, UtilizationRepository

log = logging.getLogger(__name__)

HEADROOM = 1.2  # a suggested type leaves a fifth more than the job's peak
MIN_SAMPLES = 3
IDLE_GPU_PERCENT = 10.0  # a GPU whose every sample is under this sat idle


@dataclasses.dataclass(frozen=True)
class IdleEndpoint:
    name: str
    idle_seconds: float
    instance_types: list[str]
    usd_per_hour: Decimal
    since: float  # when it was last invoked, or began serving (epoch seconds)

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.name,
            "idle_minutes": round(self.idle_seconds / 60, 1),
            "instance_types": self.instance_types,
            "cost_per_hour_usd": str(self.usd_per_hour.quantize(CENT)),
            "cost_per_day_usd": str((self.usd_per_hour * 24).quantize(CENT)),
        }


class WasteService:
    def __init__(
        self,
        endpoints: EndpointService,
        jobs: list[JobService[Any]],
        costs: CostService,
        utilization: UtilizationRepository,
        alerts: BudgetRepository,
        catalog: InstanceCatalog,
        *,
        idle_seconds: float = 3600,
        delete_idle: bool = False,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        self._endpoints = endpoints
        self._jobs = jobs
        self._costs = costs
        self._utilization = utilization
        self._alerts = alerts
        self._catalog = catalog
        self._idle_seconds = idle_seconds
        self._delete_idle = delete_idle
        self._samplers: dict[Path, Sampler] = {}

    # -- endpoints ----------------------------------------------------------------------------------
    def idle_endpoints(self) -> list[IdleEndpoint]:
        """Endpoints in service not invoked for the idle time (counted from when their current
        instances started serving, if they were not invoked since)."""
        now = time.time()
        serving: dict[str, list[Any]] = {}
        for interval in self._costs.usage.open_intervals("endpoint"):
            serving.setdefault(interval.name, []).append(interval)
        found = []
        for name, intervals in serving.items():
            since = max(i.started.timestamp() for i in intervals)
            baseline = max(since, self._endpoints.metrics.last_invoked(name) or 0)
            if now - baseline >= self._idle_seconds:
                found.append(
                    IdleEndpoint(
                        name,
                        now - baseline,
                        sorted({i.instance_type for i in intervals}),
                        sum((i.usd_per_hour * i.count for i in intervals), Decimal(0)),
                        baseline,
                    )
                )
        return sorted(found, key=lambda e: -e.usd_per_hour)

    def sample_endpoints(self) -> None:
        """A utilization sample of every model server in service."""
        seen = set()
        for endpoint in self._endpoints.router.names():
            samples: list[tuple[str, Sample]] = []
            for variant in self._endpoints.router.variants(endpoint):
                memory = (
                    self._catalog.get(variant.instance_type).memory_gib * 2**30
                    if variant.instance_type
                    else 2**30
                )
                for server in variant.servers:
                    key = server.instance_dir
                    seen.add(key)
                    if not server.alive or server.pid is None:  # on another machine: not sampled
                        continue
                    sampler = self._samplers.setdefault(
                        key, Sampler(server.pid, memory_bytes=memory, disk_bytes=1)
                    )
                    point = sampler.sample()
                    if point is not None:
                        samples.append((variant.name, Sample.from_json(f"{variant.name}/{key.name}", point)))
            self._utilization.add("endpoint", endpoint, [s for _, s in samples])
        for gone in set(self._samplers) - seen:
            del self._samplers[gone]

    def tick(self) -> None:
        self.sample_endpoints()
        for idle in self.idle_endpoints():
            action = "deleted" if self._delete_idle else "reported"
            message = (
                f"Endpoint {idle.name!r} has not been invoked for {idle.idle_seconds / 60:.0f} minutes and costs "
                f"{money(idle.usd_per_hour)} an hour: {action}"
            )
            # once for each stretch of idleness: a call starts a new one
            if self._alerts.record(
                "", "idle", f"idle/{idle.name}/{idle.since:.3f}", Decimal(0), message, self._clock.now()
            ):
                log.warning(message)
                if self._delete_idle:
                    self._endpoints.delete(idle.name, with_components=True)

    # -- right-sizing ---------------------------------------------------------------------------------
    def right_sizing(self, since: dt.datetime) -> list[dict[str, Any]]:
        """Suggestions for the jobs that ended since ``since`` and were sampled."""
        found = []
        for service in self._jobs:
            kind = service.repository.kind
            peaks = self._utilization.peaks(kind, since)
            gpu_peaks = self._utilization.gpu_peaks(kind, since)
            for name, (cpu, memory_bytes, count) in peaks.items():
                if count < MIN_SAMPLES:
                    continue
                try:
                    job = service.describe(name)
                except Exception:  # gone
                    continue
                if not job.state.status.is_terminal or job.run.billing is None:
                    continue
                suggestion = self._suggest(job, cpu, memory_bytes, gpu_peaks.get(name))
                if suggestion is not None:
                    found.append(suggestion)
        return sorted(found, key=lambda s: -Decimal(s["saving_usd"]))

    def _suggest(
        self, job: Any, cpu: float, memory_bytes: int, gpu: tuple[float, int] | None = None
    ) -> dict[str, Any] | None:
        """``gpu``: the peak GPU utilization and how many samples read it (None: not sampled)."""
        work = JobKind(job.kind)
        current = self._catalog.get(job.spec.instance_type)
        idle_gpus = gpu is not None and gpu[1] >= MIN_SAMPLES and gpu[0] < IDLE_GPU_PERCENT
        if current.gpu_count and not idle_gpus:  # its GPUs used, or not sampled: no suggestion
            return None
        cores = max(1, math.ceil(cpu / 100 * HEADROOM))
        memory_gib = memory_bytes / 2**30 * HEADROOM
        # what it was charged an instance-hour: a job scaled down to fit, as the type it got
        billing = job.run.billing
        price = billing.price_per_hour_usd or self._costs.price(current.name, work).site
        candidates = [
            t
            for t in self._catalog.for_kind(work)
            if t.gpu_count == 0 and t.vcpu >= cores and t.memory_gib >= memory_gib
        ]
        if not candidates:
            return None
        best = min(candidates, key=lambda t: (self._costs.price(t.name, work).site, t.vcpu))
        cheaper = self._costs.price(best.name, work).site
        if cheaper >= price or best.name == billing.billed_as:
            return None
        hours = Decimal(billing.billable_seconds) / 3600
        saving = ((price - cheaper) * hours).quantize(CENT)
        who = (
            f"{job.name}'s {current.gpu_count} GPU{'s' if current.gpu_count != 1 else ''} sat idle "
            f"(GPUUtilization peaked at {gpu[0]:.1f}%) and it"
            if current.gpu_count and gpu is not None
            else job.name
        )
        return {
            "kind": job.kind,
            "job": job.name,
            "instance_type": current.name,
            "instance_count": job.spec.instance_count,
            "peak_cpu_percent": cpu,
            "peak_memory_gib": round(memory_bytes / 2**30, 3),
            "peak_gpu_percent": gpu[0] if current.gpu_count and gpu is not None else None,
            "suggested_instance_type": best.name,
            "billed_as": billing.billed_as,
            "usd_per_hour": str(price),
            "suggested_usd_per_hour": str(cheaper),
            "saving_usd": str(saving),
            "saving_percent": float(round((price - cheaper) / price * 100, 1)),
            "reason": (
                f"{who} peaked at {cpu / 100:.2f} of {current.vcpu} vCPUs and "
                f"{memory_bytes / 2**30:.2f} of {current.memory_gib:g} GiB; {best.name} "
                f"({best.vcpu} vCPUs, {best.memory_gib:g} GiB) would have cost {money(saving)} less"
                + (
                    f" than it was charged as {billing.billed_as}, what it was given"
                    if billing.billed_as
                    else ""
                )
            ),
        }
