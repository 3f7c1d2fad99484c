"""The agent's utilization sample of a job's process tree: walked down from the job's process
(its threads' children files), the same figures as a scan of every process on the machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shipyard.runtime import utilization

HOLDER = "import sys, time; x = bytearray(150 * 2**20); print('ready', flush=True); time.sleep(60)"


def test_the_walk_counts_the_grandchildren_as_the_scan_does(tmp_path: Path) -> None:
    # a shell whose background child holds 150 MiB: a grandchild of the test
    script = tmp_path / "tree.sh"
    script.write_text(f'{sys.executable} -c "{HOLDER}" &\nwait\n')
    shell = subprocess.Popen(["bash", str(script)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert shell.stdout is not None and shell.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10
        while (walked := utilization.tree(shell.pid)) != (scanned := utilization._tree_by_scan(shell.pid)):
            assert time.monotonic() < deadline, (walked, scanned)  # a figure changed between the two
        assert walked[1] > 150 * 2**20  # the grandchild's memory is in the tree's
        assert utilization.tree(2**22 + 1) == (0.0, 0)  # no such process: nothing
    finally:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
