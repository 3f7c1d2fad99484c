"""A hostile job and a hostile model, run as the server runs them (as root in CI): every way out of
the sandbox that issue 21 names is tried from inside, and each must fail."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from shipyard.runtime._sandbox import sandbox_available
from shipyard.server import ServerProcess, free_port
from tests._support import boto_client, tgz

pytestmark = pytest.mark.skipif(not sandbox_available(), reason="bubblewrap cannot run here")

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
BUCKET = "escape-tests"

# Each probe answers what the job got: "refused: <errno name>" or what it saw.
PROBES = r"""
import ctypes, errno, json, os, socket, subprocess, sys

libc = ctypes.CDLL(None, use_errno=True)


def attempt(call):
    try:
        answer = call()
    except OSError as exc:
        return "refused: " + errno.errorcode.get(exc.errno, str(exc.errno))
    return "allowed: " + str(answer)[:200]


def syscall(number, *args):
    if libc.syscall(number, *args) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return 0


def run(*command):
    done = subprocess.run(list(command), capture_output=True, text=True)
    return done.returncode


def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return line.split()[1]


def probes(data_dir, secret, envs_dir):
    PTRACE_ATTACH, SYS_PTRACE, SYS_PIVOT_ROOT = 16, 101, 155  # x86_64
    return {
        "uid": os.getuid(),
        "user": attempt(lambda: __import__("getpass").getuser()),
        "cap_eff": status("CapEff"),
        "cap_bnd": status("CapBnd"),
        "no_new_privs": status("NoNewPrivs"),
        "umount": run("umount", "-l", "/tmp"),
        "remount": run("mount", "-o", "remount,bind,rw", "/"),
        "pivot_root": attempt(lambda: syscall(SYS_PIVOT_ROOT, b"/tmp", b"/tmp")),
        "raw_socket": attempt(lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)),
        "ptrace_init": attempt(lambda: syscall(SYS_PTRACE, PTRACE_ATTACH, 1, 0, 0)),
        "init_environ": attempt(lambda: open("/proc/1/environ", "rb").read()),
        "data_dir": attempt(lambda: os.listdir(data_dir)),
        "envs": attempt(lambda: os.listdir(os.path.join(data_dir, "envs"))),
        "shared_envs": attempt(lambda: os.listdir(envs_dir)),
        "data_files": sorted(
            os.path.relpath(os.path.join(folder, name), data_dir)
            for folder, _, names in os.walk(data_dir)
            for name in names
            if not os.path.relpath(folder, data_dir).startswith("envs")
        ),
        "database": attempt(lambda: open(os.path.join(data_dir, "shipyard.db"), "rb").read(16)),
        "root_home": attempt(lambda: os.listdir("/root")),
        "shadow": attempt(lambda: open("/etc/shadow").read(1)),
        "write_root": attempt(lambda: open("/escape", "w").write("x")),
        "tty": attempt(lambda: open("/dev/tty", "rb")),
        "secret_in_environ": secret in open("/proc/self/environ").read(),
        "write_model": attempt(lambda: open("/opt/ml/model/ok", "w").write("x")),
    }
"""

JOB = (
    PROBES
    + r"""
arg = lambda name: sys.argv[sys.argv.index(name) + 1]
print("PROBES " + json.dumps(probes(arg("--data_dir"), "not-the-secret", arg("--envs_dir"))))
"""
)

INFERENCE = (
    PROBES
    + r"""
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    asked = json.loads(body)
    return json.dumps(probes(asked["data_dir"], "not-the-secret", asked["envs_dir"])), "application/json"
