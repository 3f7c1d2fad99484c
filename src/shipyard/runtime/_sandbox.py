"""The bubblewrap sandbox a job's processes (and a model server) run in.

What a sandboxed process sees and holds (docs/security.md has the whole model):

* the machine's root read-only (the same Python and libraries, the GPU driver's among them), its
  instance folder at /opt/ml (input data read-only), a private /tmp, a fresh /dev and /proc;
* in that /dev, of the machine's GPUs only the device nodes of those it was granted, with the
  driver's control nodes (``nvidiactl``, ``nvidia-uvm``, ``nvidia-uvm-tools``) when it was
  granted any: another instance's GPU is not there to open, and without CAP_MKNOD no node can be
  made;
* its own PID, IPC and UTS namespaces (hostname ``algo-N``), a new session (no TIOCSTI into the
  server's terminal), no capabilities and ``no_new_privs``;
* the Shipyard data dir (other jobs, the database, the object store, the environments) hidden
  behind an empty tmpfs, with only the job's own Python environment bound back read-only;
* the network shared, so the hosts of a multi-instance job reach each other on loopback.

When the server runs as root, the job does not: bwrap sets the mounts up as root, keeps only
CAP_SETUID/CAP_SETGID/CAP_SETPCAP for one step, and ``setpriv`` then becomes the instance's own
unprivileged uid (:func:`sandbox_uid`, unique among running sandboxes), clearing every capability
and the bounding set before the job's command starts. With no capability in the machine's user
namespace the job can neither undo the mounts (``umount``, ``mount -o remount``, ``pivot_root``)
nor open raw sockets, and with another uid it can neither read root's files nor ptrace root's
processes. A server that is not root runs its jobs as itself inside an unprivileged user
namespace (bwrap's default), which also leaves them without capabilities.
"""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from shipyard.core.devices import Gpu

# Sandbox uids: BASE + the agent's pid for job instances, BASE + MODEL_SERVERS + the port for
# model servers. Both are unique among running processes; neither range is a login user's.
UID_BASE = 2_000_000_000
MODEL_SERVERS = 1 << 22  # above the kernel's largest pid_max


def sandbox_uid(token: int) -> int:
    """The uid a sandbox identified by ``token`` (a pid or ``MODEL_SERVERS + port``) runs as."""
    return UID_BASE + token


