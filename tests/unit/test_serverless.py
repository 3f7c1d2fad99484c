"""Serverless endpoints' pure decisions: the ServerlessConfig a variant may have, admitting a
request under MaxConcurrency, when a model server scales to zero, and what a request is billed."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from shipyard.core.hosting import EndpointConfigSpec, EndpointState
from shipyard.core.pricing import Rates
from shipyard.core.serverless import (
    ServerlessConfig,
    admits,
    billed_span,
    should_scale_to_zero,
    warm_copies_missing,
)
from shipyard.errors import ValidationError

FIELD = "ProductionVariants.0.ServerlessConfig"


def _config(**variant: object) -> EndpointConfigSpec:
    return EndpointConfigSpec.from_request(
        {
            "EndpointConfigName": "c",
            "ProductionVariants": [{"VariantName": "v", "ModelName": "m", **variant}],
        }
    )


def test_a_serverless_variant_has_memory_and_concurrency_and_no_instances() -> None:
    [variant] = _config(ServerlessConfig={"MemorySizeInMB": 4096, "MaxConcurrency": 20}).variants
    assert variant.serverless == ServerlessConfig(4096, 20)
    assert (variant.instance_type, variant.instance_count) == ("", 0)
    state = EndpointState.new(_config(ServerlessConfig={"MemorySizeInMB": 4096, "MaxConcurrency": 20}))
    assert EndpointState.from_record(state.status.value, state.to_record()) == state  # kept as stored


@pytest.mark.parametrize(
    ("serverless", "field", "says"),
    [
        ({"MemorySizeInMB": 1500, "MaxConcurrency": 1}, "MemorySizeInMB", "'1500'"),
        ({"MemorySizeInMB": 512, "MaxConcurrency": 1}, "MemorySizeInMB", "1024, 2048, 3072"),
        ({"MemorySizeInMB": 1024, "MaxConcurrency": 0}, "MaxConcurrency", "between 1 and 200"),
        ({"MemorySizeInMB": 1024, "MaxConcurrency": 201}, "MaxConcurrency", "'201'"),
        ({"MaxConcurrency": 1}, "MemorySizeInMB", "required"),
        ({"MemorySizeInMB": 1024}, "MaxConcurrency", "required"),
        ({"MemorySizeInMB": 1024, "MaxConcurrency": 2, "ProvisionedConcurrency": 3}, "Provisioned", "(2)"),
        ({"MemorySizeInMB": 1024, "MaxConcurrency": 2, "ProvisionedConcurrency": 0}, "Provisioned", "got 0"),
    ],
)
def test_a_bad_serverless_config_names_the_field_and_value(
    serverless: dict[str, int], field: str, says: str
) -> None:
    with pytest.raises(ValidationError) as error:
        ServerlessConfig.from_request(serverless, FIELD)
    assert (error.value.field or "").startswith(f"{FIELD}.{field}")
    assert says in error.value.message


def test_a_serverless_variant_takes_no_instance_type_or_count() -> None:
    for other in ({"InstanceType": "ml.m5.large"}, {"InitialInstanceCount": 1}):
        with pytest.raises(ValidationError) as error:
            _config(ServerlessConfig={"MemorySizeInMB": 1024, "MaxConcurrency": 1}, **other)
        assert error.value.field == f"ProductionVariants.0.{next(iter(other))}"
    with pytest.raises(ValidationError, match=r"InstanceType .*or ServerlessConfig"):
        _config()


def test_max_concurrency_admits_that_many_requests_at_once() -> None:
    config = ServerlessConfig(1024, 2)
    assert [admits(active, config) for active in range(4)] == [True, True, False, False]


def test_a_model_server_scales_to_zero_only_idle_for_the_whole_idle_time() -> None:
    assert should_scale_to_zero(active=0, idle_since=100.0, now=160.0, idle_seconds=60)
    assert not should_scale_to_zero(active=0, idle_since=100.0, now=159.9, idle_seconds=60)
    assert not should_scale_to_zero(active=1, idle_since=0.0, now=1000.0, idle_seconds=60)  # serving


def test_provisioned_concurrency_is_kept_warm_and_never_scaled_below() -> None:
    raw = {"MemorySizeInMB": 2048, "MaxConcurrency": 5, "ProvisionedConcurrency": 2}
    config = ServerlessConfig.from_request(raw, FIELD)
    assert config == ServerlessConfig(2048, 5, provisioned=2)
    assert config.to_wire() == raw  # as DescribeEndpoint shows it
    assert ServerlessConfig.from_record(config.to_record()) == config
    assert ServerlessConfig.from_record({"memory_mb": 1024, "max_concurrency": 1}) == ServerlessConfig(
        1024, 1
    )
    # warm copies start without a request, one at a time, up to the provisioned count
    assert warm_copies_missing(config, running=0, starting=False) == 2
    assert warm_copies_missing(config, running=0, starting=True) == 0
    assert warm_copies_missing(config, running=2, starting=False) == 0
    assert warm_copies_missing(ServerlessConfig(2048, 5), running=0, starting=False) == 0  # on demand
    # idle for hours: still warm
    assert not should_scale_to_zero(active=0, idle_since=0.0, now=1e6, idle_seconds=60, provisioned=2)


def test_a_request_is_billed_to_the_millisecond_rounded_up() -> None:
    t = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert billed_span(t, t + dt.timedelta(microseconds=12_300)) == (t, t + dt.timedelta(milliseconds=13))
    assert billed_span(t, t + dt.timedelta(milliseconds=40)) == (t, t + dt.timedelta(milliseconds=40))
    assert billed_span(t, t) == (t, t + dt.timedelta(milliseconds=1))  # at least one


def test_serverless_compute_is_priced_per_gb_second(tmp_path: Path) -> None:
    price = Rates().serverless(2048)  # per hour of compute
    assert price.sagemaker == price.site == Decimal("0.00002") * 2 * 3600
    rates = tmp_path / "rates.toml"
    rates.write_text("serverless_gb_second = 0.00001\n")
    site = Rates.load(rates).serverless(6144)
    assert (site.site, site.sagemaker) == (Decimal("0.00001") * 6 * 3600, Decimal("0.00002") * 6 * 3600)
    assert ServerlessConfig.memory_of(ServerlessConfig(6144, 1).billing_type) == 6144
    assert ServerlessConfig.memory_of("ml.m5.large") is None


def test_a_budgets_worst_case_is_max_concurrency_requests_all_day() -> None:
    from shipyard.core import estimates
    from shipyard.core.catalog import JobKind
    from shipyard.core.pricing import Price

    def prices(instance_type: str, kind: JobKind, count: int) -> Price:
        memory = ServerlessConfig.memory_of(instance_type)
        assert memory is not None and kind == JobKind.HOSTING
        return Rates().serverless(memory)

    variants = [{"VariantName": "v", "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 10}}]
    estimate = estimates.endpoint(variants, prices)
    assert estimate.sagemaker_usd == Decimal("0.00002") * 2 * 10 * 86400  # 10 requests at 2 GB for 24 h
    assert "10 concurrent requests" in estimate.to_json()["basis"]