"""
)


def _assert_contained(seen: dict[str, Any], *, as_root: bool) -> None:
    assert seen["no_new_privs"] == "1" and seen["cap_eff"] == "0000000000000000"
    assert seen["umount"] != 0 and seen["remount"] != 0
    assert seen["pivot_root"].startswith("refused")
    assert seen["raw_socket"] == "refused: EPERM"
    assert seen["ptrace_init"].startswith("refused")
    assert seen["init_environ"].startswith("refused")
    # The data dir is empty but for the way to the job's own environment (and a model server's
    # own script), bound back read-only.
    assert [Path(f).name for f in seen["data_files"]] in ([], ["model_server.py"]), seen["data_files"]
    assert seen["envs"].startswith("refused") or len(eval(seen["envs"].removeprefix("allowed: "))) <= 1
    # The environment cache elsewhere (envs_dir: the tests share one) shows the job's own at most.
    shared = seen["shared_envs"]
    assert shared.startswith("refused") or len(eval(shared.removeprefix("allowed: "))) <= 1, shared
    assert seen["database"] == "refused: ENOENT"
    assert seen["write_root"].startswith("refused")
    assert seen["tty"].startswith("refused"), "no controlling terminal to inject keystrokes into"
    assert seen["write_model"].startswith("allowed")
    if as_root:  # the job is not root, and holds nothing it could regain
        assert seen["uid"] != 0
        # Named as a SageMaker job's user (its container's root) for code that asks (the sagemaker
        # SDK's remote functions call sudo otherwise), with nothing of root but the name.
        assert seen["user"] == "allowed: root"
        assert seen["cap_bnd"] == "0000000000000000"
        # /root is hidden, but for the way to the installation the job's Python links to (pyenv).
        python = Path(os.path.realpath(sys.executable))
        way = [f"allowed: {[python.relative_to('/root').parts[0]]}"] if python.is_relative_to("/root") else []
        assert seen["root_home"].startswith("refused") or seen["root_home"] in ["allowed: []", *way]
        assert seen["shadow"] == "refused: EACCES"


def test_a_hostile_training_job_cannot_leave_its_sandbox(server: ServerProcess) -> None:
    sm, s3 = boto_client("sagemaker", server.url), boto_client("s3", server.url)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)
    name = f"escape-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=BUCKET, Key=f"{name}/sourcedir.tar.gz", Body=tgz({"train.py": JOB}))
    sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File"},
        HyperParameters={
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": json.dumps(f"s3://{BUCKET}/{name}/sourcedir.tar.gz"),
            "data_dir": json.dumps(str(server.data_dir)),
            "envs_dir": json.dumps(os.environ["SHIPYARD_ENVS_DIR"]),
        },
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )
    deadline = time.monotonic() + 300
    while (job := sm.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline, "the job did not end"
        time.sleep(0.05)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    events = boto_client("logs", server.url).filter_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/"
    )["events"]
    line = next(e["message"] for e in events if e["message"].startswith("PROBES "))
    _assert_contained(json.loads(line.removeprefix("PROBES ")), as_root=os.geteuid() == 0)
    assert not Path("/escape").exists()


def test_a_hostile_model_cannot_leave_its_sandbox(server: ServerProcess) -> None:
    sm, s3 = boto_client("sagemaker", server.url), boto_client("s3", server.url)
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)
    name = f"escape-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=BUCKET, Key=f"{name}/model.tar.gz", Body=tgz({"weights.txt": "w"}))
    s3.put_object(Bucket=BUCKET, Key=f"{name}/code.tar.gz", Body=tgz({"inference.py": INFERENCE}))
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": SKLEARN_IMAGE,
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
            {"VariantName": "v", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
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
            EndpointName=name,
            Body=json.dumps({"data_dir": str(server.data_dir), "envs_dir": os.environ["SHIPYARD_ENVS_DIR"]}),
            ContentType="application/json",
        )
        _assert_contained(json.loads(answer["Body"].read()), as_root=os.geteuid() == 0)
    finally:
        sm.delete_endpoint(EndpointName=name)


def test_a_model_server_answers_only_the_server(tmp_path: Path) -> None:
    """Another job on the machine shares the loopback network: without the model server's token
    its requests are refused, before the model sees them."""
    model_server = Path(__file__).resolve().parents[2] / "src" / "shipyard" / "runtime" / "model_server.py"
    (tmp_path / "model").mkdir()
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "inference.py").write_text(
        "def model_fn(model_dir):\n    return None\n\n"
        "def transform_fn(model, body, content_type, accept):\n    return b'seen', 'text/plain'\n"
    )
    port = free_port()
    command = [sys.executable, str(model_server), "--model-dir", str(tmp_path / "model"), "--port", str(port)]
    command += ["--code-dir", str(tmp_path / "code"), "--program", "inference.py"]
    env = {**os.environ, "SHIPYARD_MODEL_SERVER_TOKEN": "s3cret", "PYTHONPATH": str(tmp_path / "code")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/ping", headers={"X-Shipyard-Token": "s3cret"}).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the model server did not come up"
            time.sleep(0.05)
        assert httpx.get(f"{url}/ping").status_code == 403
        wrong = httpx.post(f"{url}/invocations", content=b"x", headers={"X-Shipyard-Token": "guess"})
        assert (wrong.status_code, wrong.text) == (403, "only the Shipyard server may call this model server")
        right = httpx.post(f"{url}/invocations", content=b"x", headers={"X-Shipyard-Token": "s3cret"})
        assert (right.status_code, right.text) == (200, "seen")
    finally:
        process.kill()
        process.wait()


def test_the_data_dir_and_the_database_are_the_servers_alone(server: ServerProcess) -> None:
    assert server.data_dir.stat().st_mode & 0o777 == 0o700
    assert (server.data_dir / "shipyard.db").stat().st_mode & 0o777 == 0o600
