"""GPU jobs on a machine without a GPU: a real server given a fake device list (two "GPUs" whose
device nodes are plain files, each holding its own name) runs GPU jobs in the sandbox. Each job sees
its own node and no other, is told the same GPU in every way, two jobs never share one, a third
waits for one, and a type larger than the machine is refused naming the numbers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.runtime._sandbox import sandbox_available
from shipyard.server import ServerProcess
from tests._support import boto_client, tgz

pytestmark = pytest.mark.skipif(not sandbox_available(), reason="bubblewrap cannot run here")

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
PYTORCH_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.1.0-cpu-py310"
BUCKET = "gpu-tests"
# The site's catalog maps ml.g5.xlarge to this machine's (fake) GPUs, small enough for a test box.
CATALOG = (
    "instance_type,family,vcpu,memory_gib,gpu_count,gpu_model,gpu_memory_gib,training_usd_per_hour\n"
    "ml.g5.xlarge,g5,1,1,1,NVIDIA A10G,24,1.00\n"
    "ml.g5.12xlarge,g5,1,1,4,NVIDIA A10G,24,5.00\n"
    "ml.p3.8xlarge,p3,2,2,2,NVIDIA A10G,24,3.00\n"
)

# What a job saw of the machine's GPUs; then (when asked) it holds its GPU until released.
JOB = r"""
import errno, glob, json, os, stat, sys, time


def attempt(call):
    try:
        return "allowed: " + str(call())[:200]
    except OSError as exc:
        return "refused: " + errno.errorcode.get(exc.errno, str(exc.errno))


args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
nodes = sorted(glob.glob("/dev/nvidia*"))
config = json.load(open("/opt/ml/input/config/resourceconfig.json"))
seen = {
    "nodes": nodes,
    "contents": {n: open(n).read() for n in nodes},
    "env": {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "SM_NUM_GPUS")},
    "current_gpus": config.get("current_gpus", []),
    "any_gpu": {i: attempt(lambda i=i: open(f"/dev/nvidia{i}").read()) for i in range(4)},
    "host_nodes": attempt(lambda: os.listdir(args["--nodes"])),
    "mknod": attempt(lambda: os.mknod("/dev/nvidia7", 0o666 | stat.S_IFCHR, os.makedev(195, 7))),
}
print("SEEN " + json.dumps(seen), flush=True)
if args.get("--hold") == "yes":
    import boto3

    s3 = boto3.client("s3")
    while True:
        try:
            # under the job's own output prefix, which its credentials may read
            s3.head_object(Bucket=args["--bucket"], Key=f"output/{os.environ['TRAINING_JOB_NAME']}/release")
            break
        except Exception:
            time.sleep(0.1)
