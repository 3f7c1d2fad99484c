"""The Slurm backend against a real Slurm: Debian's slurmctld, two slurmds (two node names on this
machine) and munged, started once for the session (``compute/slurm/_testing.py``). A server with
``--backend slurm`` runs a script job, a two-instance job across both nodes, a job that waits in
Slurm's queue behind another user's job (its pending reason shown), a stop, a node that goes
down, sacct's bill; all through boto3. The suite every backend runs (tests/integration/test_backends.py) runs
on this Slurm too (test_backends_slurm.py). Skipped, saying why, where slurm-wlm is not installed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from shipyard.compute.slurm._testing import SlurmCluster, slurm_missing
from shipyard.server import ServerProcess
from tests._support import boto_client, tgz, wait_for
from tests.conftest import SHARED_ENVS
from tests.integration.test_training import SKLEARN_IMAGE

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
BUCKET = "slurm-tests"
_START_SECONDS = 120  # a loaded test machine
NODE_LINE = re.compile(r"Shipyard: on Slurm node (\S+) \(Slurm job (\d+)\)")

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(slurm_missing() is not None, reason=slurm_missing() or ""),
]


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    with SlurmCluster(tmp_path_factory.mktemp("slurm"), nodes=2, cpus=1, memory_gib=3) as cluster:
        yield cluster


class Site:
    def __init__(self, server: ServerProcess, cluster: SlurmCluster) -> None:
        self.server = server
        self.cluster = cluster
        self.sm = boto_client("sagemaker", server.url)
        self.s3 = boto_client("s3", server.url)
        self.logs = boto_client("logs", server.url)
        self.s3.create_bucket(Bucket=BUCKET)

    def log_lines(self, job: str) -> dict[str, list[str]]:
        group = "/aws/sagemaker/TrainingJobs"
        streams = self.logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{job}/")
        return {
            s["logStreamName"].split("/")[1].rsplit("-", 1)[0]: [
                e["message"]
                for e in self.logs.get_log_events(logGroupName=group, logStreamName=s["logStreamName"])[
                    "events"
                ]
            ]
            for s in streams["logStreams"]
        }

    def nodes_of(self, job: str) -> dict[str, tuple[str, str]]:
        """The Slurm node and Slurm job id of each instance, from its log."""
        found = {}
        for host, lines in self.log_lines(job).items():
            for line in lines:
                if match := NODE_LINE.match(line):
                    found[host] = (match.group(1), match.group(2))
        return found


RATES = "vcpu_hour = 0.36\nmemory_gib_hour = 0.036\n"  # the site's, per CPU and GiB allocated


@pytest.fixture(scope="module")
def site(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    env = {
        "SLURM_CONF": str(slurm_cluster.conf),
        "SHIPYARD_SLURM_DIR": str(slurm_cluster.folder / "nodes"),
        "SHIPYARD_SLURM_ENVS_DIR": SHARED_ENVS,  # as a site's shared filesystem would: built once
    }
    data_dir = tmp_path_factory.mktemp("slurm-data")
    (data_dir / "rates.toml").write_text(RATES)
    (data_dir / "config.toml").write_text('[slurm_types."ml.p3.*"]\npartition = "gpu"\n')  # no such partition
    server = ServerProcess(data_dir, extra_args=["--backend", "slurm"], env=env)
    with server.start(timeout=_START_SECONDS):
        yield Site(server, slurm_cluster)


def _job(site: Site, script: str, *, count: int = 1, max_runtime: int = 300, **extra: Any) -> str:
    name = f"job-{uuid.uuid4().hex[:10]}"
    key = f"code/{name}.tar.gz"
    site.s3.put_object(Bucket=BUCKET, Key=key, Body=tgz({"train.py": script}))
    site.sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File"},
        HyperParameters={
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": f'"s3://{BUCKET}/{key}"',
        },
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": count, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": max_runtime},
        **extra,
    )
    return name


def _wait(
    site: Site, name: str, timeout: float = 180, until: tuple[str, ...] = ("Completed", "Failed", "Stopped")
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := site.sm.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] not in until:
        assert time.monotonic() < deadline, f"{name} still {job['TrainingJobStatus']} after {timeout} s"
        time.sleep(0.1)
    return job  # type: ignore[no-any-return]


def _started(site: Site, script: str) -> str:
    name = _job(site, script, max_runtime=600)
    deadline = time.monotonic() + 120
    while "started" not in site.log_lines(name).get("algo-1", []):
        assert time.monotonic() < deadline, site.log_lines(name)
        time.sleep(0.1)
    return name


def test_the_test_cluster_runs_sbatch_squeue_and_sacct(slurm_cluster: SlurmCluster) -> None:
    job_id = slurm_cluster.run(
        "sbatch", "--parsable", "--output=/dev/null", "-N2", "--wrap", "srun true"
    ).stdout.strip()
    deadline = time.monotonic() + 60
    while slurm_cluster.run("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip() not in ("", "COMPLETED"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    while not (
        done := slurm_cluster.run(
            "sacct", "--completion", "-n", "-P", "-j", job_id, "-o", "State,NNodes,Elapsed"
        )
    ).stdout.strip():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    state, nodes, elapsed = done.stdout.strip().split("|")
    assert (state, nodes) == ("COMPLETED", "2")
    assert re.fullmatch(r"\d\d:\d\d:\d\d", elapsed)


SCRIPT = """
import json, os
print("hello from", os.environ["SM_CURRENT_HOST"], json.loads(os.environ["SM_HOSTS"]), flush=True)
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.txt"), "w") as f:
    f.write("trained")
