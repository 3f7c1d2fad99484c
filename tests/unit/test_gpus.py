"""GPUs without a GPU: the device list, CUDA_VISIBLE_DEVICES, grants, placement by GPU memory, the
sandbox's device binds and what a job is told (core/devices.py, compute/local/_gpus.py)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from shipyard.compute.local._gpus import GpuLedger, discover
from shipyard.core.catalog import InstanceType
from shipyard.core.devices import Gpu, GpuInventory, GpusBusy, grant, visible, visible_environment
from shipyard.core.placement import Resources, fit_here, plan
from shipyard.errors import ConfigurationError, ValidationError
from shipyard.runtime import container
from shipyard.runtime._sandbox import gpu_binds, sandbox_command
from shipyard.runtime.contract import AgentConfig, StoreAccess


def _gpus(count: int, memory_mib: int = 24576, folder: str = "/dev") -> tuple[Gpu, ...]:
    return tuple(
        Gpu(i, f"GPU-{i:08x}-aaaa-bbbb-cccc-dddddddddddd", "NVIDIA A10G", memory_mib, f"{folder}/nvidia{i}")
        for i in range(count)
    )


def _type(gpus: int, gpu_memory_gib: float = 24.0) -> InstanceType:
    return InstanceType("ml.g5.test", "g5", 4, 16, gpus, "NVIDIA A10G", gpu_memory_gib)


# -- discovery ------------------------------------------------------------------------------------
def test_a_fake_device_list_is_read_and_said_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    listing = tmp_path / "gpus.json"
    listing.write_text(
        json.dumps(
            {
                "gpus": [g.to_json() for g in _gpus(2, folder=str(tmp_path))],
                "control": [str(tmp_path / "nvidiactl")],
            }
        )
    )
    with caplog.at_level(logging.INFO):
        inventory = discover(listing, environ={})
    assert [g.index for g in inventory.gpus] == [0, 1]
    assert inventory.control == (str(tmp_path / "nvidiactl"),)
    assert "2 GPUs (fake device list" in caplog.text and "NVIDIA A10G 24 GiB" in caplog.text


def test_without_nvml_there_is_no_gpu_and_the_log_says_why(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        inventory = discover(None, environ={})
    assert len(inventory) == 0  # this machine has no GPU, and no NVML
    assert "GPUs: no GPU (" in caplog.text


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("not json", "cannot read"),
        ('{"gpus": [{"index": 0, "uuid": "GPU-1", "name": "x"}]}', "gpus[0].memory_mib"),
        ('{"gpus": [{"index": "0", "uuid": "GPU-1", "name": "x", "memory_mib": 1}]}', "gpus[0].index"),
        (
            '{"gpus": [{"index": 0, "uuid": "GPU-1", "name": "x", "memory_mib": 1, "node": "rel"}]}',
            "gpus[0].node",
        ),
        ('{"gpus": [], "control": ["nvidiactl"]}', "control"),
        (
            '{"gpus": [{"index": 0, "uuid": "GPU-1", "name": "x", "memory_mib": 1},'
            ' {"index": 0, "uuid": "GPU-2", "name": "x", "memory_mib": 1}]}',
            "same index 0",
        ),
    ],
)
def test_a_bad_fake_device_list_names_what_is_wrong(tmp_path: Path, content: str, named: str) -> None:
    listing = tmp_path / "gpus.json"
    listing.write_text(content)
    with pytest.raises(ConfigurationError, match="fake_gpus") as caught:
        discover(listing, environ={})
    assert named in str(caught.value)


def test_cuda_visible_devices_given_to_the_server_limits_it() -> None:
    gpus = _gpus(4)
    assert [g.index for g in visible(gpus, "2,0")[0]] == [2, 0]
    assert [g.index for g in visible(gpus, gpus[3].uuid[:12])[0]] == [3]  # a UUID prefix, as CUDA takes
    assert visible(gpus, "")[0] == ()  # empty: none
    assert [g.index for g in visible(gpus, "1,-1,2")[0]] == [1]  # -1 ends the list, as in CUDA
    chosen, unknown = visible(gpus, "1,7")
    assert [g.index for g in chosen] == [1] and unknown == ["7"]
    assert visible(gpus, None)[0] == gpus


def test_cuda_visible_devices_limits_the_fake_list_too(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    listing = tmp_path / "gpus.json"
    listing.write_text(json.dumps({"gpus": [g.to_json() for g in _gpus(3)]}))
    with caplog.at_level(logging.INFO):
        inventory = discover(listing, environ={"CUDA_VISIBLE_DEVICES": "1,9"})
    assert [g.index for g in inventory.gpus] == [1]
    assert "names 9, which is no GPU here" in caplog.text


# -- grants ---------------------------------------------------------------------------------------
def test_each_instance_gets_gpus_of_its_own() -> None:
    grants = grant(_gpus(4), 2, count=2)
    assert [[g.index for g in granted] for granted in grants] == [[0, 1], [2, 3]]
    assert grant(_gpus(4), 0, count=2) == ((), ())


def test_gpus_with_the_memory_asked_come_first() -> None:
    small, big = _gpus(1, memory_mib=16384)[0], Gpu(1, "GPU-big", "NVIDIA A100", 81920, "/dev/nvidia1")
    assert grant([small, big], 1, min_memory_gib=40)[0] == (big,)
    assert grant([small], 1, min_memory_gib=40)[0] == (small,)  # fit-to-machine's placement allowed it


def test_too_few_free_gpus_wait() -> None:
    with pytest.raises(GpusBusy, match="Waiting for 2 GPUs: only 1 is free"):
        grant(_gpus(1), 2)


def test_the_ledger_never_grants_a_held_gpu_twice_and_frees_what_ended() -> None:
    ledger = GpuLedger(GpuInventory(_gpus(2)))
    first = ledger.take("job-a", 1)
    running = {"a": True}
    ledger.hold("job-a", [g.index for g in first[0]], lambda: running["a"])
    second = ledger.take("job-b", 1)
    assert first[0] != second[0]
    with pytest.raises(GpusBusy):
        ledger.take("job-c", 1)
    running["a"] = False  # job a's agent ended without a word: its GPU is free again
    assert ledger.take("job-c", 1) == first
    ledger.release("job-b")
    assert set(ledger.held().values()) == {"job-c"}


def test_a_restarted_server_adopts_what_running_instances_hold() -> None:
    ledger = GpuLedger(GpuInventory(_gpus(2)))
    ledger.adopt("pid 10", [1], lambda: True)
    assert [g.index for g in ledger.take("new", 1)[0]] == [0]


# -- placement -------------------------------------------------------------------------------------
def test_more_gpus_than_exist_fails_naming_the_numbers() -> None:
    with pytest.raises(ValidationError, match=r"needs .* and 8 GPUs; this backend has .* and 2 GPUs"):
        plan(_type(8), 1, Resources(16, 64, 2), fit_to_machine=False)


def test_with_fit_to_machine_fewer_gpus_are_granted_and_said() -> None:
    placement = plan(_type(8), 1, Resources(16, 64, 2), fit_to_machine=True)
    assert placement.per_instance.gpus == 2 and "2 of 8 GPUs" in (placement.scaled_down or "")


def test_gpus_smaller_than_the_type_promises_fail_unless_fit_to_machine() -> None:
    with pytest.raises(ValidationError, match=r"GPUs of 40 GiB .* largest GPU has 24 GiB"):
        plan(_type(1, 40), 1, Resources(16, 64, 2), fit_to_machine=False, gpu_memory_gib=24)
    placement = plan(_type(1, 40), 1, Resources(16, 64, 2), fit_to_machine=True, gpu_memory_gib=24)
    assert placement.per_instance.gpus == 1 and "GPUs of 24 of 40 GiB" in (placement.scaled_down or "")
    assert (
        plan(_type(1, 24), 1, Resources(16, 64, 2), fit_to_machine=False, gpu_memory_gib=24).scaled_down
        is None
    )


def test_which_types_run_here() -> None:
    machine = Resources(16, 64, 2)
    assert fit_here(_type(1), machine, fit_to_machine=False, gpu_memory_gib=24).verdict == "as_is"
    refused = fit_here(_type(4), machine, fit_to_machine=False, gpu_memory_gib=24)
    assert refused.verdict == "no" and "4 GPUs" in (refused.note or "") and "2 GPUs" in (refused.note or "")
    scaled = fit_here(_type(4), machine, fit_to_machine=True, gpu_memory_gib=24)
    assert scaled.verdict == "scaled" and "2 of 4 GPUs" in (scaled.note or "")
    cpu_only = fit_here(_type(1), Resources(16, 64, 0), fit_to_machine=True)
    assert cpu_only.verdict == "scaled" and (cpu_only.note or "").startswith("runs without a GPU")


# -- the sandbox and the environment ---------------------------------------------------------------
def test_the_sandbox_binds_exactly_the_granted_nodes_and_the_control_nodes(tmp_path: Path) -> None:
    gpus = _gpus(4, folder=str(tmp_path))
    binds = gpu_binds([gpus[2]], [str(tmp_path / "nvidiactl"), "/dev/nvidia-uvm"])
    assert binds == [
        (str(tmp_path / "nvidia2"), "/dev/nvidia2"),
        (str(tmp_path / "nvidiactl"), "/dev/nvidiactl"),
        ("/dev/nvidia-uvm", "/dev/nvidia-uvm"),
    ]
    assert gpu_binds([], ["/dev/nvidiactl"]) == []  # no GPU granted: not even the control nodes
    (tmp_path / "hosts").write_text("")
    args = sandbox_command(
        ["true"],
        ml_dir=tmp_path,
        host="algo-1",
        hosts_file=tmp_path / "hosts",
        hide=[],
        keep=[],
        cwd="/",
        devices=binds,
    )
    dev_binds = [args[i + 1 : i + 3] for i, a in enumerate(args) if a == "--dev-bind"]
    assert dev_binds == [list(b) for b in binds]
    assert args.index("--dev") < args.index("--dev-bind")  # into the fresh /dev, nothing else of the host's


def test_what_a_job_is_told_agrees_everywhere() -> None:
    gpus = _gpus(4)[1:3]
    env = visible_environment(gpus)
    assert env["CUDA_VISIBLE_DEVICES"] == env["NVIDIA_VISIBLE_DEVICES"] == f"{gpus[0].uuid},{gpus[1].uuid}"
    assert visible_environment([]) == {"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}
    from shipyard.core.training import TrainingJobSpec

    spec = TrainingJobSpec.from_request(
        {
            "TrainingJobName": "j",
            "AlgorithmSpecification": {"TrainingImage": "x", "TrainingInputMode": "File"},
            "RoleArn": "arn:aws:iam::000000000000:role/r",
            "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
            "ResourceConfig": {"InstanceType": "ml.g5.12xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        }
    )
    uuids = [g.uuid for g in gpus]
    sm = container.training_environment(
        spec, "algo-1", num_cpus=1, num_gpus=4, region="us-east-1", gpus=uuids
    )
    assert sm["SM_NUM_GPUS"] == "2" and json.loads(sm["SM_TRAINING_ENV"])["num_gpus"] == 2
    assert container.config_files(spec, "algo-1", uuids)["resourceconfig.json"]["current_gpus"] == uuids


def test_the_agent_config_carries_the_granted_gpus() -> None:
    config = AgentConfig(
        kind="training", request={}, host="algo-1", host_index=0, object_store=StoreAccess(), gpus=1,
        gpu_devices=_gpus(1), gpu_control=("/dev/nvidiactl",),
    )  # fmt: skip
    assert AgentConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_gpu_check_on_a_machine_without_a_gpu_says_so_and_tests_nothing() -> None:
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "scripts" / "gpu-check"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    if "GPU(s):" in done.stdout:
        pytest.skip("this machine has a GPU: scripts/gpu-check is the real check there")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [done.stdout.strip()] and "no GPU on this machine" in done.stdout


# -- measured --------------------------------------------------------------------------------------
def test_gpu_use_is_sampled_stored_and_served_as_sagemaker_names_it(tmp_path: Path) -> None:
    import datetime as dt
    import os

    from shipyard.api.monitoring import UTILIZATION
    from shipyard.runtime.utilization import Sampler, nvml_reader
    from shipyard.store import Database
    from shipyard.store.utilization import Sample, UtilizationRepository

    sampler = Sampler(os.getpid(), memory_bytes=2**30, disk_bytes=10**9, gpus=lambda: (87.5, 40.25))
    sampler.sample()
    point = sampler.sample()
    assert point is not None and point["gpu"] == 87.5 and point["gpu_memory"] == 40.25
    cpu_only = Sampler(os.getpid(), memory_bytes=2**30, disk_bytes=10**9)
    cpu_only.sample()
    assert "gpu" not in (cpu_only.sample() or {})  # no GPU: no GPU series
    assert nvml_reader([]) is None and nvml_reader(["GPU-not-a-real-one"]) is None  # no NVML here

    db = Database(f"sqlite:///{tmp_path}/x.db")
    db.upgrade()
    repository = UtilizationRepository(db)
    point["t"] = dt.datetime.now(dt.UTC).isoformat()
    repository.add("training", "job", [Sample.from_json("algo-1", point)])
    (stored,) = repository.series("training", "job")
    assert (stored.gpu, stored.gpu_memory) == (87.5, 40.25)
    assert UTILIZATION["GPUUtilization"] == "gpu" and UTILIZATION["GPUMemoryUtilization"] == "gpu_memory"
