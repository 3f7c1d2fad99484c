"""Fair sharing and quotas on a real server (local backend, a machine of 2 cores, a site
instance type of 1 vCPU: two instances fit), with users alice, bob and carol signing with their
own keys through boto3: bob's one job starts as soon as one of alice's ends, not after all of
them; carol's quota refuses and queues as the config file says, with the message, until the
CLI raises it."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from shipyard.core.catalog import COLUMNS
from shipyard.core.identity import HolderKind
from shipyard.server import ServerProcess
from shipyard.services.identity import IdentityService
from shipyard.store import Database
from shipyard.store.identity import IdentityRepository
from tests._support import boto_client

ROOT_KEY, ROOT_SECRET = "AKIDSHIPYARDROOT", "root-s3cret"
ACCOUNT = "000000000000"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
SMALL = "ml.lab.small"  # 1 vCPU, 1 GiB: the site's own type
BUCKET = "lab"
ALLOW_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)
WAIT_FOR_GO = """
import os, time
while not os.path.exists(os.environ["SM_INPUT_CONFIG_DIR"] + "/go"):
    time.sleep(0.02)
"""

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a machine of 2 cores or more")


@pytest.fixture(scope="module")
def lab(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, dict[str, tuple[str, str]]]]:
    data_dir = tmp_path_factory.mktemp("lab")
    (data_dir / "instance_types.csv").write_text(
        ",".join(COLUMNS) + f"\n{SMALL},lab,1,1,0,,0,0.01,0.01,0.01,0.01\n"
    )
    (data_dir / "config.toml").write_text("[quotas.users.carol]\nvcpus = 1\nendpoints = 0\n")
    db = Database(f"sqlite:///{data_dir / 'shipyard.db'}")
    db.upgrade()
    identity = IdentityService(IdentityRepository(db, ACCOUNT), account_id=ACCOUNT)
    keys = {}
    for name in ("alice", "bob", "carol"):
        identity.create_user(name)
        identity.put_policy(HolderKind.USER, name, "everything", ALLOW_ALL)
        key = identity.create_key(name)
        keys[name] = (key.access_key_id, key.secret_access_key)
    db.dispose()
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(cpus)[:2])  # the server sees a machine of 2 cores
    try:
        server = ServerProcess(
            data_dir, env={"SHIPYARD_ACCESS_KEY_ID": ROOT_KEY, "SHIPYARD_SECRET_ACCESS_KEY": ROOT_SECRET}
        ).start()
    finally:
        os.sched_setaffinity(0, cpus)
    with server:
        s3 = boto_client("s3", server.url, aws_access_key_id=ROOT_KEY, aws_secret_access_key=ROOT_SECRET)
        s3.create_bucket(Bucket=BUCKET)
        yield server, keys


def _sagemaker(server: ServerProcess, key: tuple[str, str]) -> Any:
    return boto_client("sagemaker", server.url, aws_access_key_id=key[0], aws_secret_access_key=key[1])


def _source(server: ServerProcess, key: tuple[str, str]) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = len(WAIT_FOR_GO.encode())
        tar.addfile(info, io.BytesIO(WAIT_FOR_GO.encode()))
    s3 = boto_client("s3", server.url, aws_access_key_id=key[0], aws_secret_access_key=key[1])
    name = f"code/{uuid.uuid4().hex}/sourcedir.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=name, Body=buffer.getvalue())
    return f"s3://{BUCKET}/{name}"


def _create(sm: Any, source: str, name: str, count: int = 1) -> str:
    sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        HyperParameters={"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)},
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
        ResourceConfig={"InstanceType": SMALL, "InstanceCount": count, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 120},
    )
    return name


def _until(sm: Any, name: str, ready: Any, what: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = sm.describe_training_job(TrainingJobName=name)
        if ready(job):
            return job
        assert time.monotonic() < deadline, (
            f"{name} never {what}: {job['SecondaryStatus']}, {_message(job)!r}"
        )
        time.sleep(0.05)


def _message(job: dict[str, Any]) -> str:
    return str(job["SecondaryStatusTransitions"][-1]["StatusMessage"])


def _running(sm: Any, name: str) -> dict[str, Any]:
    return _until(sm, name, lambda j: j["SecondaryStatus"] == "Training", "ran")


def _waiting(sm: Any, name: str, message: str) -> dict[str, Any]:
    return _until(
        sm, name, lambda j: j["SecondaryStatus"] == "Pending" and _message(j) == message, "waited so"
    )


def _go(server: ServerProcess, name: str) -> None:
    [config] = server.data_dir.glob(f"jobs/{name}/attempt-0/algo-1/ml/input/config")
    (config / "go").write_text("")


def _done(sm: Any, name: str) -> dict[str, Any]:
    job = _until(sm, name, lambda j: j["TrainingJobStatus"] != "InProgress", "ended")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    return job


def test_bobs_job_starts_as_soon_as_one_of_alices_ends(
    lab: tuple[ServerProcess, dict[str, tuple[str, str]]],
) -> None:
    server, keys = lab
    alice, bob = _sagemaker(server, keys["alice"]), _sagemaker(server, keys["bob"])
    code = _source(server, keys["alice"])
    mine = [_create(alice, code, f"alice-{i}") for i in range(1, 5)]
    for name in mine[:2]:
        _running(alice, name)
    _waiting(alice, mine[2], "Waiting for 1 vCPU: the machine's 2 are in use (alice 2)")
    _create(bob, _source(server, keys["bob"]), "bob-1")
    _waiting(bob, "bob-1", "Waiting for 1 vCPU: the machine's 2 are in use (alice 2)")
    _waiting(
        alice,
        mine[2],
        "Waiting behind bob's job, next by fair share (it needs 1 vCPU of the machine's 2)",
    )
    _go(server, mine[0])
    _done(alice, mine[0])
    _running(bob, "bob-1")  # alice's next waits: the machine's vCPU went to bob
    _waiting(alice, mine[2], "Waiting for 1 vCPU: the machine's 2 are in use (alice 1, bob 1)")
    _go(server, mine[1])
    _done(alice, mine[1])
    _running(alice, mine[2])  # alice holds nothing now, bob half the machine: hers
    _waiting(alice, mine[3], "Waiting for 1 vCPU: the machine's 2 are in use (alice 1, bob 1)")
    _go(server, "bob-1")
    _running(alice, mine[3])
    for name in mine[2:]:
        _go(server, name)
    ended = {name: _done(alice, name) for name in mine}
    ended["bob-1"] = bobs = _done(bob, "bob-1")
    order = [name for _, name in sorted((job["TrainingStartTime"], name) for name, job in ended.items())]
    assert set(order[:2]) == {"alice-1", "alice-2"}  # launched together
    assert order[2:] == ["bob-1", "alice-3", "alice-4"]
    waited = [(t["Status"], t["StatusMessage"]) for t in bobs["SecondaryStatusTransitions"]]
    assert waited[:3] == [
        ("Starting", "Preparing the instances for training"),
        ("Pending", "Waiting for 1 vCPU: the machine's 2 are in use (alice 2)"),
        ("Starting", "Launching the requested instances"),
    ]


def _cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SHIPYARD_ACCESS_KEY_ID": ROOT_KEY,
        "SHIPYARD_SECRET_ACCESS_KEY": ROOT_SECRET,
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "shipyard", *args, "--url", server.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_carols_quota_refuses_and_queues_as_configured_until_raised(
    lab: tuple[ServerProcess, dict[str, tuple[str, str]]],
) -> None:
    server, keys = lab
    carol = _sagemaker(server, keys["carol"])
    code = _source(server, keys["carol"])
    with pytest.raises(ClientError) as refused:
        _create(carol, code, "carol-wide", count=2)
    assert refused.value.response["Error"]["Code"] == "ResourceLimitExceeded"
    assert refused.value.response["Error"]["Message"].startswith(
        "The quota 'vCPUs of carol' is 1 vCPU, and this job asks 2 vCPUs at once, so it could never run."
    )
    _create(carol, code, "carol-1")
    _create(carol, code, "carol-2")
    _running(carol, "carol-1")
    _waiting(carol, "carol-2", "Waiting for 1 vCPU: carol has 1 of their 1 in use (quota users.carol)")
    described = _cli(server, "jobs", "describe", "carol-2")
    assert (
        "waiting   Waiting for 1 vCPU: carol has 1 of their 1 in use (quota users.carol)" in described.stdout
    )
    listed = httpx.get(
        f"{server.url}/api/v1/jobs/training",
        params={"name": "carol-2"},
        headers={"Authorization": f"Bearer {ROOT_SECRET}"},
    ).json()
    assert listed["items"][0]["status_message"].startswith("Waiting for 1 vCPU: carol has 1")
    raised = _cli(server, "quotas", "set", "carol", "vcpus=2")
    assert raised.returncode == 0, raised.stderr
    assert raised.stdout.strip() == "Quota of user:carol: vcpus 2, endpoints 0"
    _running(carol, "carol-2")  # the queue sees the new quota at once
    shown = _cli(server, "quotas", "show", "--json")
    [entry] = json.loads(shown.stdout)
    assert (entry["subject"], entry["source"], entry["in_use"]["vcpus"]) == ("user:carol", "runtime", 2)
    carol.create_model(
        ModelName="carols",
        PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz"},
        ExecutionRoleArn=ROLE,
    )
    carol.create_endpoint_config(
        EndpointConfigName="carols",
        ProductionVariants=[
            {
                "VariantName": "v",
                "ModelName": "carols",
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    with pytest.raises(ClientError) as refused:
        carol.create_endpoint(EndpointName="carols", EndpointConfigName="carols")
    assert refused.value.response["Error"]["Code"] == "ResourceLimitExceeded"
    assert (
        "'Endpoint instances of carol' is 0 endpoint instances" in refused.value.response["Error"]["Message"]
    )
    for name in ("carol-1", "carol-2"):
        _go(server, name)
        _done(carol, name)