"""


def test_a_script_job_runs_as_a_slurm_job_and_uploads_its_model(site: Site) -> None:
    name = _job(site, SCRIPT)
    job = _wait(site, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert "hello from algo-1 ['algo-1']" in site.log_lines(name)["algo-1"]
    node, job_id = site.nodes_of(name)["algo-1"]
    assert node.startswith("shipyard-node-")
    slurm_name = site.cluster.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%j").stdout.strip()
    assert slurm_name.endswith(f"-training-{name}-0"), slurm_name  # its first attempt
    key = job["ModelArtifacts"]["S3ModelArtifacts"].split(f"s3://{BUCKET}/", 1)[1]
    assert site.s3.head_object(Bucket=BUCKET, Key=key)["ContentLength"] > 0
    deadline = time.monotonic() + 30  # and nothing of it is left on the node
    while any(p.name == name for p in (site.cluster.folder / "nodes").glob("instances/*/training/*")):
        assert time.monotonic() < deadline
        time.sleep(0.1)


TWO = """
import json, os, socket, time
host = os.environ["SM_CURRENT_HOST"]
config = json.load(open("/opt/ml/input/config/resourceconfig.json"))
print(host, "of", config["hosts"], "master", os.environ["MASTER_ADDR"], flush=True)
port = int(os.environ["MASTER_PORT"])
if host == "algo-1":  # algo-2 reaches algo-1 at MASTER_ADDR:MASTER_PORT
    server = socket.create_server(("", port))
    connection, _ = server.accept()
    print("algo-1 heard", connection.recv(100).decode(), flush=True)
else:
    for _ in range(200):
        try:
            socket.create_connection((os.environ["MASTER_ADDR"], port), timeout=1).sendall(b"hello from algo-2")
            break
        except OSError:
            time.sleep(0.1)
