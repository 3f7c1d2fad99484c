"""The instance catalog: ``ml.*`` instance types, their resources and their on-demand prices.

The packaged ``data/instance_types.csv`` holds SageMaker's types and prices; a site may override
rows or add its own from a CSV with the same columns (``<data dir>/instance_types.csv``).
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import enum
import io
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Any

from shipyard.errors import ConfigurationError, ValidationError

_SECONDS_PER_HOUR = Decimal(3600)
_SIZE_ORDER = {"nano": 0, "micro": 1, "small": 2, "medium": 3, "large": 4, "xlarge": 5, "metal": 10_000}
COLUMNS = (
    "instance_type",
    "family",
    "vcpu",
    "memory_gib",
    "gpu_count",
    "gpu_model",
    "gpu_memory_gib",
    "training_usd_per_hour",
    "processing_usd_per_hour",
    "hosting_usd_per_hour",
    "transform_usd_per_hour",
    "notebook_usd_per_hour",
)


class JobKind(enum.StrEnum):
    """The kinds of work SageMaker prices separately."""

    TRAINING = "training"
    PROCESSING = "processing"
    HOSTING = "hosting"
    TRANSFORM = "transform"
    NOTEBOOK = "notebook"  # notebook instances (their own price list)

    @property
    def price_column(self) -> str:
        return f"{self.value}_usd_per_hour"


@dataclasses.dataclass(frozen=True)
class InstanceType:
    """One ``ml.*`` instance type.

    Attributes:
        prices: On-demand USD per hour for each kind of work the type is offered for.
    """

    name: str
    family: str
    vcpu: int
    memory_gib: float
    gpu_count: int = 0
    gpu_model: str | None = None
    gpu_memory_gib: float = 0.0
    prices: Mapping[JobKind, Decimal] = dataclasses.field(default_factory=dict)

    def supports(self, kind: JobKind) -> bool:
        return kind in self.prices

    def price_per_hour(self, kind: JobKind) -> Decimal:
        """USD per instance-hour for ``kind``; ValidationError if the type is not offered for it."""
        try:
            return self.prices[kind]
        except KeyError:
            raise ValidationError(
                f"{self.name} is not offered for {kind.value} jobs",
                field="InstanceType",
                value=self.name,
            ) from None

    def cost(self, kind: JobKind, seconds: float | Decimal, count: int = 1) -> Decimal:
        """Price of ``count`` instances for ``seconds`` (unrounded)."""
        return self.price_per_hour(kind) * count * Decimal(str(seconds)) / _SECONDS_PER_HOUR

    @property
    def size_rank(self) -> tuple[int, int]:
        size = self.name.rsplit(".", 1)[-1]
        if size.endswith("xlarge") and size != "xlarge":
            multiple = size.removesuffix("xlarge")
            return _SIZE_ORDER["xlarge"], int(multiple) if multiple.isdigit() else 0
        return _SIZE_ORDER.get(size, 0), 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "vcpu": self.vcpu,
            "memory_gib": self.memory_gib,
            "gpu_count": self.gpu_count,
            "gpu_model": self.gpu_model,
            "gpu_memory_gib": self.gpu_memory_gib,
            **{
                kind.price_column: float(self.prices[kind]) if kind in self.prices else None
                for kind in JobKind
            },
        }


class InstanceCatalog:
    """The known instance types, by name."""

    def __init__(self, types: Iterable[InstanceType]) -> None:
        self._types = {t.name: t for t in types}

    @classmethod
    def load(cls, override: Path | None = None) -> InstanceCatalog:
        """The packaged catalog, with ``override``'s rows replacing or adding types."""
        packaged = resources.files("shipyard.core.data").joinpath("instance_types.csv").read_text()
        types = {t.name: t for t in _parse(io.StringIO(packaged), "packaged instance_types.csv", {})}
        if override is not None:
            try:
                text = Path(override).read_text()
            except OSError as exc:
                raise ConfigurationError(f"Cannot read instance catalog {str(override)!r}: {exc}") from None
            for t in _parse(io.StringIO(text), str(override), types):
                types[t.name] = t
        return cls(types.values())

    def get(self, name: str) -> InstanceType:
        try:
            return self._types[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._types, n=3, cutoff=0.6)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValidationError(
                f"Unknown instance type {name!r}.{hint} Add it to <data dir>/instance_types.csv to use it.",
                field="InstanceType",
                value=name,
            ) from None

    def for_kind(self, kind: JobKind) -> list[InstanceType]:
        return [t for t in self if t.supports(kind)]

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[InstanceType]:
        return iter(sorted(self._types.values(), key=lambda t: (t.family, t.size_rank, t.name)))

    def __len__(self) -> int:
        return len(self._types)


def _parse(stream: io.StringIO, source: str, existing: Mapping[str, InstanceType]) -> Iterator[InstanceType]:
    reader = csv.DictReader(stream)
    unknown = set(reader.fieldnames or ()) - set(COLUMNS)
    if unknown or "instance_type" not in (reader.fieldnames or ()):
        raise ConfigurationError(
            f"{source}: columns must be among {', '.join(COLUMNS)} and include instance_type; "
            f"found unknown {sorted(unknown)}"
        )
    for line, row in enumerate(reader, start=2):
        yield _row_to_type(row, existing.get((row.get("instance_type") or "").strip()), source, line)


def _row_to_type(
    row: Mapping[str, str | None], base: InstanceType | None, source: str, line: int
) -> InstanceType:
    name = (row.get("instance_type") or "").strip()
    if not name:
        raise ConfigurationError(f"{source} line {line}: instance_type is empty")

    def value(column: str, convert: Any, default: Any, required: bool = False) -> Any:
        raw = row.get(column)
        if raw is None:  # column absent from the file: keep the packaged value
            if required and base is None:
                raise ConfigurationError(f"{source} line {line}: {column} is required for new type {name!r}")
            return default
        raw = raw.strip()
        if not raw:
            if required:
                raise ConfigurationError(f"{source} line {line}: {column} is required for {name!r}")
            return None
        try:
            return convert(raw)
        except (ValueError, InvalidOperation):
            raise ConfigurationError(
                f"{source} line {line}: {column} must be a number, got {raw!r} (instance type {name!r})"
            ) from None

    prices: dict[JobKind, Decimal] = {}
    for kind in JobKind:
        price = value(kind.price_column, Decimal, base.prices.get(kind) if base else None)
        if price is not None:
            if price < 0:
                raise ConfigurationError(f"{source} line {line}: {kind.price_column} must not be negative")
            prices[kind] = price
    return InstanceType(
        name=name,
        family=value("family", str, base.family if base else name.split(".")[1] if "." in name else name)
        or name.split(".")[1],
        vcpu=value("vcpu", int, base.vcpu if base else None, required=True),
        memory_gib=value("memory_gib", float, base.memory_gib if base else None, required=True),
        gpu_count=value("gpu_count", int, base.gpu_count if base else 0) or 0,
        gpu_model=value("gpu_model", str, base.gpu_model if base else None) or None,
        gpu_memory_gib=value("gpu_memory_gib", float, base.gpu_memory_gib if base else 0.0) or 0.0,
        prices=prices,
    )
