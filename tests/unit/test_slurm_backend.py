"""The Slurm backend's server side against fake Slurm commands (scripts on PATH): what a user
sees when Slurm refuses a job."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shipyard.compute import InstanceLaunch
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