"""


def test_a_two_instance_job_is_one_allocation_across_both_nodes(site: Site) -> None:
    name = _job(site, TWO, count=2)
    job = _wait(site, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    lines = site.log_lines(name)
    assert "algo-1 of ['algo-1', 'algo-2'] master 127.0.0.1" in lines["algo-1"], lines["algo-1"][-10:]
    assert "algo-2 of ['algo-1', 'algo-2'] master 127.0.0.1" in lines["algo-2"], lines["algo-2"][-10:]
    assert "algo-1 heard hello from algo-2" in lines["algo-1"]
    nodes = site.nodes_of(name)
    assert {nodes["algo-1"][0], nodes["algo-2"][0]} == {"shipyard-node-1", "shipyard-node-2"}
    assert nodes["algo-1"][1] == nodes["algo-2"][1]  # one Slurm job


SLEEPER = """
import time
print("started", flush=True)
time.sleep(600)
"""


def test_a_job_waiting_in_slurms_queue_says_why_then_runs(site: Site) -> None:
    blocker = site.cluster.run(
        "sbatch", "--parsable", "--output=/dev/null", "-N2", "--wrap", "sleep 600"
    ).stdout.strip()
    try:
        name = _job(site, SCRIPT)
        deadline = time.monotonic() + 60
        while True:
            job = site.sm.describe_training_job(TrainingJobName=name)
            last = job["SecondaryStatusTransitions"][-1]
            if last["Status"] == "Pending" and "Queued in Slurm as job" in last.get("StatusMessage", ""):
                break
            assert time.monotonic() < deadline, job["SecondaryStatusTransitions"]
            time.sleep(0.1)
        # Slurm says Priority (a job ahead of it) or Resources (the nodes are busy), by its timing
        assert last["StatusMessage"].endswith(
            (
                "the nodes it needs are busy (Resources)",
                "other jobs in the queue have higher priority (Priority)",
            )
        ), last
    finally:
        site.cluster.run("scancel", blocker)
    job = _wait(site, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")


def test_stop_ends_the_slurm_job(site: Site) -> None:
    name = _started(site, SLEEPER)
    _, job_id = site.nodes_of(name)["algo-1"]
    site.sm.stop_training_job(TrainingJobName=name)
    job = _wait(site, name, timeout=60)
    assert job["TrainingJobStatus"] == "Stopped"
    deadline = time.monotonic() + 30
    while site.cluster.run("squeue", "-h", "-j", job_id, "-o", "%T").stdout.strip() not in ("", "COMPLETED"):
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_job_whose_node_goes_down_fails_naming_the_node(site: Site) -> None:
    name = _started(site, SLEEPER)
    node, _ = site.nodes_of(name)["algo-1"]
    site.cluster.run("scontrol", "update", f"nodename={node}", "state=down", "reason=shipyard-test")
    try:
        job = _wait(site, name, timeout=120)
        assert job["TrainingJobStatus"] == "Failed"
        assert f"algo-1 was lost: its Slurm node failed ({node})" in job["FailureReason"], job[
            "FailureReason"
        ]
        assert "NODE_FAIL" in job["FailureReason"]
    finally:
        site.cluster.run("scontrol", "update", f"nodename={node}", "state=resume", check=False)
        deadline = time.monotonic() + 60
        while node not in site.cluster.idle():
            assert time.monotonic() < deadline, f"{node} did not come back"
            time.sleep(0.2)


def test_a_processing_job_runs_on_slurm_unchanged(site: Site) -> None:
    prefix = f"data-{uuid.uuid4().hex[:6]}"
    site.s3.put_object(Bucket=BUCKET, Key=f"{prefix}/in/rows.csv", Body=b"1,2\n3,4\n")
    site.s3.put_object(Bucket=BUCKET, Key=f"{prefix}/code/process.py", Body=PROCESS.encode())
    name = f"proc-{uuid.uuid4().hex[:8]}"
    s3_input = {"S3DataType": "S3Prefix", "S3InputMode": "File"}
    site.sm.create_processing_job(
        ProcessingJobName=name,
        RoleArn=ROLE,
        AppSpecification={
            "ImageUri": SKLEARN_IMAGE,
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/process.py"],
        },
        ProcessingResources={
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}
        },
        ProcessingInputs=[
            {
                "InputName": input_name,
                "S3Input": {"S3Uri": f"s3://{BUCKET}/{prefix}/{folder}/", "LocalPath": path, **s3_input},
            }
            for input_name, folder, path in (
                ("code", "code", "/opt/ml/processing/input/code"),
                ("data", "in", "/opt/ml/processing/input/data"),
            )
        ],
        ProcessingOutputConfig={
            "Outputs": [
                {
                    "OutputName": "out",
                    "S3Output": {
                        "S3Uri": f"s3://{BUCKET}/{prefix}/processed",
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ]
        },
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )
    deadline = time.monotonic() + 180
    while (job := site.sm.describe_processing_job(ProcessingJobName=name))[
        "ProcessingJobStatus"
    ] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    count = site.s3.get_object(Bucket=BUCKET, Key=f"{prefix}/processed/count.txt")["Body"].read()
    assert count == b"2 rows"
    group = "/aws/sagemaker/ProcessingJobs"
    [stream] = site.logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{name}/")[
        "logStreams"
    ]
    events = site.logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]
    assert any(NODE_LINE.match(e["message"]) for e in events), [e["message"] for e in events][:5]


PROCESS = """
import os
rows = open("/opt/ml/processing/input/data/rows.csv").read().splitlines()
os.makedirs("/opt/ml/processing/output", exist_ok=True)
open("/opt/ml/processing/output/count.txt", "w").write(f"{len(rows)} rows")
"""


def test_a_jobs_cost_is_what_sacct_billed_at_the_sites_rates(site: Site) -> None:
    name = _job(site, TWO + "time.sleep(2)  # whole seconds in sacct's Elapsed\n", count=2)
    job = _wait(site, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    _, job_id = site.nodes_of(name)["algo-1"]

    def usage() -> str:
        fields = "Elapsed,NCPUS,NNodes"
        return site.cluster.run(
            "sacct", "--completion", "-n", "-P", "-X", "-j", job_id, "-o", fields
        ).stdout.strip()

    wait_for(usage, timeout=30, what="the job in sacct")
    elapsed, ncpus, nodes = usage().split("|")
    seconds = sum(int(p) * 60**i for i, p in enumerate(reversed(elapsed.split(":"))))
    memory = site.cluster.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%m").stdout.strip()
    per_node_gib = (
        Decimal(memory.removesuffix("M")) / 1024
        if memory.endswith("M")
        else Decimal(memory.removesuffix("G"))
    )
    per_node_hour = Decimal("0.36") * int(ncpus) / int(nodes) + Decimal("0.036") * per_node_gib
    expected = (per_node_hour * int(nodes) * seconds / 3600).quantize(Decimal("0.000001"))

    seen: list[dict[str, Any] | None] = []

    def billed() -> dict[str, Any] | None:
        # Shipyard's own estimate (Slurm's times at the price of what the job was granted) is
        # there first, for as long as sacct's bill takes to come: wait for the bill
        rows = httpx.get(f"{site.server.url}/api/v1/costs", params={"group_by": "resource"}).json()["rows"]
        seen.append(row := next((r for r in rows if r["resource"] == name), None))
        if row is None or row["unit_seconds"] != int(nodes) * seconds:
            return None
        return row if Decimal(row["cost_usd"]) == expected else None

    try:
        wait_for(
            billed, timeout=60, what=f"the ledger billing {name} ${expected} for Slurm's {nodes} x {elapsed}"
        )
    except AssertionError as e:
        raise AssertionError(f"{e}; the ledger's last row: {seen[-1]}") from None
    row = billed()
    assert row is not None
    sagemaker = Decimal(row["sagemaker_cost_usd"])  # ml.m5.large on SageMaker for the same time
    assert sagemaker == (Decimal("0.115") * int(nodes) * seconds / 3600).quantize(Decimal("0.000001")), row


def test_instance_types_say_which_types_the_cluster_runs(site: Site) -> None:
    found = {t["name"]: t for t in httpx.get(f"{site.server.url}/api/v1/instance-types").json()}
    # each node has 1 CPU and 3 GiB: ml.m5.large runs with less, in the default partition
    assert found["ml.m5.large"]["runs_here"] == "scaled", found["ml.m5.large"]
    assert found["ml.p3.2xlarge"]["runs_here"] == "no"
    assert found["ml.p3.2xlarge"]["here_note"].startswith(
        "the Slurm cluster cannot run it: partition 'gpu' has no usable node"
    ), found["ml.p3.2xlarge"]
    shown = subprocess.run(
        [sys.executable, "-m", "shipyard", "instance-types", "--url", site.server.url],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        check=True,
    ).stdout
    here = {
        cells[1]: cells[-2] for line in shown.splitlines() if len(cells := re.split(r"\s*│\s*", line)) > 3
    }
    assert (here["ml.p3.2xlarge"], here["ml.m5.large"]) == ("no", "scaled down"), shown
    hosting = {
        t["name"]: t
        for t in httpx.get(f"{site.server.url}/api/v1/instance-types", params={"kind": "hosting"}).json()
    }
    assert "Slurm" not in (hosting["ml.p3.2xlarge"]["here_note"] or "")  # endpoints stay on this machine


RESUMES = """
import os, time
marker = "/opt/ml/checkpoints/step.txt"
if os.path.exists(marker):  # restored from CheckpointConfig.S3Uri
    print("resumed from", open(marker).read(), flush=True)
