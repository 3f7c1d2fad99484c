"""Compute backends: where job instances and model servers run (local processes, or a Ray cluster).

The names are imported when first used (PEP 562), so that what runs on a cluster node
(``compute/slurm/_task.py``) does not import the model servers' HTTP client and the local backend
with it: a second of a job's start on a loaded node.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipyard.compute._base import Backend, ClusterBill, Feature, InstanceLaunch
    from shipyard.compute._routing import Backends
    from shipyard.compute._serving import ModelRequest, ModelServer, ModelServerError, ModelServers
    from shipyard.compute.local import LocalBackend, discover_gpus, machine_resources

_WHERE = {
    "Backend": "shipyard.compute._base",
    "ClusterBill": "shipyard.compute._base",
    "Feature": "shipyard.compute._base",
    "InstanceLaunch": "shipyard.compute._base",
    "Backends": "shipyard.compute._routing",
    "ModelRequest": "shipyard.compute._serving",
    "ModelServer": "shipyard.compute._serving",
    "ModelServerError": "shipyard.compute._serving",
    "ModelServers": "shipyard.compute._serving",
    "LocalBackend": "shipyard.compute.local",
    "discover_gpus": "shipyard.compute.local",
    "machine_resources": "shipyard.compute.local",
}

__all__ = [
    "Backend",
    "Backends",
    "ClusterBill",
    "Feature",
    "InstanceLaunch",
    "LocalBackend",
    "ModelRequest",
    "ModelServer",
    "ModelServerError",
    "ModelServers",
    "discover_gpus",
    "machine_resources",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'shipyard.compute' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value
    return value
