"""The shared end-to-end suite (test_backends.py) on a real Slurm of two nodes
(``compute/slurm/_testing.py``), in a module of its own so that pytest-xdist runs it beside the
local and Ray tiers rather than after them on the same worker. Skipped, saying why, where
slurm-wlm is not installed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shipyard.compute.slurm._testing import SlurmCluster, slurm_missing
from shipyard.server import ServerProcess
from tests.conftest import SHARED_ENVS
from tests.integration.test_backends import *  # noqa: F403  (the same tests, on this site)
from tests.integration.test_backends import Site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    if (why := slurm_missing()) is not None:
        pytest.skip(why)
    with SlurmCluster(tmp_path_factory.mktemp("slurm"), nodes=2, cpus=1, memory_gib=3) as slurm:
        env = {
            "SLURM_CONF": str(slurm.conf),
            "SHIPYARD_SLURM_DIR": str(slurm.folder / "nodes"),
            "SHIPYARD_SLURM_ENVS_DIR": SHARED_ENVS,  # as a site's shared filesystem would: built once
        }
        data_dir = tmp_path_factory.mktemp("slurm-data")
        with ServerProcess(data_dir, extra_args=["--backend", "slurm"], env=env).start(timeout=120) as server:
            yield Site("slurm", server, slurm)
