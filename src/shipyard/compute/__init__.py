"""Compute backends: where job instances run (local processes, or a Ray cluster)."""

from shipyard.compute._base import Backend, Feature, InstanceLaunch
from shipyard.compute._routing import Backends
from shipyard.compute.local import LocalBackend, machine_resources

__all__ = ["Backend", "Backends", "Feature", "InstanceLaunch", "LocalBackend", "machine_resources"]
