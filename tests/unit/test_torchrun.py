"""torch_distributed without torch or a GPU: the environment each process of an instance is given
(runtime/torchrun.py, run as the job's Python runs it: a file on its own) and how the processes end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from shipyard.core.training import TrainingJobSpec
from shipyard.runtime import torchrun

LAUNCHER = Path(torchrun.__file__)

RECORD = r"""
import json, os, sys
keys = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT",
        "CUDA_VISIBLE_DEVICES", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_USE_AGENT_STORE", "OMP_NUM_THREADS")
with open(os.path.join(sys.argv[1], os.environ["RANK"] + ".json"), "w") as f:
    json.dump({"env": {k: os.environ.get(k) for k in keys}, "argv": sys.argv[2:]}, f)
"""


def test_each_process_is_ranked_across_all_instances() -> None:
    env = torchrun.process_environment(
        {"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b", "OMP_NUM_THREADS": "3"},
        local_rank=1,
        nproc=2,
        nnodes=3,
        node_rank=2,
        master_addr="10.0.0.1",
        master_port=29511,
        run_id="job",
    )
    assert env["RANK"] == "5" and env["LOCAL_RANK"] == "1" and env["GROUP_RANK"] == "2"
    assert env["WORLD_SIZE"] == "6" and env["LOCAL_WORLD_SIZE"] == "2" and env["GROUP_WORLD_SIZE"] == "3"
    assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("10.0.0.1", "29511")
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-a,GPU-b"  # every process sees all: it picks LOCAL_RANK's
    assert env["TORCHELASTIC_USE_AGENT_STORE"] == "False"  # rank 0 hosts the store itself
    assert env["OMP_NUM_THREADS"] == "3"  # the job's own setting kept


def test_the_launcher_starts_one_process_per_gpu_with_its_rank(tmp_path: Path) -> None:
    script = tmp_path / "record.py"
    script.write_text(RECORD)
    done = subprocess.run(
        [sys.executable, str(LAUNCHER), "--nproc=3", "--nnodes=2", "--node-rank=1", "--master-port=29600",
         "--run-id=j", "--", sys.executable, str(script), str(tmp_path), "--epochs", "2"],
        env={"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b,GPU-c", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    seen = {int(p.stem): json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert sorted(seen) == [3, 4, 5]  # node 1 of 2, three processes each
    for rank, what in seen.items():
        assert what["argv"] == ["--epochs", "2"]
        assert what["env"]["LOCAL_RANK"] == str(rank - 3) and what["env"]["WORLD_SIZE"] == "6"
        assert (
            what["env"]["MASTER_PORT"] == "29600"
            and what["env"]["CUDA_VISIBLE_DEVICES"] == "GPU-a,GPU-b,GPU-c"
        )
        assert int(what["env"]["OMP_NUM_THREADS"]) >= 1


def test_one_process_failing_stops_the_others_and_is_the_exit_status(tmp_path: Path) -> None:
    # rank 1 fails; rank 0 would wait for a signal for ever
    script = "import os, signal, sys\nif os.environ['RANK'] == '1': sys.exit(3)\nsignal.pause()\n"
    done = subprocess.run(
        [sys.executable, str(LAUNCHER), "--nproc=2", "--grace=5", "--", sys.executable, "-c", script],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert "process of rank 1 (local rank 1) exited with status 3; stopping the other 1" in done.stdout


def _spec(**hyperparameters: str) -> TrainingJobSpec:
    return TrainingJobSpec.from_request(
        {
            "TrainingJobName": "j",
            "AlgorithmSpecification": {"TrainingImage": "x", "TrainingInputMode": "File"},
            "RoleArn": "arn:aws:iam::000000000000:role/r",
            "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
            "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
            "HyperParameters": hyperparameters,
        }
    )


def test_the_sdks_distribution_hyperparameter_asks_for_it() -> None:
    # PyTorch(distribution={"torch_distributed": {"enabled": True}}) sends it JSON-encoded
    assert _spec(sagemaker_torch_distributed_enabled="true").torch_distributed
    assert not _spec(sagemaker_torch_distributed_enabled="false").torch_distributed
    assert not _spec().torch_distributed
    assert (
        "sagemaker_torch_distributed_enabled"
        not in _spec(sagemaker_torch_distributed_enabled="true").user_hyperparameters
    )


def test_the_processes_lines_never_mix(tmp_path: Path) -> None:
    # unbuffered, print writes a line's text and its newline apart: relayed, each line stays whole
    script = "import os\nfor i in range(200): print(f'rank {os.environ[\"RANK\"]} line {i}')\n"
    done = subprocess.run(
        [sys.executable, str(LAUNCHER), "--nproc=3", "--", sys.executable, "-c", script],
        env={"PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sorted(lines) == sorted(f"rank {r} line {i}" for r in range(3) for i in range(200))