"""


@pytest.fixture(scope="module")
def gpu_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    nodes = tmp_path_factory.mktemp("fake-dev")
    gpus = []
    for index in range(2):
        (nodes / f"nvidia{index}").write_text(f"gpu{index}")
        gpus.append(
            {
                "index": index,
                "uuid": f"GPU-{index}{uuid.uuid4().hex[1:8]}-0000-0000-0000-000000000000",
                "name": "NVIDIA A10G",
                "memory_mib": 24576,
                "node": str(nodes / f"nvidia{index}"),
            }
        )
    for control in ("nvidiactl", "nvidia-uvm"):
        (nodes / control).write_text(control)
    listing = nodes / "gpus.json"
    listing.write_text(
        json.dumps({"gpus": gpus, "control": [str(nodes / "nvidiactl"), str(nodes / "nvidia-uvm")]})
    )
    data_dir = tmp_path_factory.mktemp("gpu-server")
    (data_dir / "instance_types.csv").write_text(CATALOG)
    env = {
        "SHIPYARD_FAKE_GPUS": str(listing),
        "SHIPYARD_FIT_TO_MACHINE": "off",
        "SHIPYARD_CPU_OVERCOMMIT": "4",
    }
    with ServerProcess(data_dir, env=env) as server:
        s3 = boto_client("s3", server.url)
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=BUCKET)
        yield server, nodes


def _start(
    server: ServerProcess,
    nodes: Path,
    instance_type: str,
    *,
    hold: bool,
    script: str = JOB,
    count: int = 1,
    extra: dict[str, str] | None = None,
    image: str = IMAGE,
) -> str:
    sm, s3 = boto_client("sagemaker", server.url), boto_client("s3", server.url)
    name = f"gpu-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=BUCKET, Key=f"{name}/sourcedir.tar.gz", Body=tgz({"train.py": script}))
    sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File"},
        HyperParameters={
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": json.dumps(f"s3://{BUCKET}/{name}/sourcedir.tar.gz"),
            "nodes": json.dumps(str(nodes)),
            "hold": '"yes"' if hold else '"no"',
            "bucket": json.dumps(BUCKET),
            **(extra or {}),
        },
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
        ResourceConfig={"InstanceType": instance_type, "InstanceCount": count, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )
    return name


def _seen(server: ServerProcess, name: str, timeout: float = 300) -> dict[str, Any]:
    """What the job printed, once it has (its status read first: a job that has ended has all
    its lines in the log by then)."""
    logs = boto_client("logs", server.url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = boto_client("sagemaker", server.url).describe_training_job(TrainingJobName=name)
        messages: list[str] = []
        with contextlib.suppress(logs.exceptions.ResourceNotFoundException):
            events = logs.filter_log_events(
                logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/"
            )["events"]
            messages = [e["message"] for e in events]
        for message in messages:
            if message.startswith("SEEN "):
                return dict(json.loads(message.removeprefix("SEEN ")))
        assert job["TrainingJobStatus"] == "InProgress", (job.get("FailureReason"), messages)
        time.sleep(0.1)
    raise AssertionError(f"{name} printed nothing in {timeout:g} s")


def _wait(server: ServerProcess, name: str, timeout: float = 300) -> dict[str, Any]:
    sm = boto_client("sagemaker", server.url)
    deadline = time.monotonic() + timeout
    while (job := sm.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline, f"{name} did not end"
        time.sleep(0.1)
    return dict(job)


def _own_gpu(seen: dict[str, Any], nodes: Path) -> int:
    """The one GPU the job saw, checked to be all it could reach and named alike everywhere."""
    gpu_nodes = [n for n in seen["nodes"] if n.removeprefix("/dev/nvidia").isdigit()]
    assert len(gpu_nodes) == 1, seen["nodes"]
    index = int(gpu_nodes[0].removeprefix("/dev/nvidia"))
    assert sorted(seen["nodes"]) == sorted([gpu_nodes[0], "/dev/nvidiactl", "/dev/nvidia-uvm"])
    assert seen["contents"][gpu_nodes[0]] == f"gpu{index}"  # the node bound is that GPU's own
    listing = json.loads((nodes / "gpus.json").read_text())["gpus"]
    own_uuid = next(g["uuid"] for g in listing if g["index"] == index)
    assert seen["env"] == {
        "CUDA_VISIBLE_DEVICES": own_uuid,
        "NVIDIA_VISIBLE_DEVICES": own_uuid,
        "SM_NUM_GPUS": "1",
    }
    assert seen["current_gpus"] == [own_uuid]
    for other in range(4):  # another's GPU (or one that is nobody's) is not there to open
        if other != index:
            assert seen["any_gpu"][str(other)] == "refused: ENOENT"
    assert seen["host_nodes"].startswith("refused")  # nor by the host's path
    assert seen["mknod"].startswith("refused")  # nor can one be made
    return index


def test_gpu_jobs_each_see_only_their_own_gpu_and_a_third_waits(
    gpu_server: tuple[ServerProcess, Path],
) -> None:
    server, nodes = gpu_server
    first = _start(server, nodes, "ml.g5.xlarge", hold=True)
    second = _start(server, nodes, "ml.g5.xlarge", hold=True)
    gpus = {_own_gpu(_seen(server, first), nodes), _own_gpu(_seen(server, second), nodes)}
    assert gpus == {0, 1}  # both running at once, on different GPUs
    third = _start(server, nodes, "ml.g5.xlarge", hold=False)
    sm = boto_client("sagemaker", server.url)
    deadline = time.monotonic() + 60
    while True:  # the machine's two GPUs are held: the third waits, saying so
        job = sm.describe_training_job(TrainingJobName=third)
        message = (job.get("SecondaryStatusTransitions") or [{}])[-1].get("StatusMessage", "")
        if job["SecondaryStatus"] == "Pending" and "GPU" in message:
            break
        assert job["SecondaryStatus"] in ("Starting", "Pending") and time.monotonic() < deadline, job
        time.sleep(0.05)
    assert "Waiting for 1 GPU" in message, message
    for name in (first, second):
        boto_client("s3", server.url).put_object(Bucket=BUCKET, Key=f"output/{name}/release", Body=b"")
    for name in (first, second):
        assert _wait(server, name)["TrainingJobStatus"] == "Completed"
    _own_gpu(_seen(server, third), nodes)
    assert _wait(server, third)["TrainingJobStatus"] == "Completed"


def test_a_job_without_gpus_sees_none(gpu_server: tuple[ServerProcess, Path]) -> None:
    server, nodes = gpu_server
    name = _start(server, nodes, "ml.m5.large", hold=False)
    seen = _seen(server, name)
    assert seen["nodes"] == []  # not even the driver's control nodes
    assert seen["env"]["CUDA_VISIBLE_DEVICES"] == "" and seen["env"]["SM_NUM_GPUS"] == "0"
    assert all(v == "refused: ENOENT" for v in seen["any_gpu"].values())
    assert _wait(server, name)["TrainingJobStatus"] == "Completed"


def test_more_gpus_than_the_machine_has_is_refused_naming_the_numbers(
    gpu_server: tuple[ServerProcess, Path],
) -> None:
    server, nodes = gpu_server
    sm = boto_client("sagemaker", server.url)
    with pytest.raises(sm.exceptions.ClientError, match=r"4 GPUs; this backend has .* 2 GPUs"):
        _start(server, nodes, "ml.g5.12xlarge", hold=False)


def test_the_server_log_says_which_gpus_it_found(gpu_server: tuple[ServerProcess, Path]) -> None:
    server, nodes = gpu_server
    assert f"GPUs: 2 GPUs (fake device list {nodes / 'gpus.json'})" in server.log_tail(10_000)
    assert os.environ.get("SHIPYARD_FAKE_GPUS") is None  # the test server's alone


def test_instance_types_say_which_this_machine_runs(gpu_server: tuple[ServerProcess, Path]) -> None:
    server, _ = gpu_server
    found = {t["name"]: t for t in httpx.get(f"{server.url}/api/v1/instance-types").json()}
    # the site's catalog maps ml.g5.xlarge to this machine's GPUs
    assert (
        found["ml.g5.xlarge"]["runs_here"] == "as_is" and found["ml.g5.xlarge"]["gpu_model"] == "NVIDIA A10G"
    )
    assert found["ml.g5.12xlarge"]["runs_here"] == "no"
    assert (
        "4 GPUs" in found["ml.g5.12xlarge"]["here_note"] and "2 GPUs" in found["ml.g5.12xlarge"]["here_note"]
    )
    assert found["ml.p4d.24xlarge"]["runs_here"] == "no"  # 8 GPUs of 40 GiB
    shown = subprocess.run(
        [sys.executable, "-m", "shipyard", "instance-types", "--gpu", "--here", "--url", server.url],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        check=True,
    ).stdout
    assert "ml.g5.xlarge" in shown and "ml.g5.12xlarge" not in shown and "ml.p4d" not in shown
    assert "This machine's GPUs: 0: NVIDIA A10G 24 GiB, 1: NVIDIA A10G 24 GiB" in shown


INFERENCE = r"""
import glob, json, os


