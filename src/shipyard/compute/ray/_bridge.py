"""The Ray bridge: a child process of the server that holds its connection to the Ray cluster.

Ray ends the process it is connected from when its cluster goes away for a minute, and aborts it
when the cluster comes back as a new one; in the server that would take the API, the local jobs'
follower and every endpoint with it. So the connection lives here, and the server starts a new
bridge when this one ends (``_backend.py``).

Protocol (one JSON object per line): the server writes its settings, then requests ``{"id",
"op", "args"}``, to the bridge's standard input; the bridge writes to the file descriptor named
on its command line answers ``{"id", "result"}`` or ``{"id", "error"}`` and events ``{"event":
...}``: ``ready`` (with the cluster) or ``failed`` (with the reason) first, then ``cluster``,
``instance`` (an instance's state) and ``changed``. The bridge exits when its input closes.

    python -m shipyard.compute.ray._bridge <fd>
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from shipyard.compute._base import InstanceLaunch
from shipyard.compute._serving import ModelRequest
from shipyard.core.hosting import ContainerSpec
from shipyard.core.placement import Resources
from shipyard.envs import EnvironmentSpec
from shipyard.errors import ConfigurationError
from shipyard.runtime.contract import AgentConfig


def request_to_json(request: ModelRequest) -> dict[str, Any]:
    return {
        "instance_dir": str(request.instance_dir),
        "endpoint": request.endpoint,
        "variant": request.variant,
        "instance_type": request.instance_type,
        "container": dataclasses.asdict(request.container),
        "environment": request.environment.to_json(),
    }


def request_from_json(data: dict[str, Any]) -> ModelRequest:
    return ModelRequest(
        instance_dir=Path(data["instance_dir"]),
        endpoint=data["endpoint"],
        variant=data["variant"],
        instance_type=data["instance_type"],
        container=ContainerSpec(**data["container"]),
        environment=EnvironmentSpec.from_json(data["environment"]),
    )


def launch_to_json(launch: InstanceLaunch) -> dict[str, Any]:
    return {
        "instance_dir": str(launch.instance_dir),
        "agent_config": launch.agent_config.to_json(),
        "instance_type": launch.instance_type,
        "resources": dataclasses.asdict(launch.resources),
    }


def _launch_from_json(data: dict[str, Any]) -> InstanceLaunch:
    return InstanceLaunch(
        Path(data["instance_dir"]),
        AgentConfig.from_json(data["agent_config"]),
        data["instance_type"],
        Resources(**data["resources"]),
    )


def main(argv: list[str]) -> int:
    from shipyard.compute.ray._engine import RayEngine  # imports Ray: after the settings are known

    out = os.fdopen(int(argv[0]), "w", buffering=1)
    writing = threading.Lock()

    def send(message: dict[str, Any]) -> None:
        with writing:
            out.write(json.dumps(message) + "\n")
            out.flush()

    def cluster(total: Resources, largest: Resources) -> None:
        send({"event": "cluster", "total": dataclasses.asdict(total), "largest": dataclasses.asdict(largest)})

    settings = json.loads(sys.stdin.readline())
    try:
        engine = RayEngine(
            settings["address"],
            token=settings.get("token"),
            prefix=settings["prefix"],
            object_store=settings["object_store"],
            sandbox=settings["sandbox"],
            on_instance=lambda state: send({"event": "instance", **state}),
            on_cluster=cluster,
        )
    except ConfigurationError as exc:
        send({"event": "failed", "reason": exc.message})
        return 1
    engine.on_change(lambda: send({"event": "changed"}))
    total, largest = engine.cluster
    send({"event": "ready", "total": dataclasses.asdict(total), "largest": dataclasses.asdict(largest)})

    def handle(request: dict[str, Any]) -> None:
        args = request.get("args", {})
        result: Any = None
        try:
            op = request["op"]
            if op == "launch":
                result = engine.launch([_launch_from_json(item) for item in args["launches"]])
            elif op == "track":
                result = engine.track(args["handle"])
            elif op == "signal":
                engine.signal(args["handle"], int(args["signum"]))
            elif op == "kill":
                engine.kill(args["handle"], Path(args["dir"]))
            elif op == "demand":
                engine.demand([Resources(**r) for r in args["waiting"]])
            elif op == "start_model":
                result = engine.start_model(
                    request_from_json(args["request"]),
                    args["bundle"],
                    args["hosting"],
                    float(args["timeout"]),
                )
            elif op == "stop_model":
                engine.stop_model(args["name"])
            else:
                raise ValueError(f"unknown operation {op!r}")
        except Exception as exc:
            send({"id": request.get("id"), "error": str(exc) or type(exc).__name__})
        else:
            send({"id": request["id"], "result": result})

    for line in sys.stdin:
        threading.Thread(target=handle, args=(json.loads(line),), daemon=True).start()
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