else:
    open(marker, "w").write("step-1")
    print("started", flush=True)
    time.sleep(600)
"""


def _checkpointed(site: Site, **extra: Any) -> tuple[str, str]:
    """A RESUMES job, once its first attempt's checkpoint is in the object store; its Slurm node."""
    prefix = f"checkpoints/{uuid.uuid4().hex[:8]}"
    name = _job(
        site, RESUMES, max_runtime=600, CheckpointConfig={"S3Uri": f"s3://{BUCKET}/{prefix}"}, **extra
    )
    try:
        wait_for(
            lambda: site.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/").get("KeyCount", 0) > 0,
            timeout=120,
            what=f"{name}'s checkpoint in s3://{BUCKET}/{prefix}",
        )
    except AssertionError as exc:
        job = site.sm.describe_training_job(TrainingJobName=name)
        raise AssertionError(
            f"{exc}; {job['TrainingJobStatus']} {job.get('FailureReason')}: {_all_lines(site, name)[-20:]}"
        ) from None
    return name, site.nodes_of(name)["algo-1"][0]


def _all_lines(site: Site, name: str) -> list[str]:
    group = "/aws/sagemaker/TrainingJobs"
    streams = site.logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{name}/")["logStreams"]
    return [
        e["message"]
        for s in streams
        for e in site.logs.get_log_events(logGroupName=group, logStreamName=s["logStreamName"])["events"]
    ]


