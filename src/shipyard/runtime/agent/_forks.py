"""The local backend's fork server: agents forked from a process already started and imported."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path


def serve_forks(run_agent: Callable[[Path], int]) -> int:
    """Start agents by forking this process, already started and imported (the local backend's
    fork server): a job then starts in a millisecond of CPU instead of a new interpreter's hundred.

    Reads instance folders on stdin, one per line, and answers on stdout ``launched <pid>`` for
    each, or ``failed <reason>``; ``exited <pid> <code>`` when an agent ends. Each agent runs in a
    session of its own with its output in its ``agent.log``, so it outlives this process. End of
    input (the server went away): exit, leaving the agents running.
    """
    import selectors

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that SIGCHLD writes to wake_w
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    pending = b""

    def answer(text: str) -> None:
        os.write(1, text.encode() + b"\n")

    try:
        while True:
            for key, _ in selector.select():
                if key.fd == wake_r:
                    os.read(wake_r, 4096)
                    continue
                data = os.read(0, 65536)
                if not data:
                    return 0
                pending += data
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    try:
                        pid = _fork_agent(
                            Path(line.decode()), run_agent, close=(wake_r, wake_w, selector.fileno())
                        )
                    except OSError as exc:
                        answer(f"failed {exc}")
                    else:
                        answer(f"launched {pid}")
            while True:  # reap every agent that has ended
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                answer(f"exited {pid} {os.waitstatus_to_exitcode(status)}")
    except BrokenPipeError:  # the server went away
        return 0


def _fork_agent(instance_dir: Path, run_agent: Callable[[Path], int], close: tuple[int, ...]) -> int:
    log = os.open(instance_dir / "agent.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    pid = os.fork()
    if pid:
        os.close(log)
        return pid
    code = 1
    try:  # the child: nothing of the fork server's may leak into the job
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((null, 0), (log, 1), (log, 2)):
            os.dup2(source, target)
        for fd in (null, log, *close):
            os.close(fd)
        code = run_agent(instance_dir)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
