"""The Slurm backend's server side against fake Slurm commands (scripts on PATH): what a user
sees when Slurm refuses a job."""

from __future__ import annotations

import datetime as dt
import os
import threading
from pathlib import Path

import pytest

from shipyard.compute import ClusterBill, InstanceLaunch
from shipyard.compute.slurm import SlurmBackend
from shipyard.core.placement import Resources
from shipyard.core.slurm import SlurmSite
from shipyard.errors import ConfigurationError, ValidationError
from shipyard.runtime.contract import AgentConfig, StoreAccess


def _fake(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake(bin_dir, "sinfo", 'echo "node-1|2|4000|(null)|idle|debug*"')
    _fake(bin_dir, "squeue", "exit 0")
    _fake(
        bin_dir,
        "sbatch",
        'cat >/dev/null; echo "sbatch: error: Batch job submission failed: Invalid partition name specified" >&2; exit 1',
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


def test_capacity_is_what_sinfo_shows(fake_slurm: Path) -> None:
    backend = SlurmBackend(SlurmSite(), prefix="p", object_store={"kind": "s3"})
    try:
        assert backend.capacity == Resources(2, 4000 / 1024, 0)
        assert "no usable node with a GPU" in backend.unsupported[next(iter(backend.unsupported))]
    finally:
        backend.close()


def test_a_job_slurm_refuses_fails_with_sbatchs_reason(fake_slurm: Path, tmp_path: Path) -> None:
    backend = SlurmBackend(SlurmSite(partition="gpu"), prefix="p", object_store={"kind": "s3"})
    config = AgentConfig(
        kind="training",
        request={"TrainingJobName": "j"},
        host="algo-1",
        host_index=0,
        object_store=StoreAccess("s3"),
    )
    launch = InstanceLaunch(
        tmp_path / "jobs" / "j" / "attempt-0" / "algo-1", config, "ml.m5.large", Resources(2, 4)
    )
    launch.instance_dir.mkdir(parents=True)
    try:
        with pytest.raises(ValidationError) as error:
            backend.launch([launch])
    finally:
        backend.close()
    assert error.value.message.startswith("Slurm refused the job (--nodes=1 ")
    assert "--partition=gpu" in error.value.message
    assert "Batch job submission failed: Invalid partition name specified" in error.value.message


def test_a_server_without_a_reachable_slurm_does_not_start(fake_slurm: Path) -> None:
    _fake(fake_slurm, "sinfo", 'echo "sinfo: error: Unable to contact slurm controller" >&2; exit 1')
    with pytest.raises(
        ConfigurationError, match="Slurm cannot be reached here: sinfo: error: Unable to contact"
    ):
        SlurmBackend(SlurmSite(), prefix="p", object_store={"kind": "s3"})


def _launch(tmp_path: Path, count: int = 1) -> list[InstanceLaunch]:
    launches = []
    for i in range(count):
        config = AgentConfig(
            kind="training",
            request={"TrainingJobName": "j"},
            host=f"algo-{i + 1}",
            host_index=i,
            object_store=StoreAccess("s3"),
        )
        launch = InstanceLaunch(
            tmp_path / "jobs" / "j" / "attempt-2" / f"algo-{i + 1}", config, "ml.m5.large", Resources(2, 4)
        )
        launch.instance_dir.mkdir(parents=True)
        launches.append(launch)
    return launches


def test_a_job_that_ended_in_slurm_is_billed_from_sacct(fake_slurm: Path, tmp_path: Path) -> None:
    _fake(fake_slurm, "sbatch", "cat >/dev/null; echo 77")
    _fake(fake_slurm, "squeue", 'echo "77|shipyard-p-training-j-2|COMPLETED|None|node-[1-2]"')
    # accounting (slurmdbd) is not there; the job completion log is, without AllocTRES
    _fake(
        fake_slurm,
        "sacct",
        'case "$*" in *--completion*) echo "77|2026-12-07T10:00:00|00:01:40||4|2";; '
        '*) echo "Slurm accounting storage is disabled" >&2; exit 1;; esac',
    )
    backend = SlurmBackend(SlurmSite(), prefix="p", object_store={"kind": "s3"})
    bills: list[ClusterBill] = []
    billed = threading.Event()
    backend.on_billed(lambda bill: (bills.append(bill), billed.set()))
    try:
        backend.launch(_launch(tmp_path, 2))
        assert billed.wait(30), "no bill from sacct"
    finally:
        backend.close()
    (bill,) = bills
    assert (bill.kind, bill.job, bill.attempt, bill.source) == ("training", "j", 2, "NCPUS")
    assert bill.ended - bill.started == dt.timedelta(seconds=100)
    assert bill.started == dt.datetime(2026, 12, 7, 10, 0).astimezone()  # sacct's local time
    assert bill.allocated == Resources(2, 4, 0)  # NCPUS over the nodes; the memory sbatch was asked


def test_which_types_run_is_what_sinfo_shows_of_the_partitions_the_site_asks(fake_slurm: Path) -> None:
    _fake(
        fake_slurm,
        "sinfo",
        'printf "cpu-1|2|4000|(null)|idle|cpu*\\ngpu-1|8|64000|gpu:a10g:2|mix|gpu\\ngpu-2|8|64000|gpu:a10g:2|down*|gpu\\n'
        'big-1|64|512000|(null)|idle|other\\n"',
    )
    site = SlurmSite.from_config(
        partition="cpu", types={"ml.g5.*": {"partition": "gpu", "gres": "gpu:a10g:1"}}
    )
    backend = SlurmBackend(site, prefix="p", object_store={"kind": "s3"})
    try:
        # the partitions it submits to, not the 'other' one it never asks for
        assert backend.capacity == Resources(10, 68000 / 1024, 2)
        assert backend.unrunnable("ml.m5.large", Resources(2, 3)) is None
        assert backend.unrunnable("ml.g5.xlarge", Resources(4, 16, 1)) is None
        assert backend.unrunnable("ml.c5.2xlarge", Resources(8, 16)) == (
            "the Slurm cluster cannot run it: partition 'cpu' has 0 node(s) with 8 CPUs, 16384 MiB "
            "(its largest: 2 CPUs, 4000 MiB, 0 GPUs); 1 needed"
        )
    finally:
        backend.close()


@pytest.mark.parametrize(("count", "srun"), [(1, False), (2, True)])
def test_one_instance_runs_in_the_batch_step_several_in_a_step_of_their_own(
    fake_slurm: Path, tmp_path: Path, count: int, srun: bool
) -> None:
    script = tmp_path / "batch.sh"
    _fake(fake_slurm, "sbatch", f"cat >{script}; echo 77")
    backend = SlurmBackend(SlurmSite(), prefix="p", object_store={"kind": "s3"})
    try:
        backend.launch(_launch(tmp_path, count))
    finally:
        backend.close()
    last = script.read_text().splitlines()[-1]
    assert last.endswith("-m shipyard.compute.slurm._task")
    assert (
        last.startswith("exec srun --job-name=instances --export=ALL --ntasks=2 ")
        if srun
        else (last.startswith("exec ") and "srun" not in last)
    ), last


def test_the_servers_environment_stays_out_of_the_batch_job(
    fake_slurm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sbatch's environment is the job's (--export=ALL, which starts the script a second sooner
    # than --export=NONE): only Slurm's settings, the locale and PATH go in, never the server's
    # credentials or database URL
    monkeypatch.setenv("DATABASE_URL", "postgresql://shipyard:hunter2@db/shipyard")
    monkeypatch.setenv("SHIPYARD_ROOT_SECRET", "hunter3")
    monkeypatch.setenv("SBATCH_ACCOUNT", "lab")
    seen, script = tmp_path / "sbatch.env", tmp_path / "batch.sh"
    _fake(fake_slurm, "sbatch", f'cat >{script}; env >{seen}; echo "$@" >{seen}.args; echo 77')
    backend = SlurmBackend(SlurmSite(), prefix="p", object_store={"kind": "s3"})
    try:
        backend.launch(_launch(tmp_path, 1))
    finally:
        backend.close()
    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert env["SBATCH_ACCOUNT"] == "lab" and "PATH" in env
    assert not {"DATABASE_URL", "SHIPYARD_ROOT_SECRET"} & set(env), sorted(env)
    assert "hunter2" not in script.read_text() and "hunter3" not in script.read_text()
    assert "--export=ALL" in seen.with_suffix(".env.args").read_text().split()


def test_a_nodes_task_imports_none_of_the_servers_side() -> None:
    # what a job's start waits for on the node: not the model servers' HTTP client, the local
    # backend or the Slurm backend's server side
    import subprocess
    import sys

    code = (
        "import sys, shipyard.compute.slurm._task; "
        "print(sorted(m for m in ('httpx', 'shipyard.compute.local', 'shipyard.compute.slurm._backend') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
