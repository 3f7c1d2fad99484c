"""The relay: how what an instance's agent writes on its Slurm node reaches the server.

``python -m shipyard.compute.slurm._relay <root> <key> <offsets>`` runs as a step of the job's
own allocation (``srun --jobid=<job> --overlap``, one task per node, started by the server
while the job runs), so no shared filesystem and no listening port is needed: Slurm carries the
step's output back to the server's ``srun``. Task ``i`` follows ``algo-<i + 1>`` (the instances'
step puts task ``i`` on the same node) and prints JSON lines: ``{"host", "status"}`` when
``status.json`` changed, ``{"host", "stream", "data"}`` with new bytes of ``log.jsonl``,
``utilization.jsonl`` and ``agent.log`` (base64, from ``offsets``: the sizes of the server's
copies, so a restarted server's relay sends nothing twice), and ``{"host", "ended"}`` once the
agent exited and all it wrote was sent; then it writes ``relayed`` for the task and exits.

The server stops a job through the relay as well: a line ``{"signal": 15}`` on the step's input
(``srun --input=all``: every task reads it) is sent to the agent alone, which stops the user's
process gracefully. ``scancel --signal`` would signal every process of the step, the user's
too, which would then die of it before the agent could record a stop.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from shipyard.compute.slurm._layout import EXITED, RELAYED, STREAMS, instance_dir

_CHUNK = 2**20
_POLL = 0.05


def _say(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def relay(folder: Path, host: str, offsets: dict[str, int]) -> None:
    status = b""
    seen = False
    while True:
        exited = (folder / EXITED).exists()  # before reading: nothing written after is lost
        if not folder.exists():
            if seen:  # removed (its handoff timed out): what is left is lost
                _say({"host": host, "gone": True})
                return
            time.sleep(_POLL)
            continue
        seen = True
        with contextlib.suppress(FileNotFoundError):
            now = (folder / "status.json").read_bytes()
            if now and now != status:
                status = now
                _say({"host": host, "status": base64.b64encode(now).decode()})
        complete = True
        for name in STREAMS:
            try:
                with (folder / name).open("rb") as f:
                    f.seek(offsets.get(name, 0))
                    data = f.read(_CHUNK + 1)
            except FileNotFoundError:
                continue
            if len(data) > _CHUNK:
                data, complete = data[:_CHUNK], False
            if data:
                offsets[name] = offsets.get(name, 0) + len(data)
                _say({"host": host, "stream": name, "data": base64.b64encode(data).decode()})
        if exited and complete:
            _say({"host": host, "ended": True})
            (folder / RELAYED).touch()
            return
        if complete:
            time.sleep(_POLL)


def _signals(folder: Path) -> None:
    """Send the agent the signals the server writes on the step's input."""
    for line in sys.stdin:
        try:
            signum = signal.Signals(int(json.loads(line)["signal"]))
            agent_pid = int(json.loads((folder / "status.json").read_bytes())["agent_pid"])
        except (ValueError, KeyError, TypeError, OSError):
            continue
        if not (folder / EXITED).exists():  # the task has not reaped it: the pid is still the agent's
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(agent_pid, signum)


def main() -> int:
    root, key, raw = sys.argv[1:4]
    host = f"algo-{int(os.environ['SLURM_PROCID']) + 1}"
    offsets = json.loads(base64.b64decode(raw)).get(host, {})
    folder = instance_dir(Path(root), key, host)
    threading.Thread(target=_signals, args=(folder,), name="shipyard-relay-signals", daemon=True).start()
    try:
        relay(folder, host, offsets)
    except BrokenPipeError:  # the server's srun is gone; the next server starts another relay
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
