"""Cost allocation over ledger intervals, and the site's rates."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from shipyard.core.catalog import InstanceCatalog, JobKind
from shipyard.core.costs import Interval, allocate
from shipyard.core.placement import Resources
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
            "gpu_seconds": 0.0,
            "cost_usd": Decimal("0.460000"),  # 4 instance-hours at the site's price; b was free
            "sagemaker_cost_usd": Decimal("0.575000"),  # 5 at SageMaker's
        },
        {
            "tag:Project": None,
            "unit_seconds": 3600.0,
            "gpu_seconds": 0.0,
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


def test_a_scaled_down_instance_is_charged_as_the_cheapest_type_that_gives_what_it_got(
    tmp_path: Path,
) -> None:
    catalog = InstanceCatalog.load()
    p4d = catalog.get("ml.p4d.24xlarge")  # 96 vCPUs, 1152 GiB, 8 GPUs: 37.688 an hour
    rates = Rates()
    # 2 vCPUs and 4 GiB, no GPU: an ml.c5.large's worth (0.102; ml.t3.medium's 0.05 is a
    # burstable share of a core, so not a candidate), at SageMaker's price of what was asked
    price = rates.granted(p4d, Resources(2.0, 4.0, 0), JobKind.TRAINING, catalog)
    assert (price.site, price.sagemaker, price.billed_as) == (
        Decimal("0.102"),
        Decimal("37.688"),
        "ml.c5.large",
    )
    # more memory than a c5.large has: the cheapest that holds it (the r5 beats an m5 of 32 GiB)
    price = rates.granted(p4d, Resources(2.0, 23.4, 0), JobKind.TRAINING, catalog)
    assert (price.site, price.billed_as) == (Decimal("0.302"), "ml.r5.xlarge")
    # a GPU granted is paid for as a GPU type
    price = rates.granted(p4d, Resources(4.0, 16.0, 1), JobKind.TRAINING, catalog)
    assert price.billed_as is not None and catalog.get(price.billed_as).gpu_count >= 1
    assert price.site < price.sagemaker
    # granted everything it asked for: its own price, as before
    m5 = catalog.get("ml.m5.large")
    assert rates.granted(m5, Resources(2.0, 8.0, 0), JobKind.TRAINING, catalog) == rates.instance(
        m5, JobKind.TRAINING
    )
    # a site's own rates price the candidates, and one scaled down never costs more than asked
    path = tmp_path / "rates.toml"
    path.write_text('vcpu_hour = 0.01\nmemory_gib_hour = 0.001\n[instance_types]\n"ml.m5.24xlarge" = 0.001\n')
    site = Rates.load(path)
    m5_24 = catalog.get("ml.m5.24xlarge")
    price = site.granted(m5_24, Resources(2.0, 4.0, 0), JobKind.PROCESSING, catalog)
    assert (price.site, price.sagemaker, price.billed_as) == (Decimal("0.001"), Decimal("5.53"), None)
    price = site.granted(p4d, Resources(2.0, 4.0, 0), JobKind.HOSTING, catalog)
    assert (price.site, price.billed_as) == (Decimal("0.001"), "ml.m5.24xlarge")  # the site's cheapest
    path.write_text("vcpu_hour = 0.01\nmemory_gib_hour = 0.001\n")
    price = Rates.load(path).granted(p4d, Resources(2.0, 4.0, 0), JobKind.HOSTING, catalog)
    assert (price.site, price.billed_as) == (Decimal("0.024"), "ml.c5.large")  # 2 x 0.01 + 4 x 0.001
