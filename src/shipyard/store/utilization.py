"""Utilization samples of instances: job instances (by host) and endpoint model servers."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa

from shipyard.store._db import Database
from shipyard.store._models import UtilizationRow


@dataclasses.dataclass(frozen=True)
class Sample:
    host: str
    at: dt.datetime
    cpu: float
    memory: float
    memory_bytes: int
    disk: float | None = None
    gpu: float | None = None  # GPUUtilization: % busy, averaged over the instance's GPUs
    gpu_memory: float | None = None  # GPUMemoryUtilization: % of their memory in use

    @classmethod
    def from_json(cls, host: str, point: dict[str, object]) -> Sample:
        at = dt.datetime.fromisoformat(str(point["t"]))
        disk, gpu, gpu_memory = point.get("disk"), point.get("gpu"), point.get("gpu_memory")
        return cls(
            host,
            at,
            float(point["cpu"]),  # type: ignore[arg-type]
            float(point["memory"]),  # type: ignore[arg-type]
            int(point.get("memory_bytes", 0)),  # type: ignore[call-overload]
            float(disk) if disk is not None else None,  # type: ignore[arg-type]
            float(gpu) if gpu is not None else None,  # type: ignore[arg-type]
            float(gpu_memory) if gpu_memory is not None else None,  # type: ignore[arg-type]
        )

    def to_json(self) -> dict[str, object]:
        return {
            "host": self.host,
            "timestamp": self.at.isoformat(),
            "cpu": self.cpu,
            "memory": self.memory,
            "memory_bytes": self.memory_bytes,
            "disk": self.disk,
            "gpu": self.gpu,
            "gpu_memory": self.gpu_memory,
        }


class UtilizationRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, kind: str, name: str, samples: Iterable[Sample]) -> None:
        rows = [
            UtilizationRow(
                resource_kind=kind,
                resource_name=name,
                host=s.host,
                at=s.at,
                cpu=s.cpu,
                memory=s.memory,
                memory_bytes=s.memory_bytes,
                disk=s.disk,
                gpu=s.gpu,
                gpu_memory=s.gpu_memory,
            )
            for s in samples
        ]
        if rows:
            with self._db.transaction() as session:
                session.add_all(rows)

    def series(self, kind: str, name: str, *, since: dt.datetime | None = None) -> list[Sample]:
        stmt = sa.select(UtilizationRow).where(
            UtilizationRow.resource_kind == kind, UtilizationRow.resource_name == name
        )
        if since is not None:
            stmt = stmt.where(UtilizationRow.at >= since)
        with self._db.transaction(readonly=True) as session:
            return [
                Sample(
                    r.host,
                    r.at if r.at.tzinfo else r.at.replace(tzinfo=dt.UTC),
                    r.cpu,
                    r.memory,
                    r.memory_bytes,
                    r.disk,
                    r.gpu,
                    r.gpu_memory,
                )
                for r in session.scalars(stmt.order_by(UtilizationRow.at, UtilizationRow.id))
            ]

    def peaks(self, kind: str, since: dt.datetime) -> dict[str, tuple[float, int, int]]:
        """Each resource of ``kind`` sampled since ``since``: (peak CPU %, peak memory bytes, samples)."""
        stmt = (
            sa.select(
                UtilizationRow.resource_name,
                sa.func.max(UtilizationRow.cpu),
                sa.func.max(UtilizationRow.memory_bytes),
                sa.func.count(),
            )
            .where(UtilizationRow.resource_kind == kind, UtilizationRow.at >= since)
            .group_by(UtilizationRow.resource_name)
        )
        with self._db.transaction(readonly=True) as session:
            return {name: (float(cpu), int(mem), int(n)) for name, cpu, mem, n in session.execute(stmt)}

    def gpu_peaks(self, kind: str, since: dt.datetime) -> dict[str, tuple[float, int]]:
        """Each resource of ``kind`` whose GPUs were sampled since ``since``: (peak GPU
        utilization %, the samples that read it)."""
        stmt = (
            sa.select(UtilizationRow.resource_name, sa.func.max(UtilizationRow.gpu), sa.func.count())
            .where(
                UtilizationRow.resource_kind == kind,
                UtilizationRow.at >= since,
                UtilizationRow.gpu.is_not(None),
            )
            .group_by(UtilizationRow.resource_name)
        )
        with self._db.transaction(readonly=True) as session:
            return {name: (float(gpu or 0), int(n)) for name, gpu, n in session.execute(stmt)}
