"""Cost Explorer's answers from ledger intervals (core/cost_explorer.py): periods, dimensions,
filters, groups, metrics as strings, the forecast's rate, and bad input named."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from shipyard.core.cost_explorer import cost_and_usage, cost_forecast, dimension, periods
from shipyard.core.costs import Interval
from shipyard.errors import ValidationError

NOW = dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
PLACE = {"region": "us-east-1", "account": "000000000000"}


def _interval(kind: str, start: dt.datetime, hours: float, price: str = "1", **tags: str) -> Interval:
    return Interval(
        f"{kind}/{start}", kind, "r", "arn", "ml.m5.large" if kind != "storage" else "s3", 1,
        Decimal(price), Decimal(price), start, start, start + dt.timedelta(hours=hours), tags=tags,
    )  # fmt: skip


def _ask(intervals: list[Interval], **params: Any) -> dict[str, Any]:
    base = {"TimePeriod": {"Start": "2026-02-27", "End": "2026-03-02"}, "Granularity": "DAILY"}
    return cost_and_usage(intervals, {"Metrics": ["UnblendedCost"], **base, **params}, now=NOW, **PLACE)


def test_periods_cut_at_days_and_months() -> None:
    assert periods(dt.date(2026, 1, 30), dt.date(2026, 3, 2), "MONTHLY") == [
        (dt.date(2026, 1, 30), dt.date(2026, 2, 1)),
        (dt.date(2026, 2, 1), dt.date(2026, 3, 1)),
        (dt.date(2026, 3, 1), dt.date(2026, 3, 2)),
    ]
    assert len(periods(dt.date(2026, 2, 27), dt.date(2026, 3, 2), "DAILY")) == 3
    with pytest.raises(ValidationError, match="HOURLY"):
        periods(dt.date(2026, 1, 1), dt.date(2026, 1, 2), "HOURLY")


def test_an_interval_across_midnight_is_split_between_days() -> None:
    answer = _ask([_interval("training", dt.datetime(2026, 2, 28, 23, tzinfo=dt.UTC), 2)])
    amounts = [r["Total"]["UnblendedCost"]["Amount"] for r in answer["ResultsByTime"]]
    assert amounts == ["0", "1", "1"]
    assert [r["Estimated"] for r in answer["ResultsByTime"]] == [False, False, False]


def test_dimensions_name_services_and_usage_types() -> None:
    storage = _interval("storage", NOW, 1)
    endpoint = _interval("endpoint", NOW, 1)
    assert dimension("SERVICE", storage, **PLACE) == "Amazon Simple Storage Service"
    assert dimension("INSTANCE_TYPE", storage, **PLACE) == "NoInstanceType"
    assert dimension("USAGE_TYPE", endpoint, **PLACE) == "Host:ml.m5.large"
    with pytest.raises(ValidationError, match="'AZ'"):
        dimension("AZ", endpoint, **PLACE)


def test_filters_combine_and_match_options() -> None:
    day = dt.datetime(2026, 2, 28, 1, tzinfo=dt.UTC)
    rows = [_interval("training", day, 1, "2", team="vision"), _interval("endpoint", day, 1, "3")]

    def total(expression: dict[str, Any]) -> str:
        found = _ask(rows, Filter=expression, Granularity="MONTHLY")["ResultsByTime"]
        return str(sum(Decimal(r["Total"]["UnblendedCost"]["Amount"]) for r in found))

    assert (
        total(
            {"Tags": {"Key": "team", "Values": ["VIS"], "MatchOptions": ["STARTS_WITH", "CASE_INSENSITIVE"]}}
        )
        == "2"
    )
    assert total({"Tags": {"Key": "team", "MatchOptions": ["ABSENT"]}}) == "3"
    assert total({"Or": [{"Dimensions": {"Key": "USAGE_TYPE", "Values": ["Host:ml.m5.large"]}},
                         {"Tags": {"Key": "team", "Values": ["vision"]}}]}) == "5"  # fmt: skip
    with pytest.raises(ValidationError, match="exactly one"):
        total({"Tags": {"Key": "team", "Values": ["a"]}, "Dimensions": {"Key": "SERVICE", "Values": ["x"]}})
    with pytest.raises(ValidationError, match="CostCategories"):
        total({"CostCategories": {"Key": "x", "Values": ["y"]}})


def test_bad_metrics_and_periods_are_named() -> None:
    with pytest.raises(ValidationError, match="'Bananas'"):
        _ask([], Metrics=["Bananas"])
    with pytest.raises(ValidationError, match=r"TimePeriod\.End"):
        _ask([], TimePeriod={"Start": "2026-03-02", "End": "2026-03-01"})
    with pytest.raises(ValidationError, match="'2026-3-1'"):
        _ask([], TimePeriod={"Start": "2026-3-1", "End": "2026-03-02"})


def test_the_forecast_carries_the_recent_rate_forward() -> None:
    # 6 USD over the 12 h since the first use: 0.5 USD an hour, 12 USD a day.
    rows = [_interval("training", NOW - dt.timedelta(hours=12), 6)]
    forecast = cost_forecast(
        rows,
        {
            "TimePeriod": {"Start": "2026-03-02", "End": "2026-03-04"},
            "Metric": "UNBLENDED_COST",
            "Granularity": "DAILY",
        },
        now=NOW,
        **PLACE,
    )
    assert [f["MeanValue"] for f in forecast["ForecastResultsByTime"]] == [
        "6",
        "12",
    ]  # today's rest, tomorrow
    assert forecast["Total"] == {"Amount": "18", "Unit": "USD"}
