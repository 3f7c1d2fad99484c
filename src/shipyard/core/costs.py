"""Cost allocation: ledger intervals → spend, grouped the way a researcher asks about it.

An interval is a priced resource in use from ``started`` to ``ended`` (or still in use): a training
job's instances, an endpoint's model server, a bucket at its size. Spend over a window is each
interval's overlap with the window times its count times its hourly prices; an interval that spans several
days or months is split at their (UTC) boundaries when grouping by them.

Each interval records its ``owner``: the ARN of the user whose request created the resource
(None for root's: the lab's). Intervals recorded before there were users hold the access key id
of the create request instead; reports show it as it is (:func:`user_of`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from shipyard.errors import ValidationError

CENT = Decimal("0.000001")  # reports keep micro-dollars: a short job costs a fraction of a cent
_SECONDS_PER_HOUR = Decimal(3600)

# What a report can be grouped by, besides "tag:<key>".
GROUPS = ("kind", "instance_type", "resource", "parent", "user", "day", "month")


@dataclasses.dataclass(frozen=True)
class Interval:
    """One ledger row.

    Attributes:
        kind: "training", "processing", "transform", "endpoint" or "storage".
        parent: The tuning job of a trial, the endpoint of a variant's instance; else None.
        usd_per_hour / sagemaker_usd_per_hour: Per unit (instance), the site's and SageMaker's.
        owner: The ARN of the user who created the resource (None: root's, the lab's; an
            access key id in intervals recorded before there were users).
        tags: The resource's tags when it was recorded (kept: the resource may be gone).
        gpus: GPUs per unit (each instance's, as placed); None: not recorded (intervals from
            before the ledger kept them: the reports take the type's).
    """

    key: str
    kind: str
    name: str
    arn: str
    instance_type: str
    count: int
    usd_per_hour: Decimal
    sagemaker_usd_per_hour: Decimal
    started: dt.datetime
    last_seen: dt.datetime
    ended: dt.datetime | None = None
    parent: str | None = None
    owner: str | None = None
    tags: Mapping[str, str] = dataclasses.field(default_factory=dict)
    gpus: int | None = None

    def seconds(
        self, start: dt.datetime | None = None, end: dt.datetime | None = None, *, now: dt.datetime
    ) -> Decimal:
        """Unit-seconds (instance-seconds) inside [start, end)."""
        begin = max(self.started, start) if start else self.started
        finish = min(self.ended or now, end) if end else (self.ended or now)
        if finish <= begin:
            return Decimal(0)
        return Decimal(str((finish - begin).total_seconds())) * self.count

    def gpu_seconds(
        self, start: dt.datetime | None = None, end: dt.datetime | None = None, *, now: dt.datetime
    ) -> Decimal:
        """GPU-seconds inside [start, end): its units' seconds times each one's GPUs."""
        return self.seconds(start, end, now=now) * (self.gpus or 0)

    def cost(
        self, start: dt.datetime | None = None, end: dt.datetime | None = None, *, now: dt.datetime
    ) -> Decimal:
        return self.usd_per_hour * self.seconds(start, end, now=now) / _SECONDS_PER_HOUR

    def sagemaker_cost(
        self, start: dt.datetime | None = None, end: dt.datetime | None = None, *, now: dt.datetime
    ) -> Decimal:
        return self.sagemaker_usd_per_hour * self.seconds(start, end, now=now) / _SECONDS_PER_HOUR


def user_of(owner: str | None) -> str | None:
    """Who an interval's owner is, for people: a user's name (the last part of its ARN); None
    for root's (the lab's); anything else (an access key id, recorded before there were users)
    as it is."""
    if owner is None:
        return None
    return owner.rsplit("/", 1)[-1] if owner.startswith("arn:") else owner


def user_name(owner: str | None) -> str | None:
    """The name of the user whose ARN ``owner`` is; None when it is not a user's ARN."""
    if owner is None or not owner.startswith("arn:") or ":user/" not in owner:
        return None
    return owner.rsplit("/", 1)[-1]


