"""The agent's view of processes: signalling groups, finding bwrap, ending with the parent."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

# What of the agent's environment a job's process may see (the rest is the job's own).
SAFE_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "VIRTUAL_ENV", "PYTHONHASHSEED")


def is_bwrap(pid: int) -> bool:
    """bwrap's own processes: the one started, and the sandbox's init, which ignores SIGTERM."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "bwrap"
    except OSError:
        return False


def group_members(group: int) -> list[int]:
    """The processes of process group ``group`` (from /proc)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:
            members.append(int(entry.name))
    return members


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when the one that started it ends (Linux)."""
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() == 1:  # the parent was gone already
        os._exit(1)
