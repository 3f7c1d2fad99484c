"""Cost Explorer's questions (GetCostAndUsage, GetCostForecast) answered from ledger intervals (pure).

The ledger (core/costs.py) knows, per priced resource, its kind, instance type, count, tags and
hourly prices; Cost Explorer's words for them:

=================  ==========================================================================
SERVICE            ``Amazon SageMaker`` (jobs, endpoints, notebooks), ``Amazon Simple Storage
                   Service`` (buckets)
INSTANCE_TYPE      the instance type (``NoInstanceType`` for storage)
USAGE_TYPE         ``Train:<type>``, ``Processing:<type>``, ``Transform:<type>``, ``Host:<type>``,
                   ``Notebk:<type>``, ``TimedStorage-ByteHrs``
REGION             the server's region; LINKED_ACCOUNT its account; RECORD_TYPE ``Usage``
=================  ==========================================================================

Costs are the site's prices (UnblendedCost, BlendedCost, AmortizedCost and their Net forms
alike: the ledger has no discounts), ``PublicOnDemandCost`` SageMaker's; UsageQuantity and
NormalizedUsageAmount are unit-hours. Amounts are USD as strings, as AWS gives them.

A forecast is the current spend rate carried forward: what matched the filter cost over the
last :data:`RATE_WINDOW` (from the first use in it, if later), per second, times each forecast
period's seconds from now on. The prediction interval's bounds are that mean (the ledger keeps
no history to spread them with).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from shipyard.core.costs import CENT, Interval
from shipyard.errors import ValidationError

RATE_WINDOW = dt.timedelta(days=7)
DIMENSIONS = ("SERVICE", "INSTANCE_TYPE", "USAGE_TYPE", "REGION", "LINKED_ACCOUNT", "RECORD_TYPE")
_COSTS = {"unblendedcost", "blendedcost", "amortizedcost", "netunblendedcost", "netamortizedcost"}
_USAGE = {"usagequantity", "normalizedusageamount"}
_PUBLIC = {"publicondemandcost"}
_USAGE_TYPES = {
    "training": "Train",
    "processing": "Processing",
    "transform": "Transform",
    "endpoint": "Host",
    "notebook": "Notebk",
}
_OPTIONS = {"EQUALS", "ABSENT", "STARTS_WITH", "ENDS_WITH", "CONTAINS", "CASE_SENSITIVE", "CASE_INSENSITIVE"}
_SECONDS_PER_HOUR = Decimal(3600)


def dimension(name: str, interval: Interval, *, region: str, account: str) -> str:
    """``interval``'s value of the Cost Explorer dimension ``name`` (one of :data:`DIMENSIONS`)."""
    storage = interval.kind == "storage"
    if name == "SERVICE":
        return "Amazon Simple Storage Service" if storage else "Amazon SageMaker"
    if name == "INSTANCE_TYPE":
        return "NoInstanceType" if storage else interval.instance_type
    if name == "USAGE_TYPE":
        if storage:
            return "TimedStorage-ByteHrs"
        return f"{_USAGE_TYPES.get(interval.kind, interval.kind.title())}:{interval.instance_type}"
    if name == "REGION":
        return region
    if name == "LINKED_ACCOUNT":
        return account
    check_dimension(name)
    return "Usage"  # RECORD_TYPE


def check_dimension(name: str) -> None:
    """Raises ValidationError naming ``name`` unless it is one of :data:`DIMENSIONS`."""
    if name in DIMENSIONS:
        return
    raise ValidationError(
        f"Dimension {name!r} is not supported by Shipyard's Cost Explorer: use {', '.join(DIMENSIONS)}",
        field="Key",
        value=name,
    )


# -- periods ------------------------------------------------------------------------------------
def period(value: Mapping[str, Any], field: str = "TimePeriod") -> tuple[dt.date, dt.date]:
    """TimePeriod's Start and End (exclusive) as dates."""
    dates = []
    for member in ("Start", "End"):
        raw = str(value.get(member, ""))
        try:
            dates.append(dt.date.fromisoformat(raw))
        except ValueError:
            raise ValidationError(
                f"{field}.{member} must be a date as YYYY-MM-DD, got {raw!r}",
                field=f"{field}.{member}",
                value=raw,
            ) from None
    start, end = dates
    if end <= start:
        raise ValidationError(
            f"{field}.End ({end}) must be after {field}.Start ({start})", field=f"{field}.End", value=str(end)
        )
    return start, end


