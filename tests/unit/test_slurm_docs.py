"""docs/slurm.md's configuration examples are settings the server takes, asking sbatch what the
page says."""

from __future__ import annotations

import re
from pathlib import Path

from shipyard.config import Settings
from shipyard.core.placement import Resources

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "slurm.md").read_text()


def _settings(tmp_path: Path, toml: str) -> Settings:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    return Settings.load(environ={"SHIPYARD_CONFIG": str(path), "SHIPYARD_HOME": str(tmp_path)})


def test_the_pages_config_files_are_settings_the_server_takes(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", PAGE, re.S)
    assert len(blocks) == 2
    site = _settings(tmp_path, blocks[0])
    assert site.backend == "slurm"
    slurm = site.slurm_site
    gpu = slurm.request("ml.g5.xlarge", Resources(4, 16, 1), 1, None).sbatch_args()
    assert "--partition=gpu" in gpu and "--gres=gpu:a10g:1" in gpu and "--account=lab-smith" in gpu
    m5 = slurm.request("ml.m5.large", Resources(2, 8), 1, None).sbatch_args()
    assert "--cpus-per-task=2" in m5 and "--mem=7600M" in m5 and "--partition=cpu" in m5
    routed = _settings(tmp_path, blocks[1])
    assert (routed.backend, routed.slurm_instance_types) == ("local", "ml.c5.* ml.g5.*")


def test_the_pages_are_linked() -> None:
    assert "(slurm.md)" in (ROOT / "docs" / "README.md").read_text()
    assert "(slurm.md)" in (ROOT / "docs" / "architecture.md").read_text()
