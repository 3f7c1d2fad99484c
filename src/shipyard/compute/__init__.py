"""Compute backends: where job instances run (local processes today; Ray later)."""

from shipyard.compute._base import Backend, Feature, InstanceLaunch
from shipyard.compute.local import LocalBackend, machine_resources

__all__ = ["Backend", "Feature", "InstanceLaunch", "LocalBackend", "machine_resources"]