def periods(start: dt.date, end: dt.date, granularity: str) -> list[tuple[dt.date, dt.date]]:
    """[start, end) cut into days (DAILY) or calendar months (MONTHLY)."""
    if granularity not in ("DAILY", "MONTHLY"):
        raise ValidationError(
            f"Granularity {granularity!r} is not supported by Shipyard's Cost Explorer: use DAILY or MONTHLY",
            field="Granularity",
            value=granularity,
        )
    pieces = []
    at = start
    while at < end:
        if granularity == "DAILY":
            following = at + dt.timedelta(days=1)
        else:
            following = dt.date(at.year + at.month // 12, at.month % 12 + 1, 1)
        pieces.append((at, min(following, end)))
        at = following
    return pieces


def _moment(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


# -- filters ------------------------------------------------------------------------------------
Matcher = Callable[[Interval], bool]


def matcher(
    expression: Mapping[str, Any] | None, *, region: str, account: str, field: str = "Filter"
) -> Matcher:
    """A test of intervals for a Cost Explorer Expression (And, Or, Not, Dimensions, Tags), checked
    whole before any interval is tested."""
    if not expression:
        return lambda _: True
    present = [k for k in ("And", "Or", "Not", "Dimensions", "Tags", "CostCategories") if expression.get(k)]
    if len(present) != 1:
        raise ValidationError(
            f"{field} must have exactly one of And, Or, Not, Dimensions, Tags; it has {present or 'none'}",
            field=field,
            value=str(dict(expression)),
        )
    kind = present[0]
    if kind in ("And", "Or"):
        parts = [
            matcher(e, region=region, account=account, field=f"{field}.{kind}[{n}]")
            for n, e in enumerate(expression[kind])
        ]
        if kind == "And":
            return lambda i: all(p(i) for p in parts)
        return lambda i: any(p(i) for p in parts)
    if kind == "Not":
        inner = matcher(expression["Not"], region=region, account=account, field=f"{field}.Not")
        return lambda i: not inner(i)
    if kind == "CostCategories":
        raise ValidationError(
            "CostCategories are not supported by Shipyard's Cost Explorer: filter by Dimensions or Tags",
            field=f"{field}.CostCategories",
            value=str(expression["CostCategories"]),
        )
    values = expression[kind]
    key = values.get("Key")
    if not key:
        raise ValidationError(f"{field}.{kind}.Key is required", field=f"{field}.{kind}.Key", value=None)
    options = set(values.get("MatchOptions") or ["EQUALS"])
    unknown = options - _OPTIONS
    if unknown:
        raise ValidationError(
            f"MatchOptions {sorted(unknown)} are not supported here: use {', '.join(sorted(_OPTIONS))}",
            field=f"{field}.{kind}.MatchOptions",
            value=str(sorted(unknown)),
        )
    wanted = [str(v) for v in values.get("Values") or []]
    if kind == "Dimensions":
        check_dimension(key)

        def value_of(i: Interval) -> str | None:
            return dimension(key, i, region=region, account=account)
    else:

        def value_of(i: Interval) -> str | None:
            return i.tags.get(key) or None

    test = _value_test(options, wanted)
    return lambda i: test(value_of(i))


def _value_test(options: set[str], wanted: Sequence[str]) -> Callable[[str | None], bool]:
    if "ABSENT" in options:
        return lambda value: value is None
    fold = "CASE_INSENSITIVE" in options
    targets = [w.lower() if fold else w for w in wanted]
    if "STARTS_WITH" in options:
        compare: Callable[[str, str], bool] = str.startswith
    elif "ENDS_WITH" in options:
        compare = str.endswith
    elif "CONTAINS" in options:
        compare = str.__contains__
    else:
        compare = str.__eq__

    def test(value: str | None) -> bool:
        if value is None:  # an untagged resource matches the empty value, as Cost Explorer's
            return "" in wanted
        seen = value.lower() if fold else value
        return any(compare(seen, t) for t in targets)

    return test


# -- metrics --------------------------------------------------------------------------------------
def _metric_kind(name: str) -> str:
    plain = name.replace("_", "").lower()
    for kind, names in (("cost", _COSTS), ("usage", _USAGE), ("public", _PUBLIC)):
        if plain in names:
            return kind
    raise ValidationError(
        f"Metric {name!r} is not one Shipyard's ledger knows: use UnblendedCost, BlendedCost, "
        "AmortizedCost, NetUnblendedCost, NetAmortizedCost, PublicOnDemandCost, UsageQuantity "
        "or NormalizedUsageAmount",
        field="Metrics",
        value=name,
    )


def _amount(value: Decimal) -> str:
    return format(value.quantize(CENT).normalize(), "f") if value else "0"


def _measure(
    interval: Interval, start: dt.datetime, end: dt.datetime, now: dt.datetime
) -> dict[str, Decimal]:
    seconds = interval.seconds(start, min(end, now), now=now)
    return {
        "cost": interval.usd_per_hour * seconds / _SECONDS_PER_HOUR,
        "usage": seconds / _SECONDS_PER_HOUR,
        "public": interval.sagemaker_usd_per_hour * seconds / _SECONDS_PER_HOUR,
    }


def _metrics(metrics: Sequence[str], sums: Mapping[str, Decimal]) -> dict[str, dict[str, str]]:
    answer = {}
    for name in metrics:
        kind = _metric_kind(name)
        answer[name] = {
            "Amount": _amount(sums.get(kind, Decimal(0))),
            "Unit": "Hrs" if kind == "usage" else "USD",
        }
    return answer


# -- GetCostAndUsage ------------------------------------------------------------------------------
def cost_and_usage(
    intervals: Sequence[Interval], params: Mapping[str, Any], *, now: dt.datetime, region: str, account: str
) -> dict[str, Any]:
    """GetCostAndUsage's answer over ``intervals`` (those the caller may see) for ``params``."""
    start, end = period(params["TimePeriod"])
    pieces = periods(start, end, params["Granularity"])
    metrics = list(params["Metrics"])
    for name in metrics:
        _metric_kind(name)
    groups = list(params.get("GroupBy") or [])
    if len(groups) > 2:
        raise ValidationError("GroupBy takes at most 2 groups", field="GroupBy", value=str(groups))
    keyers = [_keyer(g, region=region, account=account) for g in groups]
    test = matcher(params.get("Filter"), region=region, account=account)
    chosen = [i for i in intervals if test(i)]
    results = []
    for first, last in pieces:
        begin, finish = _moment(first), _moment(last)
        totals: dict[str, Decimal] = {}
        grouped: dict[tuple[str, ...], dict[str, Decimal]] = {}
        for interval in chosen:
            measured = _measure(interval, begin, finish, now)
            if not measured["usage"]:
                continue
            sums = grouped.setdefault(tuple(k(interval) for k in keyers), {}) if keyers else totals
            for kind, value in measured.items():
                sums[kind] = sums.get(kind, Decimal(0)) + value
        result: dict[str, Any] = {
            "TimePeriod": {"Start": first.isoformat(), "End": last.isoformat()},
            "Total": {} if keyers else _metrics(metrics, totals),
            "Groups": [
                {"Keys": list(keys), "Metrics": _metrics(metrics, sums)}
                for keys, sums in sorted(
                    grouped.items(), key=lambda kv: (-kv[1].get("cost", Decimal(0)), kv[0])
                )
            ],
            "Estimated": finish > now,
        }
        results.append(result)
    return {
        "GroupDefinitions": [{"Type": g["Type"], "Key": g["Key"]} for g in groups],
        "ResultsByTime": results,
        "DimensionValueAttributes": [],
    }


def _keyer(group: Mapping[str, Any], *, region: str, account: str) -> Callable[[Interval], str]:
    kind, key = group.get("Type"), group.get("Key")
    if not key:
        raise ValidationError("GroupBy[].Key is required", field="GroupBy.Key", value=None)
    if kind == "DIMENSION":
        check_dimension(key)
        return lambda i: dimension(key, i, region=region, account=account)
    if kind == "TAG":
        return lambda i: f"{key}${i.tags.get(key, '')}"
    raise ValidationError(
        f"GroupBy Type {kind!r} is not supported by Shipyard's Cost Explorer: use DIMENSION or TAG",
        field="GroupBy.Type",
        value=str(kind),
    )


# -- GetCostForecast ------------------------------------------------------------------------------
def cost_forecast(
    intervals: Sequence[Interval], params: Mapping[str, Any], *, now: dt.datetime, region: str, account: str
) -> dict[str, Any]:
    """GetCostForecast's answer: ``intervals`` should cover :data:`RATE_WINDOW` before ``now``."""
    start, end = period(params["TimePeriod"])
    if start < now.date():
        raise ValidationError(
            f"TimePeriod.Start ({start}) must be today ({now.date()}) or later: a forecast is of the future",
            field="TimePeriod.Start",
            value=str(start),
        )
    kind = _metric_kind(params["Metric"])
    pieces = periods(start, end, params["Granularity"])
    test = matcher(params.get("Filter"), region=region, account=account)
    chosen = [i for i in intervals if test(i)]
    window_start = now - RATE_WINDOW
    if chosen:
        window_start = max(window_start, min(i.started for i in chosen))
    window = Decimal(str((now - window_start).total_seconds()))
    spent = sum((_measure(i, window_start, now, now)[kind] for i in chosen), Decimal(0))
    rate = spent / window if window > 0 else Decimal(0)
    unit = "Hrs" if kind == "usage" else "USD"
    results = []
    total = Decimal(0)
    for first, last in pieces:
        begin, finish = max(_moment(first), now), _moment(last)
        mean = rate * Decimal(str(max((finish - begin).total_seconds(), 0)))
        total += mean
        amount = _amount(mean)
        results.append(
            {
                "TimePeriod": {"Start": first.isoformat(), "End": last.isoformat()},
                "MeanValue": amount,
                "PredictionIntervalLowerBound": amount,
                "PredictionIntervalUpperBound": amount,
            }
        )
    return {"Total": {"Amount": _amount(total), "Unit": unit}, "ForecastResultsByTime": results}
