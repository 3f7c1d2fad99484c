"""Costs: the ledger of every priced resource-second, reports over it, estimates and budgets.

Each priced resource writes intervals to the ledger (the ``usage`` table) while it is in use:
a job's instances from the moment they start work until the job ends (queued time is free; each
attempt is an interval of its own), an endpoint's model servers while they serve (a serverless endpoint's requests, each for its
compute time at its variant's memory), each bucket at
its size between two samples. An interval is keyed, so recording it twice changes nothing, and
it carries the prices of its time (the site's and SageMaker's), its tags, owner and parent.

The owner is the ARN of the user whose request created the resource (None for root's, the
lab's); a bucket's is the user who created it. Reports take the ``viewer``: a user who is not
an administrator sees the spend of what they own, and nothing of anyone else's.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from shipyard.core.catalog import InstanceCatalog, JobKind
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.costs import CENT, Interval, allocate
from shipyard.core.credentials import Principal
from shipyard.core.jobs import Job
from shipyard.core.placement import Resources
from shipyard.core.pricing import Price, Rates
from shipyard.core.serverless import ServerlessConfig, billed_span
from shipyard.errors import ValidationError
from shipyard.store import UsageRepository

log = logging.getLogger(__name__)


class CostService:
    """Prices, the ledger's writers for jobs and storage, and reports.

    Args:
        tags: An ARN's current tags (the tagging service's).
        bucket_sizes: Each bucket's stored bytes, for the storage samples.
        owners: The owners (users' ARNs, None: root) of the resources named by ARN, for the
            storage samples (the identity service's ownership records); without it, none.
        capacity: The capacity and largest machine of the backend that runs an instance type
            (the backends'), for pricing a launch as it will be placed (:meth:`launch_price`);
            without it, launches are priced as asked.
        fit_to_machine: Whether the scheduler scales down what could never fit (as its own).
    """

    def __init__(
        self,
        usage: UsageRepository,
        catalog: InstanceCatalog,
        rates: Rates,
        *,
        tags: Callable[[str], Mapping[str, str]],
        bucket_sizes: Callable[[], Mapping[str, int]],
        owners: Callable[[list[str]], Mapping[str, str | None]] | None = None,
        capacity: Callable[[str], tuple[Resources, Resources]] | None = None,
        fit_to_machine: bool = True,
        interval: float = 5.0,
        storage_sample_seconds: float = 3600.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.usage = usage
        self._clock = clock
        self.catalog = catalog
        self.rates = rates
        self._tags = tags
        self._bucket_sizes = bucket_sizes
        self._owners = owners
        self._capacity = capacity
        self._fit_to_machine = fit_to_machine
        self._interval = interval
        self._storage_every = storage_sample_seconds
        self._storage_next = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._passes: list[Callable[[], None]] = []
        self._billing = threading.Lock()
        self._bills: dict[str, tuple[dt.datetime, dt.datetime, Resources]] = {}  # for attempts not ended

    def add_pass(self, run_pass: Callable[[], None]) -> None:
        """Run ``run_pass`` on every tick, after the ledger's own work (budgets build on it)."""
        self._passes.append(run_pass)

    # -- the background pass ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shipyard-costs", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the loop must survive anything a pass runs into
                log.exception("Cost pass failed")
            self._stop.wait(self._interval)

    def tick(self) -> None:
        """One pass: the storage sample when it is due, then the passes added."""
        self.sample_storage()
        for run_pass in self._passes:
            run_pass()

    # -- prices -------------------------------------------------------------------------------------
    def price(self, instance_type: str, kind: JobKind) -> Price:
        """An hour of ``instance_type`` doing ``kind`` of work; of a serverless variant's compute
        for its ledger name (``serverless:2048MB``)."""
        if (memory := ServerlessConfig.memory_of(instance_type)) is not None:
            return self.rates.serverless(memory)
        return self.rates.instance(self.catalog.get(instance_type), kind)

    def launch_price(self, instance_type: str, kind: JobKind, count: int) -> Price:
        """An hour of one of ``count`` instances of ``instance_type`` launched together for
        ``kind`` of work, before they are (an estimate's :data:`~shipyard.core.estimates.Prices`):
        a job's as its backend will place them, priced for what each will be granted
        (:meth:`Rates.placed`, the scheduler's decision on the backend's capacity), so a job
        scaled down to fit is estimated as :meth:`job_price` will charge it; an endpoint's (not
        scaled down when charged) and a serverless variant's as :meth:`price`."""
        if kind is JobKind.HOSTING or self._capacity is None:
            return self.price(instance_type, kind)
        capacity, node = self._capacity(instance_type)
        return self.rates.placed(
            self.catalog.get(instance_type),
            count,
            kind,
            self.catalog,
            capacity=capacity,
            node=node,
            fit_to_machine=self._fit_to_machine,
        )

    def job_price(self, job: Job[Any]) -> Price:
        """An hour of one of the job's instances: at the site, for what each was granted when it
        was scaled down to fit (:meth:`Rates.granted`; ``billed_as`` names the type charged);
        SageMaker's, for the type it asked for."""
        kind = JobKind(job.kind)
        if job.run.placement is None:  # not placed (yet): what it asked for
            return self.price(job.spec.instance_type, kind)
        return self.rates.granted(
            self.catalog.get(job.spec.instance_type), job.run.placement, kind, self.catalog
        )

    # -- serverless endpoints -------------------------------------------------------------------------
    def request_served(
        self,
        key: str,
        *,
        name: str,
        arn: str,
        serverless: ServerlessConfig,
        started: dt.datetime,
        ended: dt.datetime,
        owner: str | None = None,
    ) -> None:
        """A serverless endpoint's request, billed for its compute time (:func:`billed_span`) at
        its variant's memory (idempotent by ``key``)."""
        begin, end = billed_span(started, ended)
        price = self.rates.serverless(serverless.memory_mb)
        interval = Interval(
            key=key,
            kind="endpoint",
            name=name,
            arn=arn,
            instance_type=serverless.billing_type,
            count=1,
            usd_per_hour=price.site,
            sagemaker_usd_per_hour=price.sagemaker,
            started=begin,
            last_seen=begin,
            owner=owner,
            tags=dict(self._tags(arn)),
        )
        self.usage.settle(interval, begin, end)

    # -- jobs -----------------------------------------------------------------------------------------
    @staticmethod
    def job_key(job: Job[Any]) -> str:
        return CostService.attempt_key(job.kind, job.name, job.run.attempt)

    @staticmethod
    def attempt_key(kind: str, name: str, attempt: int) -> str:
        """The ledger key of a job's attempt."""
        return f"{kind}/{name}/{attempt}"

    def instances_started(
        self,
        key: str,
        *,
        kind: str,
        name: str,
        arn: str,
        instance_type: str,
        count: int,
        work: JobKind,
        at: dt.datetime,
        parent: str | None = None,
        owner: str | None = None,
    ) -> None:
        """Instances of a resource began work at ``at``: an interval at today's prices for
        ``work``, with its type's GPUs (idempotent by ``key``)."""
        price = self.price(instance_type, work)
        self.usage.open(
            Interval(
                key=key,
                kind=kind,
                name=name,
                arn=arn,
                instance_type=instance_type,
                count=count,
                usd_per_hour=price.site,
                sagemaker_usd_per_hour=price.sagemaker,
                started=at,
                last_seen=at,
                parent=parent,
                owner=owner,
                tags=dict(self._tags(arn)),
                gpus=self._type_gpus(instance_type),
            )
        )

    def _type_gpus(self, instance_type: str) -> int:
        """The GPUs of an instance of ``instance_type`` (0 for what the catalog does not list:
        a serverless variant's compute)."""
        try:
            return self.catalog.get(instance_type).gpu_count
        except (ValueError, ValidationError):
            return 0

    def _with_gpus(self, intervals: list[Interval]) -> list[Interval]:
        """Intervals recorded before the ledger kept GPUs, given their type's."""
        return [
            i if i.gpus is not None else dataclasses.replace(i, gpus=self._type_gpus(i.instance_type))
            for i in intervals
        ]

    def _job_interval(self, job: Job[Any], at: dt.datetime) -> Interval:
        price = self.job_price(job)
        return Interval(
            key=self.job_key(job),
            kind=job.kind,
            name=job.name,
            arn=job.arn,
            instance_type=job.spec.instance_type,
            count=job.spec.instance_count,
            usd_per_hour=price.site,
            sagemaker_usd_per_hour=price.sagemaker,
            started=at,
            last_seen=at,
            parent=job.run.tuning_job,
            owner=job.run.owner,
            tags=dict(self._tags(job.arn)),
            # the GPUs each instance was given (fewer than its type's, scaled down to fit)
            gpus=job.run.placement.gpus
            if job.run.placement is not None
            else self._type_gpus(job.spec.instance_type),
        )

    def job_started(self, job: Job[Any], at: dt.datetime) -> None:
        """The job's instances began work at ``at`` (idempotent: its attempt is recorded once)."""
        self.usage.open(self._job_interval(job, at))

    def job_ended(self, job: Job[Any], started: dt.datetime, ended: dt.datetime) -> tuple[Decimal, Decimal]:
        """The attempt's interval is exactly [started, ended) (the billed time); its cost, the
        site's and SageMaker's. Opened here if the job ended before it was seen working. Where
        its cluster billed it already (:meth:`cluster_billed`), the cluster's bill instead."""
        with self._billing:
            # Opened when its instances were seen working (its price and tags read then), or
            # recorded now: the interval is made, and the store read for it, only then.
            interval = self.usage.settle_opened(self.job_key(job), started, ended) or self.usage.settle(
                self._job_interval(job, started), started, ended
            )
            interval = self._apply_bill(interval.key) or interval
        now = interval.ended or ended
        return interval.cost(now=now).quantize(CENT), interval.sagemaker_cost(now=now).quantize(CENT)

    def attempt_lost(self, job: Job[Any], at: dt.datetime) -> None:
        """The attempt's instances were lost at ``at`` (a retry opens an interval of its own)."""
        with self._billing:
            self.usage.close(self.job_key(job), at)
            self._apply_bill(self.job_key(job))
            self._bills.pop(self.job_key(job), None)  # an attempt lost before it was seen working

    def cluster_billed(
        self, key: str, *, started: dt.datetime, ended: dt.datetime, allocated: Resources
    ) -> None:
        """A cluster (Slurm's sacct) billed a job attempt's instances (``key``: :meth:`job_key`)
        from ``started`` to ``ended``, each allocated a node of ``allocated``: its interval becomes
        that time, at the site's rates for what was allocated (:meth:`Rates.allocated`), with
        SageMaker's price of its type beside it for the same time. Applied once the attempt has
        ended in Shipyard too (kept until then: the cluster may end its job first)."""
        with self._billing:
            self._bills[key] = (started, ended, allocated)
            interval = self.usage.get(key)
            if interval is not None and interval.ended is not None:
                self._apply_bill(key)

    def _apply_bill(self, key: str) -> Interval | None:
        """The cluster's bill for ``key``, if one came, on its ended interval (with the lock held)."""
        bill = self._bills.get(key)
        interval = self.usage.get(key) if bill is not None else None
        if bill is None or interval is None or interval.ended is None:
            return None
        del self._bills[key]
        started, ended, allocated = bill
        try:
            price = self.rates.allocated(
                self.catalog.get(interval.instance_type), allocated, JobKind(interval.kind), self.catalog
            )
        except (
            ValueError,
            ValidationError,
        ):  # a type gone from the catalog, or not a job's interval: the price stays
            price = None
        site = price.site if price is not None else interval.usd_per_hour
        return self.usage.rebill(key, site, started, ended)

    # -- what a resource has cost -------------------------------------------------------------------
    def resource_cost(
        self, kind: str, name: str, *, since: dt.datetime | None = None
    ) -> tuple[Decimal, Decimal, Decimal]:
        """(unit-seconds, site cost, SageMaker cost) of a resource so far (since ``since``: a
        resource created again under an old name starts afresh)."""
        now = self._clock.now()
        rows = [i for i in self.usage.for_resource(kind, name) if since is None or i.started >= since]
        return (
            sum((i.seconds(now=now) for i in rows), Decimal(0)),
            sum((i.cost(now=now) for i in rows), Decimal(0)).quantize(CENT),
            sum((i.sagemaker_cost(now=now) for i in rows), Decimal(0)).quantize(CENT),
        )

    def report(
        self,
        groups: Sequence[str],
        *,
        start: dt.datetime,
        end: dt.datetime,
        viewer: Principal | None = None,
    ) -> list[dict[str, Any]]:
        """Spend in [start, end) grouped by ``groups`` (see core.costs.allocate), of what
        ``viewer`` may see (:func:`visible`; None: everything)."""
        now = self._clock.now()
        intervals = self._with_gpus(visible(self.usage.overlapping(start, min(end, now)), viewer))
        return allocate(intervals, groups, start=start, end=end, now=now)

    def now(self) -> dt.datetime:
        return self._clock.now()

    def ledger(
        self, start: dt.datetime, end: dt.datetime, *, viewer: Principal | None = None
    ) -> tuple[list[Interval], dt.datetime]:
        """The intervals in [start, end) that ``viewer`` may see (:func:`visible`), and now."""
        now = self._clock.now()
        return self._with_gpus(visible(self.usage.overlapping(start, min(end, now)), viewer)), now

    # -- storage ----------------------------------------------------------------------------------
    def sample_storage(self, *, force: bool = False) -> None:
        """Every ``storage_sample_seconds``: close each bucket's interval and open one at its size
        now (a stored byte costs while the server is down too)."""
        if not force and time.monotonic() < self._storage_next:
            return
        self._storage_next = time.monotonic() + self._storage_every
        now = self._clock.now()
        sizes = self._bucket_sizes()
        for interval in self.usage.open_intervals("storage"):
            self.usage.close(interval.key, now)
        arns = {bucket: f"arn:aws:s3:::{bucket}" for bucket, size in sizes.items() if size > 0}
        owners = self._owners(list(arns.values())) if self._owners and arns else {}
        for bucket, arn in arns.items():
            price = self.rates.storage(sizes[bucket])
            self.usage.open(
                Interval(
                    key=f"storage/{bucket}/{now.isoformat()}",
                    kind="storage",
                    name=bucket,
                    arn=arn,
                    instance_type="s3",
                    count=1,
                    usd_per_hour=price.site,
                    sagemaker_usd_per_hour=price.sagemaker,
                    started=now,
                    last_seen=now,
                    owner=owners.get(arn),
                    tags=dict(self._tags(arn)),
                )
            )


def visible(intervals: Iterable[Interval], viewer: Principal | None) -> list[Interval]:
    """The intervals ``viewer`` may see: all for an administrator (or None, the server itself);
    for anyone else, those of what the user it acts for owns."""
    if viewer is None or viewer.is_administrator:
        return list(intervals)
    return [i for i in intervals if i.owner is not None and i.owner == viewer.user]


def tags_by_arn(intervals: Iterable[Interval]) -> dict[str, Mapping[str, str]]:
    return {i.arn: i.tags for i in intervals}