def model_fn(model_dir):
    return None


def transform_fn(model, body, content_type, accept):
    nodes = sorted(glob.glob("/dev/nvidia*"))
    seen = {
        "nodes": nodes,
        "contents": {n: open(n).read() for n in nodes},
        "env": {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")},
    }
    return json.dumps(seen), "application/json"
"""


def test_an_endpoint_on_a_gpu_type_gets_a_gpu_of_its_own(gpu_server: tuple[ServerProcess, Path]) -> None:
    server, nodes = gpu_server
    sm, s3 = boto_client("sagemaker", server.url), boto_client("s3", server.url)
    name = f"gpu-ep-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=BUCKET, Key=f"{name}/model.tar.gz", Body=tgz({"weights.txt": "w"}))
    s3.put_object(Bucket=BUCKET, Key=f"{name}/code.tar.gz", Body=tgz({"inference.py": INFERENCE}))
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": IMAGE,
            "ModelDataUrl": f"s3://{BUCKET}/{name}/model.tar.gz",
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{BUCKET}/{name}/code.tar.gz",
            },
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "v", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.g5.xlarge"}
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deadline = time.monotonic() + 300
    while (endpoint := sm.describe_endpoint(EndpointName=name))["EndpointStatus"] == "Creating":
        assert time.monotonic() < deadline, "the endpoint did not come up"
        time.sleep(0.05)
    assert endpoint["EndpointStatus"] == "InService", endpoint.get("FailureReason")
    try:
        answer = boto_client("sagemaker-runtime", server.url).invoke_endpoint(
            EndpointName=name, Body=b"{}", ContentType="application/json"
        )
        seen = json.loads(answer["Body"].read())
        gpu_nodes = [n for n in seen["nodes"] if n.removeprefix("/dev/nvidia").isdigit()]
        assert len(gpu_nodes) == 1 and sorted(seen["nodes"]) == sorted(
            [*gpu_nodes, "/dev/nvidiactl", "/dev/nvidia-uvm"]
        )
        index = int(gpu_nodes[0].removeprefix("/dev/nvidia"))
        assert seen["contents"][gpu_nodes[0]] == f"gpu{index}"
        listing = json.loads((nodes / "gpus.json").read_text())["gpus"]
        own = next(g["uuid"] for g in listing if g["index"] == index)
        assert seen["env"] == {"CUDA_VISIBLE_DEVICES": own, "NVIDIA_VISIBLE_DEVICES": own}
        # the endpoint's GPU is its own: a job now gets the other one
        job = _start(server, nodes, "ml.g5.xlarge", hold=False)
        assert _own_gpu(_seen(server, job), nodes) == 1 - index
        assert _wait(server, job)["TrainingJobStatus"] == "Completed"
    finally:
        sm.delete_endpoint(EndpointName=name)


# torch_distributed: each process says what it was told, and all of them all-reduce over gloo (the
# fake GPUs cannot run NCCL; scripts/gpu-check runs NCCL on real ones).
RANKED = r"""
import json, os, torch, torch.distributed as dist

dist.init_process_group("gloo")
total = torch.tensor([float(dist.get_rank() + 1)])
dist.all_reduce(total)
keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "CUDA_VISIBLE_DEVICES", "SM_CURRENT_HOST")
seen = {k: os.environ.get(k) for k in keys}
print("RANKED " + json.dumps({**seen, "world": dist.get_world_size(), "sum": total.item()}), flush=True)
dist.destroy_process_group()
"""
TORCH_DISTRIBUTED = {"sagemaker_torch_distributed_enabled": "true"}


def _start_ranked(server: ServerProcess, nodes: Path, instance_type: str, count: int = 1) -> str:
    pytest.importorskip("torch")
    return _start(
        server, nodes, instance_type, hold=False, script=RANKED, count=count, extra=TORCH_DISTRIBUTED,
        image=PYTORCH_IMAGE,
    )  # fmt: skip


def _ranked(server: ServerProcess, name: str) -> tuple[list[dict[str, Any]], list[str]]:
    """What each process of a finished job said, by rank, and the job's Shipyard lines."""
    job = _wait(server, name)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    events = boto_client("logs", server.url).filter_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/"
    )["events"]
    ranked = [
        json.loads(e["message"].removeprefix("RANKED ")) for e in events if e["message"].startswith("RANKED ")
    ]
    notes = [e["message"] for e in events if e["message"].startswith("Shipyard: torch_distributed")]
    return sorted(ranked, key=lambda r: int(r["RANK"])), notes