def money(usd: Decimal) -> str:
    """USD for people: cents from a dollar up (and for nothing), else the digits that matter
    ("$0.0575", not "$0.06": a short job costs fractions of a cent)."""
    if usd == 0 or abs(usd) >= 1:
        return f"${usd:,.2f}"
    return f"${usd.quantize(CENT).normalize():f}"


def check_groups(groups: Sequence[str]) -> list[str]:
    """The group-by keys, checked: each one of GROUPS or ``tag:<key>``."""
    for group in groups:
        if group not in GROUPS and not (group.startswith("tag:") and len(group) > 4):
            raise ValidationError(
                f"Cannot group costs by {group!r}: use {', '.join(GROUPS)} or tag:<key>",
                field="group_by",
                value=group,
            )
    return list(groups)


def _boundaries(start: dt.datetime, end: dt.datetime, unit: str) -> list[tuple[dt.datetime, dt.datetime]]:
    """[start, end) cut at UTC day or month boundaries."""
    pieces = []
    at = start.astimezone(dt.UTC)
    while at < end:
        if unit == "day":
            following = dt.datetime(at.year, at.month, at.day, tzinfo=dt.UTC) + dt.timedelta(days=1)
        else:
            following = dt.datetime(at.year + at.month // 12, at.month % 12 + 1, 1, tzinfo=dt.UTC)
        pieces.append((at, min(following, end)))
        at = following
    return pieces


def allocate(
    intervals: Iterable[Interval],
    groups: Sequence[str],
    *,
    start: dt.datetime,
    end: dt.datetime,
    now: dt.datetime,
    tags_of: Callable[[Interval], Mapping[str, str]] | None = None,
) -> list[dict[str, Any]]:
    """Spend in [start, end) by ``groups``: one row per combination that spent anything, with
    ``unit_seconds``, ``gpu_seconds`` (of the GPUs those units had; their price is in the
    cost), ``cost_usd`` and ``sagemaker_cost_usd``, most expensive first. A row's
    missing tag is ``None`` ("untagged"); its ``user`` the owner's name (:func:`user_of`), None
    for root's."""
    groups = check_groups(groups)
    time_unit = "day" if "day" in groups else "month" if "month" in groups else None  # cut at the finer
    totals: dict[tuple[Any, ...], list[Decimal]] = {}
    for interval in intervals:
        tags = tags_of(interval) if tags_of else interval.tags
        first = max(interval.started, start)
        last = min(interval.ended or now, end, now)
        if last <= first:
            continue
        pieces = _boundaries(first, last, time_unit) if time_unit else [(first, last)]
        for piece_start, piece_end in pieces:
            key = tuple(_value(g, interval, tags, piece_start) for g in groups)
            seconds = interval.seconds(piece_start, piece_end, now=now)
            sums = totals.setdefault(key, [Decimal(0), Decimal(0), Decimal(0), Decimal(0)])
            sums[0] += seconds
            sums[1] += interval.usd_per_hour * seconds / _SECONDS_PER_HOUR
            sums[2] += interval.sagemaker_usd_per_hour * seconds / _SECONDS_PER_HOUR
            sums[3] += seconds * (interval.gpus or 0)
    rows = [
        {
            **dict(zip(groups, key, strict=True)),
            "unit_seconds": float(round(sums[0], 3)),
            "gpu_seconds": float(round(sums[3], 3)),
            "cost_usd": sums[1].quantize(CENT),
            "sagemaker_cost_usd": sums[2].quantize(CENT),
        }
        for key, sums in totals.items()
    ]
    rows.sort(key=lambda r: (-r["cost_usd"], -r["sagemaker_cost_usd"], [str(r[g]) for g in groups]))
    return rows


def _value(group: str, interval: Interval, tags: Mapping[str, str], at: dt.datetime) -> Any:
    if group.startswith("tag:"):
        return tags.get(group[4:])
    if group == "day":
        return at.strftime("%Y-%m-%d")
    if group == "month":
        return at.strftime("%Y-%m")
    return {
        "kind": interval.kind,
        "instance_type": interval.instance_type,
        "resource": interval.name,
        "parent": interval.parent,
        "user": user_of(interval.owner),
    }[group]
