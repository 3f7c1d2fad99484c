"""A serverless variant through the endpoint service on fake model servers: checked at bring-up
then stopped, started by the first request (the others waiting for the same start), throttled past
MaxConcurrency, stopped when idle, each request that reached the model billed, and with
ProvisionedConcurrency its copies kept warm, billed and replaced."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from shipyard.services._serverless import StartFailed, Throttled, Ticket
from tests.unit.test_endpoint_service import REGION, Hosting, hosting  # noqa: F401 (the fixture)


def _serverless(hosting: Hosting, name: str, concurrency: int = 2, provisioned: int = 0) -> str:  # noqa: F811
    model = hosting.model(f"{name}-model", data=f"s3://models/{name}.tar.gz")
    serverless = {"MemorySizeInMB": 2048, "MaxConcurrency": concurrency}
    if provisioned:
        serverless["ProvisionedConcurrency"] = provisioned
    hosting.configs.create(
        {
            "EndpointConfigName": name,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": model,
                    "ServerlessConfig": serverless,
                }
            ],
        },
        region=REGION,
    )
    hosting.endpoints.create({"EndpointName": name, "EndpointConfigName": name}, region=REGION)
    hosting.passes()
    return name


def _acquire(hosting: Hosting, name: str, count: int = 1) -> list[Ticket]:  # noqa: F811
    [variant] = hosting.endpoints.router.variants(name)

    async def together() -> list[Ticket]:
        return list(
            await asyncio.gather(*(hosting.endpoints.serverless.acquire(name, variant) for _ in range(count)))
        )

    return asyncio.run(together())


def test_a_serverless_variant_starts_on_demand_and_stops_when_idle(hosting: Hosting) -> None:  # noqa: F811
    name = _serverless(hosting, "ep")
    assert hosting.status(name) == ("InService", None)
    assert len(hosting.servers.started) == 1 and hosting.servers.running == []  # checked, then stopped
    assert hosting.billed(name) == []  # no instance is billed

    first, second = _acquire(hosting, name, 2)
    assert first.server is second.server  # one start for both
    assert hosting.servers.running == [first.server]
    with pytest.raises(Throttled, match="MaxConcurrency of 2"):
        _acquire(hosting, name)
    first.sent()
    first.end("r-1")
    second.end("r-2")  # given up before it reached the model: not billed
    hosting.passes(1)
    assert hosting.servers.running == [first.server]  # idle for less than the idle time

    hosting.endpoints.serverless.idle_seconds = 0
    hosting.passes(1)
    assert hosting.servers.running == [] and hosting.endpoints.router.servers(name) == []
    [billed] = hosting.costs.usage.for_resource("endpoint", name)
    assert (billed.key, billed.instance_type) == (
        f"endpoint/{name}/AllTraffic/request-r-1",
        "serverless:2048MB",
    )
    assert billed.ended is not None and billed.seconds(now=billed.ended) >= Decimal("0.001")  # at least 1 ms

    [again] = _acquire(hosting, name)  # scaled to zero: the next request starts another
    assert again.server is not first.server and hosting.servers.running == [again.server]


def test_a_cold_start_that_fails_answers_why_and_the_next_request_tries_again(hosting: Hosting) -> None:  # noqa: F811
    name = _serverless(hosting, "bad")
    hosting.servers.failing["s3://models/bad.tar.gz"] = "the model file is corrupt"
    with pytest.raises(StartFailed, match="did not start"):
        _acquire(hosting, name)
    del hosting.servers.failing["s3://models/bad.tar.gz"]
    [ticket] = _acquire(hosting, name)
    assert ticket.server.alive


def test_provisioned_concurrency_keeps_its_copies_warm_billed_and_replaced(hosting: Hosting) -> None:  # noqa: F811
    name = _serverless(hosting, "warm", concurrency=3, provisioned=2)
    hosting.passes(3)  # one warm copy a pass, no request
    warm = hosting.servers.running
    assert len(warm) == 2 and len({s.instance_dir for s in warm}) == 2  # each in a folder of its own
    assert len(hosting.billed(name)) == 2  # each billed while provisioned

    hosting.endpoints.serverless.idle_seconds = 0
    hosting.passes(2)
    assert hosting.servers.running == warm  # idle, and never scaled below its provisioned concurrency
    [first] = _acquire(hosting, name)
    assert first.server in warm  # no cold start
    first.end("r-1")

    warm[0].die()
    hosting.passes(2)
    assert len(hosting.servers.running) == 2 and warm[0] not in hosting.servers.running  # replaced
    assert len(hosting.billed(name)) == 2  # the dead copy's interval closed, its replacement's open

    hosting.endpoints.delete(name)
    hosting.passes(2)
    assert hosting.servers.running == [] and hosting.billed(name) == []
