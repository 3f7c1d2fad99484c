"""The bubblewrap sandbox a job's user process runs in.

The machine's root is mounted read-only (so the job sees the same Python and libraries), the
instance folder appears at /opt/ml (its input data read-only), /tmp is private, and the job gets its
own PID, IPC and UTS namespaces with hostname ``algo-N``. The Shipyard data dir (other jobs, the
database, the object store) is hidden behind an empty tmpfs. The network is shared, so the hosts of
a multi-instance job reach each other on loopback.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path


@functools.cache
def sandbox_available() -> bool:
    """True when bubblewrap is installed and can create namespaces here (probed once)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return False
    try:
        probe = subprocess.run(
            [bwrap, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-uts", "--dev", "/dev", "true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def sandbox_command(
    command: Sequence[str],
    *,
    ml_dir: Path,
    host: str,
    hosts_file: Path,
    hide: Sequence[Path],
    keep: Sequence[Path],
    cwd: str,
) -> list[str]:
    """The bwrap invocation that runs ``command`` as instance ``host`` with ``ml_dir`` at /opt/ml.

    ``hide`` are folders replaced by an empty tmpfs; ``keep`` are folders the job needs (its Python
    environment) bound back read-only even when they lie in /tmp or in a hidden folder.
    """
    args = [
        "bwrap",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
    ]
    for path in hide:
        args += ["--tmpfs", str(path)]
    # /opt/ml needs a mount point on the read-only root: a tmpfs over /opt, with what the machine
    # keeps in /opt (conda, toolchains) bound back read-only.
    args += ["--tmpfs", "/opt"]
    opt = Path("/opt")
    if opt.is_dir():
        for entry in sorted(opt.iterdir()):
            if entry.name != "ml":
                args += ["--ro-bind", str(entry), str(entry)]
    for path in keep:
        args += ["--ro-bind", str(path), str(path)]
    args += [
        "--bind",
        str(ml_dir),
        "/opt/ml",
        "--ro-bind",
        str(ml_dir / "input" / "data"),
        "/opt/ml/input/data",
        "--ro-bind",
        str(hosts_file),
        "/etc/hosts",
        "--unshare-pid",
        "--unshare-uts",
        "--unshare-ipc",
        "--hostname",
        host,
        "--die-with-parent",
        "--chdir",
        cwd,
        "--",
        *command,
    ]
    return args