def test_torch_distributed_starts_a_process_per_gpu(gpu_server: tuple[ServerProcess, Path]) -> None:
    server, nodes = gpu_server
    name = _start_ranked(server, nodes, "ml.p3.8xlarge")
    ranked, notes = _ranked(server, name)
    uuids = {g["uuid"] for g in json.loads((nodes / "gpus.json").read_text())["gpus"]}
    assert [(r["RANK"], r["LOCAL_RANK"]) for r in ranked] == [("0", "0"), ("1", "1")]
    for r in ranked:
        assert r["WORLD_SIZE"] == r["LOCAL_WORLD_SIZE"] == "2" and r["world"] == 2 and r["sum"] == 3
        assert set(r["CUDA_VISIBLE_DEVICES"].split(",")) == uuids  # both GPUs; each takes LOCAL_RANK's
    assert len(notes) == 1 and "2 processes on algo-1 (2 GPUs), ranks 0-1 of 2" in notes[0], notes


def test_torch_distributed_ranks_processes_across_instances(gpu_server: tuple[ServerProcess, Path]) -> None:
    server, nodes = gpu_server
    name = _start_ranked(server, nodes, "ml.g5.xlarge", count=2)
    ranked, notes = _ranked(server, name)
    assert [(r["RANK"], r["LOCAL_RANK"], r["SM_CURRENT_HOST"]) for r in ranked] == [
        ("0", "0", "algo-1"),
        ("1", "0", "algo-2"),
    ]
    assert all(r["world"] == 2 and r["sum"] == 3 for r in ranked)
    assert ranked[0]["CUDA_VISIBLE_DEVICES"] != ranked[1]["CUDA_VISIBLE_DEVICES"]  # a GPU each
    assert sorted(n.split(" on ")[1].split(" (")[0] for n in notes) == ["algo-1", "algo-2"]


