"""Cost allocation over ledger intervals, and the site's rates."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from shipyard.core.catalog import InstanceCatalog, JobKind
from shipyard.core.costs import Interval, allocate
from shipyard.core.pricing import Rates
from shipyard.errors import ConfigurationError, ValidationError

T0 = dt.datetime(2026, 11, 30, 23, 0, tzinfo=dt.UTC)


def _interval(key: str, hours: float, *, start: dt.datetime = T0, **kw: object) -> Interval:
    fields: dict[str, object] = {
        "kind": "training",
        "name": key,
        "arn": f"arn:{key}",
        "instance_type": "ml.m5.large",
        "count": 1,
        "usd_per_hour": Decimal("0.115"),
        "sagemaker_usd_per_hour": Decimal("0.115"),
        "started": start,
        "last_seen": start,
        "ended": start + dt.timedelta(hours=hours),
        **kw,
    }
    return Interval(key=key, **fields)  # type: ignore[arg-type]


def test_spend_is_seconds_times_count_times_price_grouped_by_tag() -> None:
    rows = allocate(
        [
            _interval("a", 2, count=2, tags={"Project": "titanic"}),
            _interval("b", 1, tags={"Project": "titanic"}, usd_per_hour=Decimal(0)),
            _interval("c", 1, tags={}),
        ],
        ["tag:Project"],
        start=T0,
        end=T0 + dt.timedelta(days=1),
        now=T0 + dt.timedelta(days=1),
    )
    assert rows == [
        {
            "tag:Project": "titanic",
            "unit_seconds": 18000.0,
            "cost_usd": Decimal("0.460000"),  # 4 instance-hours at the site's price; b was free
            "sagemaker_cost_usd": Decimal("0.575000"),  # 5 at SageMaker's
        },
        {
            "tag:Project": None,
            "unit_seconds": 3600.0,
            "cost_usd": Decimal("0.115000"),
            "sagemaker_cost_usd": Decimal("0.115000"),
        },
    ]


def test_intervals_are_cut_at_day_and_month_boundaries_and_at_the_window() -> None:
    running = _interval("r", 0, ended=None)  # still in use: counted up to now
    rows = allocate(
        [_interval("a", 3), running],
        ["month", "day"],
        start=T0 + dt.timedelta(minutes=30),
        end=T0 + dt.timedelta(days=2),
        now=T0 + dt.timedelta(hours=3),
    )
    by_day = {(r["month"], r["day"]): r["unit_seconds"] for r in rows}
    # a: 23:30-24:00 on Nov 30, then 00:00-02:00 on Dec 1; r: the same, up to now (02:00)
    assert by_day == {("2026-11", "2026-11-30"): 3600.0, ("2026-12", "2026-12-01"): 14400.0}


def test_unknown_groups_are_refused_by_name() -> None:
    with pytest.raises(ValidationError, match="Cannot group costs by 'colour'"):
        allocate([], ["colour"], start=T0, end=T0, now=T0)


def test_site_rates_by_type_by_resources_or_sagemakers(tmp_path: Path) -> None:
    catalog = InstanceCatalog.load()
    m5 = catalog.get("ml.m5.large")  # 2 vCPU, 8 GiB
    assert Rates.load(tmp_path / "none.toml").instance(m5, JobKind.TRAINING).site == m5.price_per_hour(
        JobKind.TRAINING
    )
    path = tmp_path / "rates.toml"
    path.write_text('vcpu_hour = 0.01\nmemory_gib_hour = 0.001\n[instance_types]\n"ml.c5.xlarge" = 0\n')
    rates = Rates.load(path)
    price = rates.instance(m5, JobKind.HOSTING)
    assert price.site == Decimal("0.028") and price.sagemaker == m5.price_per_hour(JobKind.HOSTING)
    assert rates.instance(catalog.get("ml.c5.xlarge"), JobKind.TRAINING).site == 0
    storage = rates.storage(730 * 2**30)  # 730 GiB for an hour: a GiB-month's worth
    assert storage.sagemaker == Decimal("0.023") and storage.site == Decimal("0.023")
    path.write_text("gpu_hour = -1\n")
    with pytest.raises(ConfigurationError, match="gpu_hour must be a number of USD >= 0, got -1"):
        Rates.load(path)
    path.write_text("cpu_hour = 1\n")
    with pytest.raises(ConfigurationError, match="unknown setting 'cpu_hour'"):
        Rates.load(path)