def test_a_node_failure_is_retried_under_the_retry_strategy(site: Site) -> None:
    name, node = _checkpointed(site, RetryStrategy={"MaximumRetryAttempts": 1})
    site.cluster.run("scontrol", "update", f"nodename={node}", "state=down", "reason=shipyard-test")
    try:
        job = _wait(site, name, timeout=180)
    finally:
        site.cluster.run("scontrol", "update", f"nodename={node}", "state=resume", check=False)
        wait_for(lambda: node in site.cluster.idle(), timeout=60, what=f"{node} back")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert "resumed from step-1" in _all_lines(site, name)
    folders = sorted(p.name for p in (site.server.data_dir / "jobs" / name).glob("attempt-*"))
    assert folders == ["attempt-0", "attempt-1"]


def test_a_preempted_job_starts_again_from_its_checkpoint(site: Site) -> None:
    name, _ = _checkpointed(site)  # no RetryStrategy: a preemption does not spend one
    urgent = site.cluster.run(
        "sbatch",
        "--parsable",
        "--output=/dev/null",
        "--chdir=/tmp",
        "-p",
        "urgent",
        "-N2",
        "--wrap",
        "sleep 600",
    ).stdout.strip()
    try:

        def waits_again() -> bool:
            transitions = site.sm.describe_training_job(TrainingJobName=name)["SecondaryStatusTransitions"]
            return any(
                "was preempted: starting again from its last checkpoint" in t.get("StatusMessage", "")
                for t in transitions
            )

        wait_for(waits_again, timeout=120, what=f"{name} preempted and waiting again")
    finally:
        site.cluster.run("scancel", urgent)
    job = _wait(site, name, timeout=180)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert "resumed from step-1" in _all_lines(site, name)
    (message,) = [
        t["StatusMessage"]
        for t in job["SecondaryStatusTransitions"]
        if "preempted" in t.get("StatusMessage", "")
    ]
    assert re.fullmatch(
        rf"Slurm job \d+ was preempted: starting again from its last checkpoint in s3://{BUCKET}/checkpoints/\w+",
        message,
    ), message