@functools.cache
def sandbox_problem() -> str | None:
    """Why jobs cannot be sandboxed here, or None when they can (probed once)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed: install the 'bubblewrap' package"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is not installed: as root, jobs could not drop to their own uid"
    try:
        probe = subprocess.run(
            [bwrap, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-uts", "--dev", "/dev", "true"],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not be run: {exc}"
    if probe.returncode != 0:
        why = probe.stderr.decode("utf-8", "replace").strip() or f"exit code {probe.returncode}"
        return f"bubblewrap cannot create namespaces here ({why})"
    return None


def sandbox_available() -> bool:
    """True when bubblewrap works here (and, as root, setpriv is there to drop to a job's uid)."""
    return sandbox_problem() is None


def run_as_for(token: int) -> int | None:
    """The uid to run a sandbox as: its own when this process is root, else None (as itself)."""
    return sandbox_uid(token) if os.geteuid() == 0 else None


def sandbox_command(
    command: Sequence[str],
    *,
    ml_dir: Path,
    host: str,
    hosts_file: Path,
    hide: Sequence[Path],
    keep: Sequence[Path],
    cwd: str,
    run_as: int | None = None,
    devices: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """The bwrap invocation that runs ``command`` as instance ``host`` with ``ml_dir`` at /opt/ml.

    ``hide`` are folders replaced by an empty tmpfs; ``keep`` are folders the job needs (its Python
    environment) bound back read-only even when they lie in /tmp or in a hidden folder. ``run_as``
    is the uid (and gid) the command runs as, for a root caller (see the module docstring); the
    sandbox's /etc/passwd and /etc/group then name it, written beside ``hosts_file``: code that
    asks who it is (``getpass.getuser()``, ``pwd``) gets an answer (see :func:`_account_files`).
    ``devices`` are (host node, node in the sandbox) pairs bound into its fresh /dev: its GPUs'
    and the driver's control nodes, and nothing else of the host's /dev.
    """
    args = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--perms", "1777"]
    covered = [Path("/tmp"), *hide]
    if run_as is not None:
        # A kept folder below one the job's uid cannot enter (/root) would be unreachable: hide
        # that folder too, so that the way to the bound folder goes through a tmpfs.
        covered += _closed_ancestors(keep, hidden=covered)
    args += ["--tmpfs", "/tmp"]
    for path in covered[1:]:
        args += ["--tmpfs", str(path)]
    # The folders on the way to a kept one, made in those tmpfs open to all (bwrap would make
    # them 0700, which only root may enter).
    made: set[Path] = set()
    for path in keep:
        under = [c for c in covered if path.is_relative_to(c) and c != path]
        if not under:
            continue
        base = max(under, key=lambda c: len(c.parts))
        for folder in reversed(path.parents):
            if folder.is_relative_to(base) and folder != base and folder not in made:
                made.add(folder)
                args += ["--perms", "0755", "--dir", str(folder)]
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
    for node, inside in devices:
        args += ["--dev-bind", node, inside]
    args += [
        "--bind",
        str(ml_dir),
        "/opt/ml",
        "--ro-bind",
        str(hosts_file),
        "/etc/hosts",
        "--unshare-pid",
        "--unshare-uts",
        "--unshare-ipc",
        "--hostname",
        host,
        "--new-session",
        "--die-with-parent",
        "--chdir",
        cwd,
        "--cap-drop",
        "ALL",
    ]
    if run_as is None:
        return [*args, "--", *command]
    passwd, group = _account_files(hosts_file.parent, run_as)
    args += ["--ro-bind", str(passwd), "/etc/passwd", "--ro-bind", str(group), "/etc/group"]
    args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
    drop = [
        "setpriv",
        f"--reuid={run_as}",
        f"--regid={run_as}",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--",
    ]
    return [*args, "--", *drop, *command]


def gpu_binds(gpus: Sequence[Gpu], control: Sequence[str]) -> list[tuple[str, str]]:
    """The device binds of an instance granted ``gpus``: each one's node and, with any, the
    driver's ``control`` nodes, each at ``/dev/<its name>``. None granted: none at all."""
    if not gpus:
        return []
    return [(g.node, g.sandbox_node) for g in gpus] + [(c, f"/dev/{Path(c).name}") for c in control]


def _account_files(folder: Path, uid: int) -> tuple[Path, Path]:
    """The machine's /etc/passwd and /etc/group with the sandbox's own user added, named
    ``root``: a SageMaker job is its container's root, and code written for SageMaker relies on
    it (the sagemaker SDK's remote functions and pipeline steps call ``sudo`` for any other user
    name). The name is all it has of root: its uid is its own, with no capabilities (uid 0 stays
    the machine's root, listed first, so that ``getpwnam("root")`` still answers uid 0)."""
    files = []
    for name, line in (
        ("passwd", f"root:x:{uid}:{uid}:Shipyard job (unprivileged):/tmp:/bin/sh\n"),
        ("group", f"root:x:{uid}:\n"),
    ):
        try:
            machine = Path("/etc", name).read_text()
        except OSError:
            machine = ""
        if machine and not machine.endswith("\n"):
            machine += "\n"
        path = folder / f".{name}"
        path.write_text(machine + line)
        path.chmod(0o644)
        files.append(path)
    return files[0], files[1]


def _closed_ancestors(keep: Iterable[Path], *, hidden: Sequence[Path]) -> list[Path]:
    """The highest folder above each kept path that others may not enter (not o+x), unless it
    already lies in a hidden folder (which bwrap recreates as a tmpfs)."""
    closed: list[Path] = []
    for path in keep:
        for folder in reversed(path.parents):
            if folder == Path("/") or any(folder.is_relative_to(h) for h in hidden):
                continue
            try:
                mode = folder.stat().st_mode
            except OSError:
                break
            if not mode & stat.S_IXOTH:
                if folder not in closed:
                    closed.append(folder)
                break
    return closed


def hand_over(folder: Path, uid: int) -> None:
    """Make ``folder`` and all in it the sandbox uid's own, so a job that is not root can write
    its /opt/ml as a SageMaker job can. Links are not followed, and a file with more than one
    link (a channel's large object, hard-linked from the store) stays the store's."""
    os.lchown(folder, uid, uid)
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        for name in (*dirnames, *filenames):
            path = here / name
            if name in filenames and path.lstat().st_nlink > 1:
                continue
            os.lchown(path, uid, uid)
