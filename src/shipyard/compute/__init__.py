"""Compute backends: where job instances and model servers run (local processes, or a Ray cluster)."""

from shipyard.compute._base import Backend, ClusterBill, Feature, InstanceLaunch
from shipyard.compute._routing import Backends
from shipyard.compute._serving import ModelRequest, ModelServer, ModelServerError, ModelServers
from shipyard.compute.local import LocalBackend, discover_gpus, machine_resources

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
