"""Prices: what this site charges, and what SageMaker would have.

Without a rates file the site charges SageMaker's on-demand prices (the instance catalog's), so
every report's two columns agree. A site running its own hardware says what it costs in
``<data dir>/rates.toml``::

    # Per instance-hour, for any kind of work; wins over the resource rates below.
    [instance_types]
    "ml.g5.xlarge" = 0.50

    # Or by what a type gives a job (an instance type's vCPUs, GiB of memory and GPUs).
    vcpu_hour = 0.01
    memory_gib_hour = 0.002
    gpu_hour = 0.40

    # Stored bytes in the object store (SageMaker-equivalent: S3 Standard, 0.023).
    storage_gib_month = 0.01

    # Serverless endpoints' compute, per GB of memory and second of a request (SageMaker-
    # equivalent: 0.00002, its on-demand Serverless Inference price in us-east-1).
    serverless_gb_second = 0.00001

Any rate may be 0 (hardware that is paid for). Rates are read when the server starts; a ledger
interval keeps the prices of the time it began.

A job scaled down to fit the machine (an ``ml.p4d.24xlarge`` given 2 vCPUs and no GPU) is charged
at the site for what it got, not for what it asked (:meth:`Rates.granted`): as the type, of those
offered for its kind of work whose vCPUs, memory and GPUs each cover what one instance was granted,
that the site charges least for (the asked type is one of them, so it never costs more; burstable
ml.t types are not, as their vCPUs are a share of a core). SageMaker's
price beside it stays that of the type asked for, as SageMaker would have billed it. A launch's
estimate prices it the same way before it runs (:meth:`Rates.placed`: the scheduler's placement
on the backend's capacity, then :meth:`Rates.granted`).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path

from shipyard.core.catalog import InstanceType, JobKind
from shipyard.core.placement import Resources, plan
from shipyard.errors import ConfigurationError, ValidationError

HOURS_PER_MONTH = Decimal(730)  # as AWS prices storage: GB-month over 730 hours
SAGEMAKER_STORAGE_GIB_MONTH = Decimal("0.023")  # S3 Standard, us-east-1, first 50 TB
# SageMaker Serverless Inference, on demand, us-east-1 (aws.amazon.com/sagemaker/pricing, 2025):
# USD 0.0000200 a second at 1024 MB, 0.0001200 at 6144 MB, linear in the memory in between.
SAGEMAKER_SERVERLESS_GB_SECOND = Decimal("0.00002")
GIB = 2**30
_BURSTABLE = re.compile(r"t\d+[a-z]*")  # ml.t2, ml.t3: a vCPU is a share of a core (not trn1)


@dataclasses.dataclass(frozen=True)
class Price:
    """USD per hour of one unit (an instance, or a bucket at its size): the site's and SageMaker's.

    Attributes:
        billed_as: The instance type the site charged for instead of the one asked (an instance
            scaled down to fit: :meth:`Rates.granted`); None when it charged for the one asked.
    """

    site: Decimal
    sagemaker: Decimal
    billed_as: str | None = None


@dataclasses.dataclass(frozen=True)
class Rates:
    """The site's rates (see the module docstring); all None: SageMaker's prices."""

    instance_types: Mapping[str, Decimal] = dataclasses.field(default_factory=dict)
    vcpu_hour: Decimal | None = None
    memory_gib_hour: Decimal | None = None
    gpu_hour: Decimal | None = None
    storage_gib_month: Decimal | None = None
    serverless_gb_second: Decimal | None = None

    @classmethod
    def load(cls, path: Path) -> Rates:
        """The rates in ``path``; SageMaker's prices when it does not exist."""
        try:
            raw = tomllib.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"Rates file {str(path)!r} cannot be read: {exc}") from None
        known = {f.name for f in dataclasses.fields(cls)}
        for key in raw:
            if key not in known:
                raise ConfigurationError(
                    f"Rates file {str(path)!r}: unknown setting {key!r} (known: {', '.join(sorted(known))})"
                )
        types = raw.get("instance_types", {})
        if not isinstance(types, dict):
            raise ConfigurationError(f"Rates file {str(path)!r}: [instance_types] must be a table")
        return cls(
            instance_types={
                name: _usd(value, path, f"instance_types.{name}") for name, value in types.items()
            },
            **{
                key: _usd(raw[key], path, key)
                for key in (
                    "vcpu_hour",
                    "memory_gib_hour",
                    "gpu_hour",
                    "storage_gib_month",
                    "serverless_gb_second",
                )
                if key in raw
            },
        )

    @property
    def by_resources(self) -> bool:
        return any(r is not None for r in (self.vcpu_hour, self.memory_gib_hour, self.gpu_hour))

    def instance(self, instance_type: InstanceType, kind: JobKind) -> Price:
        """An instance-hour of ``instance_type`` doing ``kind`` of work (ValidationError if the
        catalog does not offer it for that)."""
        sagemaker = instance_type.price_per_hour(kind)
        if instance_type.name in self.instance_types:
            return Price(self.instance_types[instance_type.name], sagemaker)
        if self.by_resources:
            site = (
                (self.vcpu_hour or 0) * instance_type.vcpu
                + (self.memory_gib_hour or 0) * Decimal(str(instance_type.memory_gib))
                + (self.gpu_hour or 0) * instance_type.gpu_count
            )
            return Price(Decimal(site), sagemaker)
        return Price(sagemaker, sagemaker)

    def granted(
        self, asked: InstanceType, granted: Resources, kind: JobKind, types: Iterable[InstanceType]
    ) -> Price:
        """An hour of one instance of ``asked`` that was ``granted`` only so much (scaled down
        to fit the machine): the site's price of the type among ``types`` (the catalog) offered
        for ``kind`` whose vCPUs, memory and GPUs each cover ``granted`` that the site charges
        least for (ties: ``asked``, else the fewest vCPUs, then the least memory, then by name),
        and SageMaker's price of ``asked``. Burstable types (ml.t2, ml.t3) are not candidates:
        their vCPUs are a share of a core, a granted vCPU a whole one. Granted all of ``asked``:
        :meth:`instance`."""
        whole = self.instance(asked, kind)
        wanted = Resources(float(asked.vcpu), float(asked.memory_gib), asked.gpu_count)
        if wanted.fits_in(granted):
            return whole
        covering = [
            (self.instance(t, kind).site, t.name != asked.name, t.vcpu, t.memory_gib, t.name)
            for t in types
            if t.supports(kind)
            and granted.fits_in(Resources(float(t.vcpu), float(t.memory_gib), t.gpu_count))
            and not _BURSTABLE.fullmatch(t.family)
        ]
        site, _, _, _, name = min(covering, default=(whole.site, False, 0, 0.0, asked.name))
        if site >= whole.site:  # nothing cheaper gives as much: the type asked for
            return whole
        return Price(site, whole.sagemaker, billed_as=name)

    def allocated(
        self, asked: InstanceType, allocated: Resources, kind: JobKind, types: Iterable[InstanceType]
    ) -> Price:
        """An hour of one instance of ``asked`` run on a cluster node that was ``allocated``
        so much (what Slurm's AllocTRES says of the node): the site's rate for the type where it
        sets one; else its vCPU, memory and GPU rates times what was allocated (more than the
        type where the site's table asks for more, less where the node is smaller); else
        SageMaker's price of the cheapest type that covers the allocation (:meth:`granted`).
        SageMaker's price beside it stays that of ``asked``."""
        if asked.name in self.instance_types or not self.by_resources:
            return self.granted(asked, allocated, kind, types)
        site = (
            (self.vcpu_hour or 0) * Decimal(str(allocated.cpus))
            + (self.memory_gib_hour or 0) * Decimal(str(allocated.memory_gib))
            + (self.gpu_hour or 0) * allocated.gpus
        )
        return Price(site, asked.price_per_hour(kind))

    def placed(
        self,
        asked: InstanceType,
        count: int,
        kind: JobKind,
        types: Iterable[InstanceType],
        *,
        capacity: Resources,
        node: Resources | None = None,
        fit_to_machine: bool = True,
    ) -> Price:
        """An hour of one of ``count`` instances of ``asked`` launched together, before they
        are: placed as the scheduler will place them on a backend of ``capacity`` whose largest
        machine is ``node`` (core/placement.py :func:`~shipyard.core.placement.plan`), and priced
        for what each is granted (:meth:`granted`), so a job scaled down to fit is estimated as
        it will be charged. One granted what it asked, or one that can never be placed (its
        creation says why), is priced as asked (:meth:`instance`)."""
        try:
            placement = plan(asked, count, capacity, node=node, fit_to_machine=fit_to_machine)
        except ValidationError:
            return self.instance(asked, kind)
        return self.granted(asked, placement.per_instance, kind, types)

    def serverless(self, memory_mb: int) -> Price:
        """An hour of serverless compute (requests' billed time) at ``memory_mb`` of memory."""
        gb_hours = Decimal(memory_mb) / 1024 * 3600
        site = self.serverless_gb_second
        return Price(
            (site if site is not None else SAGEMAKER_SERVERLESS_GB_SECOND) * gb_hours,
            SAGEMAKER_SERVERLESS_GB_SECOND * gb_hours,
        )

    def storage(self, size_bytes: int) -> Price:
        """An hour of ``size_bytes`` stored."""
        gib_hours = Decimal(size_bytes) / GIB / HOURS_PER_MONTH
        site = self.storage_gib_month if self.storage_gib_month is not None else SAGEMAKER_STORAGE_GIB_MONTH
        return Price(site * gib_hours, SAGEMAKER_STORAGE_GIB_MONTH * gib_hours)


def _usd(value: object, path: Path, key: str) -> Decimal:
    try:
        found = Decimal(str(value))
    except InvalidOperation:
        found = Decimal(-1)
    if isinstance(value, bool) or not found.is_finite() or found < 0:
        raise ConfigurationError(
            f"Rates file {str(path)!r}: {key} must be a number of USD >= 0, got {value!r}"
        )
    return found
