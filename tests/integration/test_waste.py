"""Utilization sampled while work runs, right-sizing from it, and idle endpoints reported."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from shipyard.server import ServerProcess
from tests._support import boto_client
from tests.integration.test_endpoints import BUCKET as ENDPOINT_BUCKET
from tests.integration.test_endpoints import _deploy, _wait, train_iris
from tests.integration.test_training import BUCKET, _create
from tests.integration.test_training import _wait as _wait_job


@pytest.fixture(scope="module")
def waste_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    env = {
        "SHIPYARD_UTILIZATION_SECONDS": "1",
        "SHIPYARD_COST_CHECK_SECONDS": "1",
        "SHIPYARD_IDLE_ENDPOINT_SECONDS": "3",
    }
    with ServerProcess(tmp_path_factory.mktemp("waste-server"), env=env) as server:
        s3 = boto_client("s3", server.url)
        for bucket in (BUCKET, ENDPOINT_BUCKET):
            s3.create_bucket(Bucket=bucket)
        yield server


def test_an_oversized_job_gets_a_cheaper_type_suggested_from_its_utilization(
    waste_server: ServerProcess,
) -> None:
    sm, s3 = boto_client("sagemaker", waste_server.url), boto_client("s3", waste_server.url)
    # 16 vCPUs and 64 GiB for a script that sleeps: it uses a sliver of one core and a little memory.
    name = _create(
        sm,
        s3,
        "import time\nfor _ in range(5):\n    sum(range(10**6))\n    time.sleep(1)\n",
        extra={"ResourceConfig": {"InstanceType": "ml.m5.4xlarge", "InstanceCount": 1, "VolumeSizeInGB": 5}},
    )
    assert _wait_job(sm, name)["TrainingJobStatus"] == "Completed"
    samples = httpx.get(f"{waste_server.url}/api/v1/training-jobs/{name}/utilization").json()["hosts"][
        "algo-1"
    ]
    assert len(samples) >= 3
    assert all(0 <= s["cpu"] <= 200 and 0 < s["memory"] < 5 and s["disk"] is not None for s in samples)
    statistics = boto_client("cloudwatch", waste_server.url).get_metric_statistics(
        Namespace="/aws/sagemaker/TrainingJobs",
        MetricName="MemoryUtilization",
        Dimensions=[{"Name": "Host", "Value": f"{name}/algo-1"}],
        StartTime=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10),
        EndTime=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )
    assert statistics["Datapoints"] and 0 < statistics["Datapoints"][0]["Maximum"] < 5
    suggestions = httpx.get(f"{waste_server.url}/api/v1/waste").json()["right_sizing"]
    [mine] = [s for s in suggestions if s["job"] == name]
    assert mine["instance_type"] == "ml.m5.4xlarge" and mine["suggested_instance_type"] != "ml.m5.4xlarge"
    # the saving is on what it was charged: scaled down to this machine, as the type it got
    charged = httpx.get(f"{waste_server.url}/api/v1/training-jobs/{name}").json()
    assert mine["usd_per_hour"] == charged["price_per_hour_usd"] and mine["billed_as"] == charged["billed_as"]
    assert float(mine["suggested_usd_per_hour"]) < float(mine["usd_per_hour"]) <= 0.922
    assert float(mine["saving_usd"]) > 0 and mine["saving_percent"] > 50


def test_a_job_shorter_than_one_interval_still_gets_a_sample(waste_server: ServerProcess) -> None:
    sm, s3 = boto_client("sagemaker", waste_server.url), boto_client("s3", waste_server.url)
    name = _create(sm, s3, "print(sum(range(10**5)))\n")  # done well within the 1 s interval
    assert _wait_job(sm, name)["TrainingJobStatus"] == "Completed"
    hosts = httpx.get(f"{waste_server.url}/api/v1/training-jobs/{name}/utilization").json()["hosts"]
    [sample] = hosts["algo-1"]
    assert sample["timestamp"] and sample["cpu"] >= 0 and 0 < sample["memory"] < 100


def test_an_endpoint_nobody_calls_is_reported_idle(waste_server: ServerProcess) -> None:
    sm, s3 = boto_client("sagemaker", waste_server.url), boto_client("s3", waste_server.url)
    runtime = boto_client("sagemaker-runtime", waste_server.url)
    name = _deploy(sm, s3, train_iris(sm, s3))
    assert _wait(sm, name)["EndpointStatus"] == "InService"
    runtime.invoke_endpoint(EndpointName=name, Body=b"[[5.1, 3.5, 1.4, 0.2]]", ContentType="application/json")
    assert name not in {
        e["endpoint"] for e in httpx.get(f"{waste_server.url}/api/v1/waste").json()["idle_endpoints"]
    }
    deadline = time.monotonic() + 30
    while True:
        idle = {
            e["endpoint"]: e for e in httpx.get(f"{waste_server.url}/api/v1/waste").json()["idle_endpoints"]
        }
        if name in idle:
            break
        assert time.monotonic() < deadline, "never reported idle"
        time.sleep(0.2)
    assert idle[name]["idle_minutes"] >= 0.05 and idle[name]["cost_per_hour_usd"] == "0.115000"
    deadline = time.monotonic() + 10
    while not [a for a in httpx.get(f"{waste_server.url}/api/v1/alerts").json() if a["kind"] == "idle"]:
        assert time.monotonic() < deadline, "no idle alert recorded"
        time.sleep(0.2)
    time.sleep(2.5)  # two more checks (one a second): the same stretch of idleness, one alert
    mine = [a for a in httpx.get(f"{waste_server.url}/api/v1/alerts").json() if f"'{name}'" in a["message"]]
    assert len(mine) == 1 and "reported" in mine[0]["message"]
    hosts = httpx.get(f"{waste_server.url}/api/v1/endpoints/{name}/utilization").json()["hosts"]
    assert hosts and all(s["memory_bytes"] > 0 for samples in hosts.values() for s in samples)
    shown = subprocess.run(
        [sys.executable, "-m", "shipyard", "waste", "--url", waste_server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0 and "Idle endpoints" in shown.stdout and "Right-sizing" in shown.stdout
    sm.delete_endpoint(EndpointName=name)
