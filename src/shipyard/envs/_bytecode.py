"""Compiling an environment's bytecode in the background, once.

Jobs and model servers see their environment read-only, so Python cannot keep what it compiles:
without bytecode built in, every job compiles what it imports again (scikit-learn and pandas:
seconds a job). Compiling an environment takes a while (a PyTorch environment: about half a minute
on two cores), so the job that built it does not wait for it: a detached process compiles while
that job runs, writing each file atomically (a job importing meanwhile reads a whole file or
none), and sets ``"bytecode": true`` in the environment's marker when done. The packages' own test
suites (``tests/`` and ``test/`` folders, about half the files of a scikit-learn environment) are
left out: no job imports them. Only ``compileall`` runs, nothing of the packages themselves. One
compile per environment at a time (a lock file); prune waits for it (the environment's shared lock, as a running job holds).

    python -m shipyard.envs._bytecode <envs folder> <key>
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

from shipyard.envs._cache import MARKER, has_bytecode

_TEST_SUITES = r"/tests?/"  # compileall -x: skipped where the regex matches the file's path


def compile_soon(root: Path, key: str) -> None:
    """Start the compile of ``root/key`` in a process of its own (it outlives the job), unless one
    is compiling it now."""
    with (root / f"{key}.compile.lock").open("a") as compiling:
        try:
            fcntl.flock(compiling, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return
    subprocess.Popen(
        [sys.executable, "-m", "shipyard.envs._bytecode", str(root), key],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def compile_environment(root: Path, key: str) -> bool:
    """Compile ``root/key`` unless it is compiled or being compiled; whether this call did it."""
    folder = root / key
    with (root / f"{key}.compile.lock").open("a") as compiling:
        try:
            fcntl.flock(compiling, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        with (root / f"{key}.lock").open("a") as in_use:
            fcntl.flock(in_use, fcntl.LOCK_SH)
            marker = folder / MARKER
            if not marker.is_file() or has_bytecode(folder):
                return False
            python = folder / "bin" / "python"
            # Not the packages' own test suites (tests/ and test/ folders: about half the files
            # of a scikit-learn environment), which no job imports.
            command = [
                str(python),
                "-m",
                "compileall",
                "-q",
                "-q",
                "-j",
                "0",
                "-x",
                _TEST_SUITES,
                str(folder / "lib"),
            ]
            # A file that does not compile (a package's template with a .py name) fails where it is
            # imported, as it would anyway: compileall's status is not the environment's.
            subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)
            meta = json.loads(marker.read_text())
            meta["bytecode"] = True
            temporary = folder / f"{MARKER}.{os.getpid()}"
            temporary.write_text(json.dumps(meta))
            temporary.replace(marker)
    with contextlib.suppress(OSError):
        (root / f"{key}.compile.lock").unlink()
    return True


if __name__ == "__main__":
    compile_environment(Path(sys.argv[1]), sys.argv[2])