def test_builtin_xgboost_on_a_gpu_type_is_given_the_gpu(gpu_server: tuple[ServerProcess, Path]) -> None:
    # XGBoost 2.0 on (the 3.0-5 image's) with no GPU to find falls back to its CPU, warning: the job
    # still completes here, its log saying what it was asked for; scripts/gpu-check has a real GPU.
    server, _ = gpu_server
    sm, s3 = boto_client("sagemaker", server.url), boto_client("s3", server.url)
    rows = "".join(f"{i % 2},{i},{(i * 7) % 5}\n" for i in range(40))
    s3.put_object(Bucket=BUCKET, Key="xgb/train/train.csv", Body=rows.encode())
    logs = boto_client("logs", server.url)
    seen = {}
    for instance_type in ("ml.g5.xlarge", "ml.m5.large"):
        name = f"gpu-xgb-{uuid.uuid4().hex[:8]}"
        sm.create_training_job(
            TrainingJobName=name,
            RoleArn=ROLE,
            AlgorithmSpecification={
                "TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5",
                "TrainingInputMode": "File",
            },
            HyperParameters={"objective": "binary:logistic", "num_round": "3"},
            InputDataConfig=[
                {
                    "ChannelName": "train",
                    "ContentType": "text/csv",
                    "DataSource": {
                        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/xgb/train/"}
                    },
                }
            ],
            OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
            ResourceConfig={"InstanceType": instance_type, "InstanceCount": 1, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 600},
        )
        job = _wait(server, name, timeout=600)
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        events = logs.filter_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/"
        )["events"]
        seen[instance_type] = [e["message"] for e in events if e["message"].startswith("Shipyard: XGBoost")]
    [note] = seen["ml.g5.xlarge"]
    assert note.endswith("on 1 GPU: tree_method=hist, device=cuda (on its first GPU)"), note
    assert seen["ml.m5.large"] == []  # a CPU type: XGBoost's own defaults
