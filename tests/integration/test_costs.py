"""The cost ledger and its reports, against a server with site rates of its own."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from shipyard.server import ServerProcess
from tests._support import boto_client
from tests.integration.test_endpoints import BUCKET as ENDPOINT_BUCKET
from tests.integration.test_endpoints import _deploy, _wait, train_iris
from tests.integration.test_training import BUCKET, _create
from tests.integration.test_training import _wait as _wait_job
from tests.integration.test_tuning import _create_tuning, _wait_tuning

# The site charges by resources: an ml.m5.large (2 vCPU, 8 GiB) is 2 x 0.04 + 8 x 0.001 = 0.088
# an hour for any work; SageMaker charges 0.115 for training and hosting it.
RATES = "vcpu_hour = 0.04\nmemory_gib_hour = 0.001\nstorage_gib_month = 1000\n"
SITE, SAGEMAKER = Decimal("0.088"), Decimal("0.115")


@pytest.fixture(scope="module")
def cost_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("cost-server")
    (data_dir / "rates.toml").write_text(RATES)
    env = {"SHIPYARD_STORAGE_SAMPLE_SECONDS": "1", "SHIPYARD_COST_CHECK_SECONDS": "1"}
    with ServerProcess(data_dir, env=env) as server:
        s3 = boto_client("s3", server.url)
        for bucket in (BUCKET, ENDPOINT_BUCKET):
            s3.create_bucket(Bucket=bucket)
        yield server


def _cost(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "shipyard", "cost", "--url", server.url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )


def _usd(seconds: Any, price: Decimal) -> Decimal:
    return (Decimal(str(seconds)) * price / 3600).quantize(Decimal("0.000001"))


def test_a_tuning_job_and_an_endpoint_are_allocated_by_tag_at_both_prices(cost_server: ServerProcess) -> None:
    sm, s3 = boto_client("sagemaker", cost_server.url), boto_client("s3", cost_server.url)
    tuning = _create_tuning(
        sm,
        s3,
        strategy="Random",
        ranges={"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "0.9"}]},
        max_jobs=6,
        parallel=2,
        tags=[{"Key": "Project", "Value": "alpha"}],
    )
    endpoint = _deploy(sm, s3, train_iris(sm, s3))
    assert _wait(sm, endpoint)["EndpointStatus"] == "InService"
    arn = sm.describe_endpoint(EndpointName=endpoint)["EndpointArn"]
    sm.add_tags(ResourceArn=arn, Tags=[{"Key": "Project", "Value": "beta"}])  # tagged after it started
    assert _wait_tuning(sm, tuning)["HyperParameterTuningJobStatus"] == "Completed"
    sm.delete_endpoint(EndpointName=endpoint)
    served = httpx.get(f"{cost_server.url}/api/v1/endpoints/{endpoint}")
    assert served.status_code == 404  # gone, but its cost stays in the ledger

    trials = sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning)[
        "TrainingJobSummaries"
    ]
    billable = [
        sm.describe_training_job(TrainingJobName=t["TrainingJobName"])["BillableTimeInSeconds"]
        for t in trials
    ]
    assert len(billable) == 6
    result = _cost(cost_server, "--by", "tag:Project", "--json")
    assert result.returncode == 0, result.stderr
    rows = {r["tag:Project"]: r for r in json.loads(result.stdout)["rows"]}
    alpha = rows["alpha"]  # the trials carry the tuning job's tags
    assert alpha["unit_seconds"] == sum(billable)
    assert Decimal(alpha["cost_usd"]) == _usd(sum(billable), SITE)
    assert Decimal(alpha["sagemaker_cost_usd"]) == _usd(sum(billable), SAGEMAKER)
    beta = rows["beta"]
    assert beta["unit_seconds"] > 0
    assert abs(Decimal(beta["cost_usd"]) - _usd(beta["unit_seconds"], SITE)) <= Decimal("0.000001")
    assert abs(Decimal(beta["sagemaker_cost_usd"]) - _usd(beta["unit_seconds"], SAGEMAKER)) <= Decimal(
        "0.000001"
    )

    table = _cost(cost_server, "--by", "tag:Project", "--by", "kind")
    assert table.returncode == 0 and "alpha" in table.stdout and "beta" in table.stdout
    assert "on SageMaker (USD)" in table.stdout and "total" in table.stdout
    exported = list(csv.DictReader(io.StringIO(_cost(cost_server, "--by", "resource", "--csv").stdout)))
    assert {r["resource"] for r in exported} >= {endpoint, *(t["TrainingJobName"] for t in trials)}


def test_a_running_job_shows_its_cost_so_far(cost_server: ServerProcess) -> None:
    sm, s3 = boto_client("sagemaker", cost_server.url), boto_client("s3", cost_server.url)
    name = _create(sm, s3, "import time\nprint('working', flush=True)\ntime.sleep(30)\n")
    deadline = time.monotonic() + 60
    while Decimal(httpx.get(f"{cost_server.url}/api/v1/training-jobs/{name}").json()["cost_usd"]) == 0:
        assert time.monotonic() < deadline, "no cost accrued while the job ran"
        time.sleep(0.1)
    first = Decimal(httpx.get(f"{cost_server.url}/api/v1/training-jobs/{name}").json()["cost_usd"])
    time.sleep(0.2)
    view = httpx.get(f"{cost_server.url}/api/v1/training-jobs/{name}").json()
    assert view["status"] == "InProgress" and Decimal(view["cost_usd"]) > first
    assert Decimal(view["sagemaker_cost_usd"]) > Decimal(view["cost_usd"])  # 0.115 against 0.088
    sm.stop_training_job(TrainingJobName=name)
    ended = _wait_job(sm, name)
    final = httpx.get(f"{cost_server.url}/api/v1/training-jobs/{name}").json()
    assert Decimal(final["cost_usd"]) == _usd(ended["BillableTimeInSeconds"], SITE)


def test_stored_bytes_are_in_the_ledger(cost_server: ServerProcess) -> None:
    s3 = boto_client("s3", cost_server.url)
    s3.create_bucket(Bucket="hoard")
    s3.put_object(Bucket="hoard", Key="big.bin", Body=b"\0" * 2**20)
    deadline = time.monotonic() + 30
    while True:
        rows = httpx.get(f"{cost_server.url}/api/v1/costs", params={"group_by": ["kind", "resource"]}).json()[
            "rows"
        ]
        hoard = [r for r in rows if r["kind"] == "storage" and r["resource"] == "hoard"]
        if hoard and Decimal(hoard[0]["cost_usd"]) > 0:
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.2)
    # 1 MiB at the site's 1000 USD a GiB-month, SageMaker's (S3's) 0.023: the same seconds
    assert Decimal(hoard[0]["cost_usd"]) > Decimal(hoard[0]["sagemaker_cost_usd"])


def test_bad_report_requests_name_the_field(cost_server: ServerProcess) -> None:
    wrong = httpx.get(f"{cost_server.url}/api/v1/costs", params={"group_by": "colour"})
    assert wrong.status_code == 400 and wrong.json()["field"] == "group_by"
    late = httpx.get(f"{cost_server.url}/api/v1/costs", params={"start": "yesterday"})
    assert late.status_code == 400 and "start 'yesterday'" in late.json()["message"]
    result = _cost(cost_server, "--by", "colour")
    assert result.returncode == 1 and "Cannot group costs by 'colour'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_job_scaled_down_to_fit_is_charged_for_what_it_got_beside_sagemakers_price(
    cost_server: ServerProcess,
) -> None:
    sm, s3 = boto_client("sagemaker", cost_server.url), boto_client("s3", cost_server.url)
    asked = {"ResourceConfig": {"InstanceType": "ml.p4d.24xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1}}
    name = _create(sm, s3, "print('on a p4d, they say')\n", extra=asked)
    described = _wait_job(sm, name)
    assert described["TrainingJobStatus"] == "Completed"
    view = httpx.get(f"{cost_server.url}/api/v1/training-jobs/{name}").json()
    granted = view["placement"]
    assert granted["gpus"] == 0 and granted["cpus"] < 96 and view["scaled_down"]
    # DescribeTrainingJob stays SageMaker's: the billable seconds of the instance asked for
    assert described["BillableTimeInSeconds"] == view["billable_seconds"] >= 1
    assert described["ResourceConfig"]["InstanceType"] == "ml.p4d.24xlarge"

    # charged as the type that gives what it got, at the site's rates (0.04 a vCPU-hour, 0.001 a GiB-hour)
    types = {t["name"]: t for t in httpx.get(f"{cost_server.url}/api/v1/instance-types").json()}
    billed = types[view["billed_as"]]
    assert billed["gpu_count"] == 0 and billed["vcpu"] >= granted["cpus"]
    assert billed["memory_gib"] >= granted["memory_gib"]
    site = Decimal("0.04") * billed["vcpu"] + Decimal("0.001") * Decimal(str(billed["memory_gib"]))
    assert Decimal(view["price_per_hour_usd"]) == site
    seconds = view["billable_seconds"]
    assert Decimal(view["cost_usd"]) == _usd(seconds, site)
    assert Decimal(view["sagemaker_cost_usd"]) == _usd(seconds, Decimal("37.688"))  # what was asked

    # the ledger's row: under the type asked, the site's cost for what it got beside SageMaker's
    rows = httpx.get(
        f"{cost_server.url}/api/v1/costs", params={"group_by": ["resource", "instance_type"]}
    ).json()["rows"]
    [row] = [r for r in rows if r["resource"] == name]
    assert row["instance_type"] == "ml.p4d.24xlarge" and Decimal(str(row["unit_seconds"])) == seconds
    assert Decimal(row["cost_usd"]) == _usd(seconds, site)
    assert Decimal(row["sagemaker_cost_usd"]) == _usd(seconds, Decimal("37.688"))
    assert row["gpu_seconds"] == 0  # the GPUs it got (none here), not the type's 8
    csv = httpx.get(f"{cost_server.url}/api/v1/costs", params={"group_by": "resource", "format": "csv"}).text
    assert csv.splitlines()[0] == "resource,unit_seconds,gpu_seconds,cost_usd,sagemaker_cost_usd"

    shown = subprocess.run(
        [sys.executable, "-m", "shipyard", "jobs", "describe", name, "--url", cost_server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"as {view['billed_as']}, what it was given" in shown.stdout
    assert "for ml.p4d.24xlarge)" in shown.stdout and "scaled down to fit this machine" in shown.stdout
